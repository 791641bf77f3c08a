"""Tests of tools.bench.overhead against a temporary SQLite store: the per-epoch bookkeeping
probe, and the fixed cost, which logs the train stage's own run params."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from pipeline import tracking
from pipeline.config import load_params
from tools.bench.overhead import _fixed_cost, bookkeeping_cost

TAGS = {"pipeline.model": "tiny", "pipeline.stage": "bench"}


@pytest.fixture
def experiment_id(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """A fresh SQLite store named by MLFLOW_TRACKING_URI, connected; cwd in tmp."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/store.db")
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    yield tracking.connect(load_params().tracking)
    mlflow.set_tracking_uri(None)


def tiny_model() -> keras.Model:
    inputs = keras.Input(shape=(4,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def samples(count: int = 32) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(count, 4)).astype("float32"), rng.integers(0, 2, size=count)


def steps(run_id: str, key: str) -> list[int]:
    return sorted(point.step for point in MlflowClient().get_metric_history(run_id, key))


def test_bookkeeping_probe_times_and_logs_each_epoch_as_fit_would(
    experiment_id: str, tmp_path: Path
) -> None:
    features, labels = samples()
    epochs = bookkeeping_cost(
        tiny_model(),
        {"x_train": features, "y_train": labels},
        experiment_id,
        TAGS,
        tmp_path,
        epochs=4,
    )
    assert len(epochs) == 4
    assert all(e["wall_s"] > 0 and e["cpu_s"] >= 0 for e in epochs)
    (probe,) = mlflow.search_runs([experiment_id], output_format="list")
    assert probe.info.run_name == "bench bookkeeping"
    assert probe.info.status == "FINISHED"
    for key in ("loss", "val_accuracy", "epoch_seconds"):  # EpochTimer runs before the logger
        assert steps(probe.info.run_id, key) == [1, 2, 3, 4], key
    assert not (tmp_path / "bookkeeping" / "bench").exists()  # its backup and CSV are cleared


def test_fixed_cost_logs_the_train_stage_s_own_run_params(experiment_id: str) -> None:
    params = load_params()
    spec = next(iter(params.models.values()))
    features, labels = samples(10)
    dataset = {"x_train": features, "y_train": labels, "x_val": features[:6], "y_val": labels[:6]}
    seconds = _fixed_cost(params, spec, tiny_model(), dataset, TAGS)
    assert seconds["total"] == pytest.approx(sum(v for k, v in seconds.items() if k != "total"))
    (run,) = mlflow.search_runs([experiment_id], output_format="list")
    assert run.data.params["data.train_size"] == "10"
    assert run.data.params["data.validation_size"] == "6"
    assert run.data.params["model.parameters"] == "10"
