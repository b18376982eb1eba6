"""Every directory of the project and of a run, named once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
PARAMS_DIR = PROJECT_ROOT / "params"
OUTPUTS_DIR = PROJECT_ROOT / "outputs"
PACKAGE_DATA_DIR = Path(__file__).resolve().parent / "data"


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

    def ensure(self) -> "RunPaths":
        """Create the run's folders and delete the temporary files a killed stage left
        anywhere in the run (stages run one at a time, so none is being written now); a run
        folder that another ``dflib run`` holds raises ``dflib.runner.RunLocked``."""
        from .io import remove_partials
        from .runner import refuse_if_in_use  # runner imports this module

        refuse_if_in_use(self.root)

        for d in (self.index, self.face_store, self.models, self.logs, self.features,
                  self.predictions, self.tables, self.figures, self.notebooks):
            d.mkdir(parents=True, exist_ok=True)
        remove_partials(self.root, recursive=True)
        return self
