"""Every path the pipeline reads or writes, derived from one ROOT."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PARAMS = ROOT / "params.yaml"
DVC_LOCK = ROOT / "dvc.lock"

RAW_DIR = ROOT / "data" / "raw"
PROCESSED_DIR = ROOT / "data" / "processed"
DATASET = PROCESSED_DIR / "dataset.npz"

MODELS_DIR = ROOT / "models"
CHECKPOINTS_DIR = ROOT / "checkpoints"  # not a DVC output, so an interrupted fit can resume

REPORTS_DIR = ROOT / "reports"
MODEL_REPORTS_DIR = REPORTS_DIR / "models"
REPORT_FIGURES_DIR = REPORTS_DIR / "figures"
RESULTS = REPORTS_DIR / "results.md"  # the report stage's table, copied into README.md
HEADLINE_METRICS = REPORTS_DIR / "metrics.json"  # the only file dvc.yaml declares as metrics

MLFLOW_DIR = ROOT / "mlflow"  # the embedded tracking store
MLFLOW_DB = MLFLOW_DIR / "mlflow.db"
MLFLOW_ARTIFACTS = MLFLOW_DIR / "artifacts"


def model_file(name: str) -> Path:
    """The trained Keras model of `name`."""
    return MODELS_DIR / f"{name}.keras"


def model_reports(name: str) -> Path:
    """Folder of the files the train and evaluate stages write about `name`."""
    return MODEL_REPORTS_DIR / name


def checkpoint_dir(name: str) -> Path:
    """Resumable training state of `name` (training.Checkpoint); survives `dvc repro`."""
    return CHECKPOINTS_DIR / name


PLOTS_DIR = REPORTS_DIR / "plots"  # image plots only: dvc.yaml registers the whole folder


def model_plots(name: str) -> Path:
    """Folder of the DVC image plots of `name` (a model or the ensemble)."""
    return PLOTS_DIR / name
