"""MLflow behind one door: the only module that imports mlflow.

The tracking URI is `MLFLOW_TRACKING_URI` if set, else the embedded store
`sqlite:///<workspace>/mlflow/mlflow.db` with artifacts in `<workspace>/mlflow/artifacts`, where
the workspace is the repository, also when DVC runs an experiment in a temporary copy of it.
A logging call that fails (a tracking server that died) is recorded, not fatal at once: the stage
saves its local outputs first and then reports which logging failed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import requests
from filelock import FileLock
from matplotlib.figure import Figure

from pipeline.config import TrackingConfig
from pipeline.errors import TrackingError
from pipeline.paths import MLFLOW_ARTIFACTS, MLFLOW_DB, MLFLOW_DIR, ROOT

# No usage reports from an offline pipeline: MLflow starts its telemetry client when imported.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# System metrics every 5 s (MLflow's default of 10 s misses most of a short training).
os.environ.setdefault("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "5")

import mlflow  # noqa: E402 - after the telemetry switch above
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

log = logging.getLogger(__name__)
# MLflow's info lines (database set-up, system metrics monitor) are not the stage's own output.
logging.getLogger("mlflow").setLevel(logging.WARNING)
# MLflow logs each store error with its traceback before raising it; we report it as one line.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)

# What a SQLite store's (or a full disk's) error text means, for the one-line report.
_STORE_FAULTS = {
    "readonly database": "the store is read-only",
    "database is locked": "the store is locked by another process",
    "database or disk is full": "the disk is full",
    "no space left on device": "the disk is full",
    "unable to open database file": "the store file cannot be opened",
    "timed out": "no answer within tracking.request_timeout_seconds (retried)",
}

# MLflow's longest alias.
_ALIAS_LIMIT = 255
# MLflow caps one param value at 6000 characters (and batches params by 100 itself).
_PARAM_VALUE_LIMIT = 6000
# MLflow's own tag and value for a classic model-training experiment. (MLflow 3.17's UI still
# opens experiments as its GenAI / Model training switch says, GenAI by default; the browser
# remembers one click on Model training, as the README says.)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# The train, validation and test arrays of the processed data set, as MLflow dataset inputs.
DATASET_SPLITS = (
    ("train", "training", "x_train", "y_train"),
    ("validation", "validation", "x_val", "y_val"),
    ("test", "test", "x_test", "y_test"),
)
# The models-from-code file MLflow runs to build the served pyfunc (pipeline/served_model.py).
SERVED_MODEL_CODE = ROOT / "pipeline" / "served_model.py"


def workspace_root() -> Path:
    """The repository whose store runs belong in.

    DVC sets DVC_ROOT to the workspace, also for `dvc exp run --temp/--queue`, which run the
    stages in a temporary copy of the repository.
    """
    return Path(os.environ.get("DVC_ROOT") or ROOT)


def store_dir() -> Path:
    """The embedded store's folder (`mlflow/` at the workspace root)."""
    return workspace_root() / MLFLOW_DIR.relative_to(ROOT)


def store_database() -> Path:
    """The embedded store's SQLite file."""
    return workspace_root() / MLFLOW_DB.relative_to(ROOT)


def store_artifacts() -> Path:
    """The embedded store's artifact folder."""
    return workspace_root() / MLFLOW_ARTIFACTS.relative_to(ROOT)


