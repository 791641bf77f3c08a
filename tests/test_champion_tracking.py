"""tracking's champion additions against a temporary SQLite store: the experiment kind, logging
into a finished run, dataset inputs, and the served pyfunc of an ensemble."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from pipeline import serving, tracking
from pipeline.config import TrackingConfig
from tests.support import tracking_requests

REQUESTS = tracking_requests()
LIMITS = serving.RequestLimits(max_images=10, max_pixels=10_000)
CONFIG = TrackingConfig(
    experiment="champion-tests", registered_model="served", log_model=True, **REQUESTS
)


@pytest.fixture
def experiment_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.chdir(tmp_path)  # a SQLite store's default artifact root is ./mlruns
    return tracking.connect(CONFIG)


def test_experiment_declares_classic_model_training(experiment_id: str) -> None:
    client = MlflowClient()
    assert client.get_experiment(experiment_id).tags["mlflow.experimentKind"] == (
        "custom_model_development"
    )
    # An experiment made before the tag existed gets it on the next connect.
    client.delete_experiment_tag(experiment_id, "mlflow.experimentKind")
    assert tracking.connect(CONFIG) == experiment_id
    assert client.get_experiment(experiment_id).tags["mlflow.experimentKind"] == (
        "custom_model_development"
    )


def test_attached_run_is_logged_into_without_reopening(experiment_id: str) -> None:
    with tracking.start_run(experiment_id, "m", {}) as run:
        run.log_metrics({"train_seconds": 1.0})
    client = MlflowClient()
    before = client.get_run(run.run_id).info
    attached = tracking.attach_run(run.run_id)
    attached.log_metrics({"test_accuracy": 0.9})
    attached.set_tags({"pipeline.evaluated": "true"})
    after = client.get_run(run.run_id)
    assert after.info.status == "FINISHED"
    assert (after.info.start_time, after.info.end_time) == (before.start_time, before.end_time)
    assert after.data.metrics["test_accuracy"] == 0.9
    assert attached.failures == []


def test_dvc_datasets_are_the_runs_inputs(experiment_id: str, tmp_path: Path) -> None:
    dataset = {
        f"{x}_{split}": np.zeros((rows, 28, 28, 1) if x == "x" else rows, np.float32)
        for split, rows in (("train", 5), ("val", 3), ("test", 2))
        for x in ("x", "y")
    }
    with tracking.start_run(experiment_id, "m", {}) as run:
        run.log_dvc_datasets(tmp_path / "dataset.npz", "0" * 32, dataset)
    assert run.failures == []
    inputs = MlflowClient().get_run(run.run_id).inputs.dataset_inputs
    found = {
        i.dataset.name: (
            i.dataset.digest,
            [t.value for t in i.tags],
            json.loads(i.dataset.profile)["targets_shape"][0],  # the split's rows
            json.loads(i.dataset.source)["uri"],
        )
        for i in inputs
    }
    source = str(tmp_path / "dataset.npz")
    assert found == {
        "mnist-train": ("0" * 32, ["training"], 5, source),
        "mnist-validation": ("0" * 32, ["validation"], 3, source),
        "mnist-test": ("0" * 32, ["test"], 2, source),
    }


def test_ensemble_pyfunc_reads_images_like_the_local_reader(
    experiment_id: str, tmp_path: Path
) -> None:
    import keras

    files = {}
    for seed, name in enumerate(("first", "second")):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((28, 28, 1))
        outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs))
        files[name] = tmp_path / f"{name}.keras"
        keras.Model(inputs, outputs).save(files[name])
    weights = {"first": 3, "second": 1}
    digit = np.zeros((28, 28), np.float32)
    digit[4:24, 12:16] = 1.0
    example = serving.png_base64(digit)
    with tracking.start_run(experiment_id, "report", {}) as run:
        uri = run.log_digit_reader(files, serving.manifest(weights, 0.1, 0.3, LIMITS), example)
    assert uri and run.failures == []
    assert tracking.register_model(CONFIG.registered_model, uri, {"pipeline.model": "ensemble"})
    served = tracking.load_registered(CONFIG.registered_model)
    request = pd.DataFrame(
        {"image": [example, None], "pixels": [None, (digit * 255).astype(int).tolist()]}
    )
    answer = served.predict(request)
    local = serving.DigitReader(
        {name: keras.models.load_model(path) for name, path in files.items()}, weights, 0.1, 0.3
    ).predict(request)
    assert answer["digit"].tolist() == local["digit"].tolist()
    np.testing.assert_allclose(
        np.array(answer["probabilities"].tolist()),
        np.array(local["probabilities"].tolist()),
        atol=1e-6,
    )


def test_missing_champion_is_one_line_naming_the_model(experiment_id: str) -> None:
    with pytest.raises(tracking.TrackingError, match="cannot load models:/nothing@champion"):
        tracking.load_registered("nothing")
