"""Every directory and artifact path of the project and of a run, named once.

No other module joins strings into a path inside a run folder: each asks
:class:`RunPaths`. Also here: the run folder's lock, which ``dflib run`` holds and a
notebook run by hand respects. A leaf: imports only :mod:`dflib.io` and :mod:`dflib.vocabulary`."""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .io import remove_partials
from .vocabulary import FRAMES_SUFFIX, PREDICTION_SPLITS, method_filename

PROJECT_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
PARAMS_DIR = PROJECT_ROOT / "params"
OUTPUTS_DIR = PROJECT_ROOT / "outputs"
PACKAGE_DATA_DIR = Path(__file__).resolve().parent / "data"
LOCK_FILE = ".dflib-run.lock"
HOLDER_ENV = "DFLIB_RUN_HOLDER"  # PID of the dflib run whose stage kernels these are


def store_name(video_id: str) -> str:
    """A file name for ``video_id``, unique and reversible: ``%``, ``/`` and ``\\`` are
    percent-encoded (``Celeb-real/id0_0000`` → ``Celeb-real%2Fid0_0000``), a leading dot
    too (no hidden files); anything else, non-ASCII included, is kept."""
    name = video_id.replace("%", "%25").replace("/", "%2F").replace("\\", "%5C")
    return "%2E" + name[1:] if name.startswith(".") else name