def store_options() -> list[str]:
    """The `mlflow server` / `mlflow ui` options that serve the embedded store."""
    return [
        "--backend-store-uri", f"sqlite:///{store_database()}",
        "--default-artifact-root", str(store_artifacts()),
    ]  # fmt: skip


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` if set (a relative local path made absolute against the
    workspace), else the embedded SQLite store of the workspace."""
    named = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    return _in_workspace(named) if named else _embedded_uri()


def _in_workspace(uri: str) -> str:
    """`uri` with a relative SQLite file, `file:` URI or plain path resolved against the
    workspace root.

    DVC runs `dvc exp run --temp/--queue` stages in a temporary copy that it deletes afterwards:
    a store relative to the stage's folder would be created there and lost with it.
    """
    if uri.startswith("sqlite:///"):
        path, query = _split_query(uri.removeprefix("sqlite:///"))
        # SQLite's URI filenames (`file:/abs/db?mode=ro&uri=true`) name their path after `file:`.
        scheme = "file:" if path.startswith("file:") else ""
        target = path.removeprefix(scheme)
        if target and not target.startswith("/") and target != ":memory:":
            return f"sqlite:///{scheme}{workspace_root() / target}{query}"
        return uri
    if uri.startswith("file:"):
        path = uri.removeprefix("file:")
        if not path.startswith("/"):
            return (workspace_root() / path).as_uri()
        return uri
    if "://" not in uri and not Path(uri).is_absolute():
        return str(workspace_root() / uri)
    return uri


def _split_query(text: str) -> tuple[str, str]:
    path, mark, query = text.partition("?")
    return path, f"{mark}{query}"


def _local_sqlite_artifacts(uri: str) -> str | None:
    """Where a new experiment of a local SQLite store named by URI keeps its artifacts: beside
    the database file (`<name>-artifacts/`), not MLflow's default `./mlruns` of the current
    folder, which under `dvc exp run --temp` is the temporary copy."""
    if not uri.startswith("sqlite:///"):
        return None
    path, _ = _split_query(uri.removeprefix("sqlite:///"))
    if not path.startswith("/"):
        return None
    database = Path(path)
    return database.with_name(f"{database.stem}-artifacts").as_uri()


def _embedded_uri() -> str:
    # A generous SQLite busy timeout: parallel queued experiments write to the same file.
    return f"sqlite:///{store_database()}?timeout=60"


def _check_reachable(uri: str) -> None:
    if uri.startswith(("http://", "https://")):
        try:
            requests.get(f"{uri.rstrip('/')}/health", timeout=5).raise_for_status()
        except requests.RequestException as error:
            reason = type(error).__name__
            raise TrackingError(
                f"MLflow tracking server {uri} is unreachable ({reason})"
            ) from None


def bound_requests(config: TrackingConfig) -> None:
    """Make MLflow's HTTP calls give up within seconds, with the settings of params.tracking.

    MLflow reads these variables at each request (its urllib3 Retry and requests' timeout);
    its defaults wait 120 s per try over 7 retries, 21 minutes for a server that hangs.
    """
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(config.request_timeout_seconds)
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(config.request_retries)
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = str(config.request_backoff_seconds)
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_JITTER"] = "0"


def connect(config: TrackingConfig) -> str:
    """Point MLflow at the store, create the experiment if needed; return its id."""
    bound_requests(config)
    uri = tracking_uri()
    if os.environ.get("MLFLOW_TRACKING_URI", "").strip():
        os.environ["MLFLOW_TRACKING_URI"] = uri  # what MLflow reads by itself, resolved too
    _check_reachable(uri)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(uri)
    try:
        # Only the embedded store keeps its artifacts in the workspace; a store named by
        # MLFLOW_TRACKING_URI (also another SQLite file) keeps MLflow's own artifact default.
        if uri == _embedded_uri():
            store_artifacts().mkdir(parents=True, exist_ok=True)
            # One process at a time creates the schema and the experiment.
            with FileLock(store_dir() / ".init.lock", timeout=300):
                if not store_database().exists():
                    # MLflow creates its `Default` experiment 0 with the schema, its artifacts
                    # under ./mlruns/0 unless the store is opened with an artifact root.
                    SqlAlchemyStore(uri, store_artifacts().as_uri())
                return _experiment_id(config.experiment, store_artifacts().as_uri())
        return _experiment_id(config.experiment, _local_sqlite_artifacts(uri))
    except TrackingError:
        raise
    except Exception as error:  # noqa: BLE001 - any store fault becomes one line naming the URI
        raise TrackingError(f"MLflow tracking store {uri}: {_one_line(error)}") from None


def _experiment_id(name: str, artifact_location: str | None) -> str:
    client = MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(
            name,
            artifact_location=artifact_location,
            tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
        )
    if experiment.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return experiment.experiment_id


def _one_line(error: BaseException) -> str:
    """The cause of `error` in one line: a known store fault by name, else its first line."""
    chain = [error]
    while (inner := chain[-1].__cause__ or chain[-1].__context__) and inner not in chain:
        chain.append(inner)
    text = " ".join(str(e) for e in chain).lower()
    for needle, cause in _STORE_FAULTS.items():
        if needle in text:
            return f"{cause}: {needle}"
    root = chain[-1]
    lines = str(root).strip().splitlines()
    return f"{type(root).__name__}: {lines[0] if lines else ''}"[:500]


class TrackedRun:
    """One MLflow run; each logging call that fails is remembered and reported at the end."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.failures: list[str] = []
        self._client = MlflowClient()

    def _guard(self, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - logging must never lose the local results
            self.failures.append(f"{what} ({_one_line(error)})")
            log.warning("MLflow %s failed: %s", what, _one_line(error))
            return None

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params, values cut to MLflow's length limit (re-logging a value is no change)."""
        values = {k: str(v)[:_PARAM_VALUE_LIMIT] for k, v in params.items()}
        self._guard("log_params", mlflow.log_params, values, run_id=self.run_id)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log metrics in one batch (step = epoch for curves); metrics without a step are linked
        to the model the run logged at step 0, as MLflow does for any metric at a model's step."""
        values = {k: float(v) for k, v in metrics.items()}
        self._guard(
            f"log_metrics step {step}", mlflow.log_metrics, values, step=step, run_id=self.run_id
        )

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set run tags."""
        batch = [mlflow.entities.RunTag(k, str(v)) for k, v in tags.items()]
        self._guard("set_tags", self._client.log_batch, self.run_id, tags=batch)

    def log_text(self, text: str, artifact_file: str) -> None:
        """Log a text artifact."""
        self._guard(
            f"log_text {artifact_file}", self._client.log_text, self.run_id, text, artifact_file
        )

    def log_figure(self, figure: Figure, artifact_file: str) -> None:
        """Log a matplotlib figure as a PNG artifact."""
        self._guard(
            f"log_figure {artifact_file}",
            self._client.log_figure,
            self.run_id,
            figure,
            artifact_file,
        )

    def log_table(self, table: pd.DataFrame, artifact_file: str) -> None:
        """Log a DataFrame as an MLflow table (viewable in the UI's artifact view)."""
        self._guard(
            f"log_table {artifact_file}", self._client.log_table, self.run_id, table, artifact_file
        )

    def log_artifact(self, path: Path, artifact_dir: str | None = None) -> None:
        """Log a local file or folder as artifacts."""
        log_fn = self._client.log_artifacts if path.is_dir() else self._client.log_artifact
        self._guard(f"log_artifact {path.name}", log_fn, self.run_id, str(path), artifact_dir)

    def log_keras_model(self, model: keras.Model, sample: np.ndarray, name: str) -> str | None:
        """Log the model in MLflow's Keras flavour as MLflow's logged model `name` (the
        architecture), with an input signature, into the active run; return its URI."""

        def _log() -> str:
            signature = mlflow.models.infer_signature(sample, model.predict(sample, verbose=0))
            return mlflow.keras.log_model(
                model, name=name, signature=signature, pip_requirements=_model_requirements()
            ).model_uri

        uri = self._guard("log_model", _log)
        if uri:
            self.set_tags({"pipeline.model_uri": uri})
        return uri

    def log_dvc_datasets(self, path: Path, digest: str, dataset: Mapping[str, Any]) -> None:
        """Log the train, validation and test splits of the DVC-tracked data set `path` as the
        active run's dataset inputs (digest = DVC's md5 of the file, source = its repo path)."""
        try:
            source = str(Path(path).resolve().relative_to(workspace_root().resolve()))
        except ValueError:
            source = str(path)
        with warnings.catch_warnings():
            # MLflow registers its local-file source twice (schemes "" and "file") and warns
            # that a path matches both.
            warnings.filterwarnings("ignore", "The specified dataset source can be interpreted")
            splits = [
                mlflow.data.from_numpy(
                    dataset[x], source, dataset[y], name=f"mnist-{split}", digest=digest
                )
                for split, _, x, y in DATASET_SPLITS
            ]
        contexts = [context for _, context, _, _ in DATASET_SPLITS]
        self._guard("log_inputs", mlflow.log_inputs, splits, contexts, [None] * len(splits))

    def log_digit_reader(
        self,
        model_files: Mapping[str, Path],
        manifest: Mapping[str, Any],
        example: str,
        name: str = "champion",
    ) -> str | None:
        """Log the pyfunc that reads raw images with the Keras files `model_files` (the members
        named in `manifest`), the project's code, a signature and `example` (a base64 PNG of a
        real digit) as its input example; return its model URI."""
        import tempfile

        from mlflow.models import ModelSignature
        from mlflow.types.schema import AnyType, Array, ColSpec, DataType, Schema

        from pipeline import paths, serving

        signature = ModelSignature(
            inputs=Schema(
                [
                    # Any type: pipeline.serving checks each cell and names the field in a
                    # 400; MLflow's own schema check would answer with the whole request.
                    ColSpec(AnyType(), serving.IMAGE_COLUMN, required=False),
                    ColSpec(AnyType(), serving.PIXELS_COLUMN, required=False),
                ]
            ),
            outputs=Schema(
                [ColSpec(DataType.long, "digit"), ColSpec(Array(DataType.double), "probabilities")]
            ),
        )

        def _log(folder: str) -> str:
            manifest_path = Path(folder) / serving.MANIFEST
            manifest_path.write_text(json.dumps(manifest, indent=2))
            info = mlflow.pyfunc.log_model(
                name=name,
                python_model=str(SERVED_MODEL_CODE),
                artifacts={
                    serving.MANIFEST: str(manifest_path),
                    **{f"member_{member}": str(path) for member, path in model_files.items()},
                },
                code_paths=[str(paths.ROOT / "pipeline")],
                signature=signature,
                input_example=pd.DataFrame({serving.IMAGE_COLUMN: [example]}),
                pip_requirements=[*_model_requirements(), "pillow", "pandas", "numpy"],
            )
            return info.model_uri

        with tempfile.TemporaryDirectory() as folder:
            uri = self._guard(f"log_model {name}", _log, folder)
        if uri:
            self.set_tags({"pipeline.model_uri": uri})
        return uri

    def raise_failures(self) -> None:
        """Raise one TrackingError naming every logging call that failed."""
        if self.failures:
            raise TrackingError(
                f"MLflow logging to {tracking_uri()} failed for run {self.run_id}: "
                + "; ".join(self.failures)
                + " (local outputs were written)"
            )


def _model_requirements() -> list[str]:
    # Pinned explicitly: MLflow's requirement inference starts a subprocess and costs seconds.
    # The backend the model trained on; the saved model loads under the other one too.
    if keras.backend.backend() == "jax":
        import jax

        backend = f"jax=={jax.__version__}"
    else:
        import tensorflow as tf

        backend = f"tensorflow=={tf.__version__}"
    return [backend, f"keras=={keras.__version__}", f"mlflow=={mlflow.__version__}"]


def attach_run(run_id: str) -> TrackedRun:
    """Log into an existing run without reopening it: its status and duration stay as they are."""
    return TrackedRun(run_id)


@contextmanager
def start_run(
    experiment_id: str, run_name: str, tags: Mapping[str, Any], run_id: str | None = None
) -> Iterator[TrackedRun]:
    """Open (or reopen, with `run_id`) MLflow's active run, which adds its source, git and user
    tags and logs system metrics while it is open; end it FINISHED, FAILED or KILLED (Ctrl-C)."""
    try:
        active = mlflow.start_run(
            run_id=run_id,
            experiment_id=None if run_id else experiment_id,
            run_name=None if run_id else run_name,
            tags={k: str(v) for k, v in tags.items()},
            log_system_metrics=True,
        )
    except Exception as error:  # noqa: BLE001
        raise TrackingError(
            f"MLflow {tracking_uri()}: cannot open a run ({_one_line(error)})"
        ) from None
    tracked = TrackedRun(active.info.run_id)
    status = "FAILED"
    try:
        yield tracked
        status = "FAILED" if tracked.failures else "FINISHED"  # a run missing data is no success
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        tracked._guard(f"end run as {status}", mlflow.end_run, status)


def find_run(experiment_id: str, tags: Mapping[str, str]) -> str | None:
    """The newest run whose tags equal `tags`, or None."""
    clauses = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    try:
        runs = MlflowClient(tracking_uri()).search_runs(
            [experiment_id],
            filter_string=clauses,
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    except Exception as error:  # noqa: BLE001
        raise TrackingError(
            f"MLflow {tracking_uri()}: search failed ({_one_line(error)})"
        ) from None
    return runs[0].info.run_id if runs else None


def run_status(run_id: str) -> str | None:
    """The status of `run_id` (RUNNING, FINISHED, KILLED...), or None if it does not exist."""
    try:
        return MlflowClient().get_run(run_id).info.status
    except Exception:  # noqa: BLE001 - a run that cannot be read is one we cannot continue
        return None


# Read-only look-ups of the store tracking_uri() names (the screenshots tool needs them).


def find_experiment(name: str) -> str | None:
    """The id of the experiment `name`, or None if there is none."""
    experiment = MlflowClient(tracking_uri()).get_experiment_by_name(name)
    return experiment.experiment_id if experiment is not None else None


def runs_url(base_url: str, experiment: str) -> str:
    """The UI page of `experiment`'s runs (`<base_url>/#/experiments/<id>/runs`), or the UI's
    experiment list while the store has no such experiment. Reads the store; creates nothing."""
    found = None
    if tracking_uri() != _embedded_uri() or store_database().exists():
        found = find_experiment(experiment)
    return f"{base_url}/#/experiments" + (f"/{found}/runs" if found else "")


def alias_run(registered_name: str, alias: str = "champion") -> str | None:
    """The run that logged the model `registered_name@alias`, or None if there is no such alias."""
    try:
        version = MlflowClient(tracking_uri()).get_model_version_by_alias(registered_name, alias)
    except Exception:  # noqa: BLE001 - no such model or alias
        return None
    return version.tags.get("pipeline.run_id") or version.run_id


def tagged_runs(experiment_name: str, tags: Mapping[str, str]) -> list[dict[str, Any]]:
    """The runs of the experiment `experiment_name` whose tags equal `tags`, newest first, each
    as its run id, tags and latest metrics."""
    uri = tracking_uri()
    _check_reachable(uri)
    client = MlflowClient(uri)
    clauses = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    try:
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is None:
            return []
        runs = client.search_runs(
            [experiment.experiment_id],
            filter_string=clauses,
            order_by=["attributes.start_time DESC"],
        )
    except Exception as error:  # noqa: BLE001
        raise TrackingError(f"MLflow {uri}: search failed ({_one_line(error)})") from None
    return [
        {"run_id": r.info.run_id, "tags": dict(r.data.tags), "metrics": dict(r.data.metrics)}
        for r in runs
    ]


def run_tags(run_id: str) -> dict[str, str]:
    """The tags of `run_id`."""
    return dict(MlflowClient(tracking_uri()).get_run(run_id).data.tags)


def artifact_files(run_id: str, folder: str) -> list[str]:
    """The paths of the artifacts of `run_id` in `folder`."""
    return [item.path for item in MlflowClient(tracking_uri()).list_artifacts(run_id, folder)]


class EpochLogger(keras.callbacks.Callback):
    """Logs every number in an epoch's logs to the run, step = epoch number (1-based)."""

    def __init__(self, run: TrackedRun) -> None:
        super().__init__()
        self.run = run

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        numbers = {k: v for k, v in (logs or {}).items() if isinstance(v, int | float)}
        self.run.log_metrics(numbers, step=epoch + 1)


