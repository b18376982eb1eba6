"""The ``index`` section's fields read by :mod:`dflib.datasets` (splits, the FaceForensics++
selection, the cross-dataset protocol), the names of its dataset adapters, and the keys of
the section that are gone."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

from .fields import Field


# The dataset adapters of dflib.datasets (``dataset``, ``index.test_dataset``), in the order
# of its registry; ``demo`` generates its videos (dflib.synth) at ``data_root``.
DATASETS = ("celebdf", "ffpp", "dfdc", "folder", "demo")
FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")
COMPRESSIONS = ("c0", "c23", "c40")

def check_index(stage: str, shared: Mapping[str, Any], section: Mapping[str, Any]
                ) -> str | None:
    """The cross-dataset protocol needs both its keys."""
    if bool(section["test_dataset"]) != bool(section["test_data_root"]):
        return (f"{stage}.test_dataset and {stage}.test_data_root go together: set both for "
                "the cross-dataset protocol, or neither")
    return None


INDEX: Mapping[str, Field] = MappingProxyType({
    "val_fraction": Field(float, 0.2, "share of training videos held out for validation",
                          min=0.0, max=0.9),
    "max_videos_per_class": Field(int, 0, "cap on videos per split and label (0: all)",
                                  min=0),
    "ffpp_methods": Field(list, ["NeuralTextures"], "FaceForensics++ manipulations",
                          item=str, choices=FFPP_METHODS),
    "ffpp_compression": Field(str, "c40", "FaceForensics++ compression",
                              choices=COMPRESSIONS),
    "test_dataset": Field(str, "", "cross-dataset protocol: take the test videos from "
                          "this dataset's test split (empty: the dataset's own)",
                          choices=("", *DATASETS)),
    "test_data_root": Field(str, "", "folder of test_dataset"),
    "allow_empty_test": Field(bool, False, "the run only trains: an empty test split is "
                              "not an error (check and stage index refuse it otherwise)"),
})

# Keys a profile's ``index`` section may no longer hold, each with the line that says what
# replaced it: dflib.config refuses them by that line, not as unknown keys.
RETIRED: Mapping[str, str] = MappingProxyType({
    "demo_generate": "removed: the generated demo dataset is a dataset adapter now; write "
                     "'dataset: demo' (generated at data_root when missing) and delete this key",
})