def resolve(path: str | Path) -> Path:
    """Resolve a profile path: absolute as given, relative to the project root otherwise."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else PROJECT_ROOT / p


@dataclass(frozen=True)
class RunPaths:
    """The folders of one run, ``<outputs_dir>/<run_name>/``."""

    root: Path

    @classmethod
    def of(cls, run_name: str, outputs_dir: str | Path = OUTPUTS_DIR) -> "RunPaths":
        return cls(resolve(outputs_dir) / run_name)

    @property
    def index(self) -> Path:
        return self.root / "index"

    @property
    def videos_csv(self) -> Path:
        return self.index / "videos.csv"

    @property
    def absent_csv(self) -> Path:
        """Videos the dataset's lists name that are not on disk (kept out of failures)."""
        return self.index / "absent.csv"

    @property
    def left_out_csv(self) -> Path:
        """Files of the dataset's folders that are not videos (by extension), and why."""
        return self.index / "left_out.csv"

    @property
    def faces(self) -> Path:
        return self.root / "faces"

    @property
    def face_store(self) -> Path:
        return self.faces / "store"

    @property
    def faces_csv(self) -> Path:
        return self.faces / "index.csv"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def features(self) -> Path:
        return self.root / "features"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions"

    @property
    def tables(self) -> Path:
        return self.root / "tables"

    @property
    def results_csv(self) -> Path:
        return self.tables / "results.csv"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    def kernel_log(self, stage: str) -> Path:
        """The stage kernel's own stderr (native library logs, its start-up and shutdown
        messages); cell outputs are in the executed notebook."""
        return self.logs / f"kernel_{stage}.log"

    @property
    def failures_csv(self) -> Path:
        return self.root / "failures.csv"

    # ---------------------------------------------------------------- run records
    @property
    def profile_yaml(self) -> Path:
        """The parameters the run was made with (written by ``dflib run``)."""
        return self.root / "profile.yaml"

    @property
    def environment_json(self) -> Path:
        return self.root / "environment.json"

    def executed_notebook(self, notebook: str) -> Path:
        return self.notebooks / notebook

    def table(self, name: str) -> Path:
        """``tables/<name>.csv``."""
        return self.tables / f"{name}.csv"

    def figure(self, name: str) -> Path:
        """``figures/<name>.png``."""
        return self.figures / f"{name}.png"

    def stage_summary_csv(self, stage: str) -> Path:
        return self.table(f"summary_{stage}")

    @property
    def robustness_csv(self) -> Path:
        return self.table("robustness")

    @property
    def perturbations_csv(self) -> Path:
        return self.table("perturbations")

    @property
    def report_dir(self) -> Path:
        """The self-contained HTML report and the figures it shows."""
        return self.root / "report"

    @property
    def report_page(self) -> Path:
        return self.report_dir / "index.html"

    @property
    def report_notebooks(self) -> Path:
        """The executed notebooks rendered as HTML pages."""
        return self.report_dir / "notebooks"

    @property
    def report_figures(self) -> Path:
        """Copies of the run's figures, so that the report folder stands alone."""
        return self.report_dir / "figures"

    def artifact(self, relative: str | Path) -> Path:
        """A path a manifest or record stores relative to the run folder."""
        return self.root / relative

    def relative(self, path: Path) -> str:
        """The form in which manifests and records store a path of this run."""
        return str(path.relative_to(self.root))

    # ---------------------------------------------------------------- faces
    def face_file(self, video_id: str) -> Path:
        """The face store file of one video."""
        return self.face_store / f"{store_name(video_id)}.npz"

    @property
    def faces_summary_csv(self) -> Path:
        """The per-video table of the faces stage."""
        return self.faces / "summary.csv"

    # ---------------------------------------------------------------- detectors
    def cnn_dir(self, arch: str) -> Path:
        return self.models / "cnn" / arch

    def cnn_manifest(self, arch: str) -> Path:
        return self.cnn_dir(arch) / "manifest.json"

    def cnn_manifests(self) -> list[Path]:
        """The manifests of every backbone trained in this run, sorted."""
        return sorted((self.models / "cnn").glob("*/manifest.json"))

    def cnn_chunk_model(self, arch: str, chunk: int) -> Path:
        return self.cnn_dir(arch) / f"chunk{chunk}.keras"

    def cnn_chunk_log(self, arch: str, chunk: int) -> Path:
        return self.logs / f"cnn_{arch}_chunk{chunk}.csv"

    def sbi_dir(self, arch: str) -> Path:
        """``models/sbi/<arch>/``: the frame CNN trained on self-blends (outside
        ``models/cnn/``, so the stages that take the latest bagged CNN never take it)."""
        return self.models / "sbi" / arch

    def sbi_manifest(self, arch: str) -> Path:
        return self.sbi_dir(arch) / "manifest.json"

    def sbi_model(self, arch: str) -> Path:
        return self.sbi_dir(arch) / "model.keras"

    def sbi_log(self, arch: str) -> Path:
        return self.logs / f"sbi_{arch}.csv"

    @property
    def sbi_landmarks(self) -> Path:
        """dlib's 68 landmarks of the real training faces, with what they were made from."""
        return self.features / "sbi" / "landmarks.npz"

    def model_files(self, family: str, name: str) -> tuple[Path, Path, Path]:
        """``(models/<family>/<name>.keras, its .json record, logs/<family>_<name>.csv)``."""
        folder = self.models / family
        return folder / f"{name}.keras", folder / f"{name}.json", self.logs / f"{family}_{name}.csv"

    def top_model_files(self, name: str) -> tuple[Path, Path, Path]:
        """``(models/<name>.keras, models/<name>.json, logs/<name>.csv)`` of a model of its
        own (the triplet network)."""
        return (self.models / f"{name}.keras", self.models / f"{name}.json",
                self.logs / f"{name}.csv")

    def classifier_file(self, space: str, classifier: str) -> Path:
        """``models/<space>/<classifier>.joblib``."""
        return self.models / space / f"{classifier}.joblib"

    # ---------------------------------------------------------------- features
    def sequence_features_dir(self, arch: str) -> Path:
        """``features/cnn_seq/<arch>/``: one ``.npz`` per video and the manifest."""
        return self.features / "cnn_seq" / arch

    def sequence_features_file(self, arch: str, video_id: str) -> Path:
        return self.sequence_features_dir(arch) / f"{store_name(video_id)}.npz"

    def sequence_features_manifest(self, arch: str) -> Path:
        return self.sequence_features_dir(arch) / "manifest.json"

    @property
    def embeddings_dir(self) -> Path:
        """``features/facenet/``: one ``.npz`` per video and the manifest."""
        return self.features / "facenet"

    def embeddings_file(self, video_id: str) -> Path:
        return self.embeddings_dir / f"{store_name(video_id)}.npz"

    @property
    def embeddings_manifest(self) -> Path:
        return self.embeddings_dir / "manifest.json"

    # ---------------------------------------------------------------- predictions
    def prediction_files(self, method: str, split: str = "test") -> tuple[Path, Path]:
        """``(videos_csv, frames_csv)`` of a method under ``predictions/`` (test split) or
        ``predictions/val/`` (validation split)."""
        if split not in PREDICTION_SPLITS:
            raise ValueError(f"split {split!r}: choose {' or '.join(PREDICTION_SPLITS)}")
        folder = self.predictions if split == "test" else self.predictions / split
        stem = method_filename(method)
        return folder / f"{stem}.csv", folder / f"{stem}{FRAMES_SUFFIX}.csv"

    # ---------------------------------------------------------------- robustness
    def crf_run(self, crf: int) -> "RunPaths":
        """The small run folder of the test videos re-encoded at one CRF."""
        return RunPaths(self.root / "robustness" / f"crf{crf:02d}")

    def perturbation_run(self, kind: str, level: int) -> "RunPaths":
        """The small run folder of the test videos' faces under one DeeperForensics-1.0
        distortion ``kind`` at ``level``."""
        return RunPaths(self.root / "robustness" / f"{kind}{level}")

    def reencoded_video(self, video_id: str) -> Path:
        """A re-encoded test video of a CRF run (:meth:`crf_run`)."""
        return self.root / "videos" / f"{store_name(video_id)}.mp4"

    def ensure(self) -> "RunPaths":
        """Create the run's folders and delete the temporary files a killed stage left
        anywhere in the run (stages run one at a time, so none is being written now); a run
        folder that another ``dflib run`` holds raises :class:`RunLocked`."""
        refuse_if_in_use(self.root)

        for d in (self.index, self.face_store, self.models, self.logs, self.features,
                  self.predictions, self.tables, self.figures, self.notebooks):
            d.mkdir(parents=True, exist_ok=True)
        remove_partials(self.root, recursive=True)
        return self