def model_summary(model: keras.Model) -> str:
    """The Keras summary as text."""
    lines: list[str] = []
    model.summary(print_fn=lambda line, **_: lines.append(line))
    return "\n".join(lines)


def register_model(
    registered_name: str, model_uri: str, tags: Mapping[str, str], alias: str = "champion"
) -> str:
    """Register `model_uri` (unless `alias` already points at it) and point `alias` at it;
    return the version."""
    client = MlflowClient()
    try:
        try:
            current = client.get_model_version_by_alias(registered_name, alias)
        except Exception:  # noqa: BLE001 - no such model or alias yet
            current = None
        if current is not None and current.tags.get("pipeline.model_uri") == model_uri:
            return str(current.version)
        version = mlflow.register_model(
            model_uri, registered_name, tags={**tags, "pipeline.model_uri": model_uri}
        )
        client.set_registered_model_alias(registered_name, alias, version.version)
        return str(version.version)
    except Exception as error:  # noqa: BLE001
        raise TrackingError(
            f"MLflow {tracking_uri()}: registering {registered_name}@{alias} failed "
            f"({_one_line(error)})"
        ) from None


def experiment_alias(experiment: str) -> str:
    """The alias of the champion DVC experiment `experiment` registered: `exp-<name>`, with every
    character MLflow refuses in an alias (anything but letters, digits, _ and -) as `-`."""
    return f"exp-{re.sub(r'[^A-Za-z0-9_-]', '-', experiment)}"[:_ALIAS_LIMIT]


