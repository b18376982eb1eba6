"""The Dask cluster the parallel stages share: a local one of N worker processes, or an
existing one at a scheduler address (which scales past one machine)."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator


@contextlib.contextmanager
def dask_client(workers: int, scheduler: str = "") -> Iterator[Any]:
    """A ``distributed.Client``: connected to ``scheduler`` when it is set, else to a local
    cluster of ``workers`` single-threaded processes started here and closed on exit."""
    from distributed import Client, LocalCluster

    if scheduler:
        cluster, client = None, Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