class RunLocked(RuntimeError):
    """Another process is running the same run folder; the message names it and its PID."""


@contextlib.contextmanager
def run_lock(root: Path) -> Iterator[None]:
    """Hold the run folder for this process, or raise :class:`RunLocked` at once.

    The lock is the kernel's (``flock``) on a file holding the owner's PID: it goes with
    its process, so a run killed with ``kill -9`` leaves a file that blocks no one."""
    root.mkdir(parents=True, exist_ok=True)
    target = root / LOCK_FILE
    fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _locked(root) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.environ[HOLDER_ENV] = str(os.getpid())  # inherited by the stages' kernels
        yield
    finally:
        os.environ.pop(HOLDER_ENV, None)
        os.close(fd)  # releases the lock


def _locked(root: Path) -> RunLocked:
    holder = (root / LOCK_FILE).read_text(encoding="utf-8").strip() or "unknown"
    return RunLocked(f"{root}: in use by another dflib run (PID {holder}); wait for it to "
                     "finish or stop it")


def refuse_if_in_use(root: Path) -> None:
    """Raise :class:`RunLocked` when a run other than this process's own holds ``root``
    (a notebook executed by hand while ``dflib run`` writes the same run folder)."""
    target = root / LOCK_FILE
    if not target.is_file():
        return
    fd = os.open(target, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = target.read_text(encoding="utf-8").strip()
        if holder not in (str(os.getpid()), os.environ.get(HOLDER_ENV)):
            raise _locked(root) from None
    finally:
        os.close(fd)