def model_version(
    registered_name: str, alias: str | None = None, version: str | None = None
) -> dict[str, Any]:
    """The version of `registered_name` that `alias` (or the number `version`) names: its
    version, aliases and tags; a TrackingError in one line if there is none."""
    uri = tracking_uri()
    _check_reachable(uri)
    client = MlflowClient(uri)
    try:
        found = (
            client.get_model_version_by_alias(registered_name, alias)
            if alias is not None
            else client.get_model_version(registered_name, str(version))
        )
    except Exception as error:  # noqa: BLE001 - no such model, alias or version
        named = f"@{alias}" if alias is not None else f" version {version}"
        try:
            known = sorted(client.get_registered_model(registered_name).aliases)
        except Exception:  # noqa: BLE001 - no such model at all
            known = []
        hint = f"its aliases: {', '.join(known)}" if known else _one_line(error)
        raise TrackingError(f"MLflow {uri}: no {registered_name}{named} ({hint})") from None
    return {"version": str(found.version), "aliases": list(found.aliases), "tags": found.tags}


def set_alias(registered_name: str, alias: str, version: str) -> None:
    """Point `registered_name@alias` at `version`."""
    try:
        MlflowClient(tracking_uri()).set_registered_model_alias(registered_name, alias, version)
    except Exception as error:  # noqa: BLE001
        raise TrackingError(
            f"MLflow {tracking_uri()}: setting {registered_name}@{alias} failed "
            f"({_one_line(error)})"
        ) from None


def load_registered(registered_name: str, alias: str = "champion") -> Any:
    """The pyfunc `models:/<registered_name>@<alias>` from the tracking store."""
    uri = tracking_uri()
    _check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    try:
        return mlflow.pyfunc.load_model(f"models:/{registered_name}@{alias}")
    except Exception as error:  # noqa: BLE001 - a missing alias, model or artifact: one line
        raise TrackingError(
            f"MLflow {uri}: cannot load models:/{registered_name}@{alias} ({_one_line(error)}); "
            "run `dvc repro` to register a champion"
        ) from None
