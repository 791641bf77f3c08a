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

import mlflow  # noqa: E402 - after the telemetry switch above
from mlflow.entities import RunStatus  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

log = logging.getLogger(__name__)
# MLflow logs each store error with its traceback before raising it; we report it as one line.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)

# What a SQLite store's (or a full disk's) error text means, for the one-line report.
_STORE_FAULTS = {
    "readonly database": "the store is read-only",
    "database is locked": "the store is locked by another process",
    "database or disk is full": "the disk is full",
    "no space left on device": "the disk is full",
    "unable to open database file": "the store file cannot be opened",
}

# MLflow's longest alias.
_ALIAS_LIMIT = 255
# MLflow caps one param value at 6000 characters and one batch at 100 params.
_PARAM_VALUE_LIMIT = 6000
_PARAM_BATCH = 100
# MLflow's own tag and value for a classic model-training experiment. (MLflow 3.17's UI still
# opens experiments as its GenAI / Model training switch says, GenAI by default; the README's
# link adds ?workflowType=machine_learning.)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# The train, validation and test arrays of the processed data set, as MLflow dataset inputs.
DATASET_SPLITS = (
    ("train", "training", "y_train"),
    ("validation", "validation", "y_val"),
    ("test", "test", "y_test"),
)


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
    """`MLFLOW_TRACKING_URI` if set, else the embedded SQLite store of the workspace."""
    return os.environ.get("MLFLOW_TRACKING_URI", "").strip() or _embedded_uri()


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


def connect(config: TrackingConfig) -> str:
    """Point MLflow at the store, create the experiment if needed; return its id."""
    uri = tracking_uri()
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
                return _experiment_id(config.experiment, store_artifacts().as_uri())
        return _experiment_id(config.experiment, None)
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
        """Log params, values cut to MLflow's length limit."""
        items = [(k, str(v)[:_PARAM_VALUE_LIMIT]) for k, v in params.items()]
        existing = self._guard(
            "read params", lambda: self._client.get_run(self.run_id).data.params
        )
        items = [(k, v) for k, v in items if (existing or {}).get(k) != v]
        for start in range(0, len(items), _PARAM_BATCH):
            batch = [mlflow.entities.Param(k, v) for k, v in items[start : start + _PARAM_BATCH]]
            self._guard("log_params", self._client.log_batch, self.run_id, params=batch)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log metrics in one batch (step = epoch for curves)."""
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

    def log_keras_model(self, model: keras.Model, sample: np.ndarray) -> str | None:
        """Log the model in MLflow's Keras flavour with an input signature; return its URI."""

        def _log() -> str:
            signature = mlflow.models.infer_signature(sample, model.predict(sample, verbose=0))
            info = mlflow.keras.log_model(
                model,
                name="model",
                signature=signature,
                pip_requirements=_model_requirements(),
            )
            return info.model_uri

        with _active(self.run_id):
            uri = self._guard("log_model", _log)
        if uri:
            self.set_tags({"pipeline.model_uri": uri})
        return uri

    def log_dvc_datasets(self, path: Path, digest: str, dataset: Mapping[str, Any]) -> None:
        """Log the train, validation and test splits of the DVC-tracked data set `path` as the
        run's dataset inputs (digest = DVC's md5 of the file, source = its path in the repo)."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        try:
            source = str(Path(path).resolve().relative_to(workspace_root().resolve()))
        except ValueError:
            source = str(path)
        inputs = [
            DatasetInput(
                Dataset(
                    name=f"mnist-{split}",
                    digest=digest,
                    source_type="dvc",
                    source=source,
                    profile=json.dumps({"num_rows": int(len(dataset[labels]))}),
                ),
                tags=[InputTag("mlflow.data.context", context)],
            )
            for split, context, labels in DATASET_SPLITS
        ]
        self._guard("log_inputs", self._client.log_inputs, self.run_id, datasets=inputs)

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
        from mlflow.types.schema import Array, ColSpec, DataType, Schema

        from pipeline import paths, serving

        signature = ModelSignature(
            inputs=Schema(
                [
                    ColSpec(DataType.string, serving.IMAGE_COLUMN, required=False),
                    ColSpec(Array(Array(DataType.long)), serving.PIXELS_COLUMN, required=False),
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
                python_model=DigitModel(),
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

        with _active(self.run_id), tempfile.TemporaryDirectory() as folder:
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


@contextmanager
def _active(run_id: str) -> Iterator[None]:
    """Make `run_id` the fluent API's active run for the block (model logging needs one)."""
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        yield
        return
    try:
        mlflow.start_run(run_id=run_id)
    except Exception as error:  # noqa: BLE001
        log.warning("MLflow start_run %s failed: %s", run_id, _one_line(error))
        yield
        return
    try:
        yield
    finally:
        try:
            mlflow.end_run()
        except Exception as error:  # noqa: BLE001
            log.warning("MLflow end_run failed: %s", _one_line(error))


class DigitModel(mlflow.pyfunc.PythonModel):
    """The registered model: raw images in (see pipeline.serving), digit and probabilities out."""

    def load_context(self, context: Any) -> None:
        from pipeline import serving

        artifacts = context.artifacts
        members = {
            key.removeprefix("member_"): Path(path)
            for key, path in artifacts.items()
            if key.startswith("member_")
        }
        self.reader = serving.DigitReader.load(Path(artifacts[serving.MANIFEST]), members)

    # No type hints here: MLflow would read them as a second, conflicting input schema.
    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
        return self.reader.predict(model_input)


def attach_run(run_id: str) -> TrackedRun:
    """Log into an existing run without reopening it: its status and duration stay as they are."""
    return TrackedRun(run_id)


@contextmanager
def start_run(
    experiment_id: str, run_name: str, tags: Mapping[str, Any], run_id: str | None = None
) -> Iterator[TrackedRun]:
    """Open (or reopen, with `run_id`) a run; end it FINISHED, FAILED or KILLED (on Ctrl-C)."""
    client = MlflowClient()
    try:
        if run_id is None:
            run = client.create_run(
                experiment_id, run_name=run_name, tags={k: str(v) for k, v in tags.items()}
            )
            run_id = run.info.run_id
        else:
            client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
    except Exception as error:  # noqa: BLE001
        raise TrackingError(
            f"MLflow {tracking_uri()}: cannot open a run ({_one_line(error)})"
        ) from None
    tracked = TrackedRun(run_id)
    if tags:
        tracked.set_tags(tags)
    status = "FAILED"
    try:
        yield tracked
        status = "FAILED" if tracked.failures else "FINISHED"  # a run missing data is no success
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        tracked._guard(f"end run as {status}", client.set_terminated, run_id, status)


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
