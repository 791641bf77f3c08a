"""Section 1: the overhead of the pipeline's callbacks and MLflow logging on model.fit."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import numpy as np

from pipeline import data, paths
from pipeline.config import ModelSpec, Params
from tools.bench.measure import (
    BenchError,
    alternating_order,
    interleave,
    paired_ratio,
    summary,
    timed,
    verdict,
)
from tools.bench.trials import WARMUP_BATCHES, clear_keras, fresh_model, pick_model, subset

if TYPE_CHECKING:  # TensorFlow, Keras and MLflow are imported only where they are used
    import keras

    from pipeline.runner import Runtime
    from pipeline.tracking import TrackedRun

log = logging.getLogger("tools.bench")

TRACKING_REPEATS = 5
TRACKING_TRAIN_IMAGES = 8_000
TRACKING_VAL_IMAGES = 2_000
TRACKING_EPOCHS = 2
TRACKING_GOAL_RATIO = 1.03
FIXED_COST_REPEATS = 3
BOOKKEEPING_EPOCHS = 20


def tracking_overhead(
    params: Params,
    runtime: Runtime,
    repeats: int = TRACKING_REPEATS,
    model_name: str | None = None,
) -> dict[str, Any]:
    """Plain model.fit against training.fit with the pipeline's callbacks and MLflow logging."""
    from pipeline import tracking, training

    name = model_name or pick_model(params)
    spec = params.model(name)
    train = dataclasses.replace(spec.train, epochs=TRACKING_EPOCHS)
    dataset = data.load_dataset(paths.DATASET)
    part = subset(dataset, TRACKING_TRAIN_IMAGES, TRACKING_VAL_IMAGES, params.seed)
    del dataset
    train_size = len(part["y_train"])
    tags = {"pipeline.model": name, "pipeline.stage": "bench", **runtime.tags()}

    def model() -> keras.Model:
        """The train stage's compiled trainee for this subset."""
        return fresh_model(params, spec, part, runtime)[1]

    # MLflow keeps the artifacts of a store named by MLFLOW_TRACKING_URI under ./mlruns, so the
    # working directory is the temporary folder too.
    with (
        tempfile.TemporaryDirectory(prefix="bench-tracking-") as tmp,
        contextlib.chdir(tmp),
        mock.patch.dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{Path(tmp) / 'store.db'}"),
    ):
        experiment = tracking.connect(params.tracking)  # creates the store's schema: not timed

        def plain(sample: Mapping[str, np.ndarray] = part) -> dict[str, float]:
            fitted = model()
            # The pipeline's own batches on both sides: the ratio is the tracking's alone.
            train_batches = training.batches(
                sample["x_train"], sample["y_train"], train.batch_size, shuffle=True
            )
            val_batches = training.batches(
                sample["x_val"], sample["y_val"], train.batch_size, shuffle=False
            )
            with contextlib.redirect_stdout(sys.stderr), timed() as figures:
                fitted.fit(
                    train_batches,
                    validation_data=val_batches,
                    epochs=train.epochs,
                    shuffle=False,  # the batches shuffle themselves
                    verbose=2,
                )
            return figures

        def tracked(sample: Mapping[str, np.ndarray] = part) -> dict[str, float]:
            fitted = model()
            checkpoint = training.Checkpoint(Path(tmp) / "checkpoints", "bench")
            checkpoint.start()
            # The run opens before and ends after the timed block: that is the fixed cost.
            with (
                tracking.start_run(experiment, f"bench {name}", tags) as run,
                contextlib.redirect_stdout(sys.stderr),
                timed() as figures,
            ):
                training.fit(fitted, sample, train, checkpoint, [tracking.EpochLogger(run)])
            checkpoint.clear()
            _check_logged(run)
            return figures

        # The process's first fit pays one-off costs (thread pools, kernels, first writes):
        # a short untimed run of each side keeps them out of the first timed repeat.
        log.info("  warm-up of both sides (not timed)")
        splits = ("x_train", "y_train", "x_val", "y_val")
        warm = {**part, **{key: part[key][: WARMUP_BATCHES * train.batch_size] for key in splits}}
        plain(warm)
        tracked(warm)
        runs = interleave({"plain": plain, "pipeline": tracked}, repeats)
        log.info("  per-epoch bookkeeping alone, %d epochs", BOOKKEEPING_EPOCHS)
        bookkeeping = bookkeeping_cost(model(), warm, experiment, tags, Path(tmp))
        log.info("  fixed cost of tracking, %d runs", FIXED_COST_REPEATS)
        fixed = [
            _fixed_cost(params, spec, fresh_model(params, spec, part, runtime)[0], part, tags)
            for _ in range(FIXED_COST_REPEATS)
        ]
    clear_keras()

    context = {
        "model": name,
        "train_images": train_size,
        "val_images": len(part["y_val"]),
        "epochs": train.epochs,
        "batch_size": train.batch_size,
    }
    return tracking_result(runs, fixed, bookkeeping, context)


def tracking_result(
    runs: Mapping[str, Sequence[Mapping[str, float]]],
    fixed: Sequence[Mapping[str, float]],
    bookkeeping: Sequence[Mapping[str, float]],
    context: Mapping[str, Any],
) -> dict[str, Any]:
    """Medians of both sides, paired ratios b/a against the goal, fixed-cost medians, and the
    per-epoch bookkeeping as a share of a plain epoch."""
    repeats = len(runs["plain"])
    result: dict[str, Any] = {
        **context,
        "repeats": repeats,
        "order": alternating_order(["plain", "pipeline"], repeats),
        "goal_ratio": TRACKING_GOAL_RATIO,
        "fixed_cost_repeats": len(fixed),
        "fixed_cost_s": {step: summary(fixed, step) for step in fixed[0]},
        "bookkeeping_epochs": len(bookkeeping),
    }
    for key in ("wall_s", "cpu_s"):
        result[f"plain_{key}"] = summary(runs["plain"], key)
        result[f"pipeline_{key}"] = summary(runs["pipeline"], key)
        ratio = paired_ratio(result[f"pipeline_{key}"]["runs"], result[f"plain_{key}"]["runs"])
        result[f"ratio_{key}"] = ratio
        result[f"verdict_{key}"] = verdict(ratio, TRACKING_GOAL_RATIO)
        per_epoch = summary(bookkeeping, key)
        result[f"bookkeeping_{key}"] = per_epoch
        plain_epoch = result[f"plain_{key}"]["median"] / context["epochs"]
        result[f"bookkeeping_ratio_{key}"] = 1 + per_epoch["median"] / plain_epoch
    return result


def _check_logged(run: TrackedRun) -> None:
    """Measurements of a store that refused writes would be wrong: stop."""
    if run.failures:
        raise BenchError(f"MLflow logging failed during the bench: {'; '.join(run.failures)}")


def bookkeeping_cost(
    model: keras.Model,
    sample: Mapping[str, np.ndarray],
    experiment: str,
    tags: Mapping[str, str],
    folder: Path,
    epochs: int = BOOKKEEPING_EPOCHS,
) -> list[dict[str, float]]:
    """Wall and CPU seconds of each epoch's callbacks alone, as training.fit arranges them.

    The whole-fit ratio above carries TensorFlow's run-to-run noise (several per cent); this
    times only what the pipeline adds per epoch: MLflow metrics, history CSV, backup.
    """
    import keras

    from pipeline import tracking, training

    history = model.fit(sample["x_train"], sample["y_train"], epochs=1, verbose=0)  # optimiser
    logs = {name: values[-1] for name, values in history.history.items()}
    logs |= {f"val_{name}": value for name, value in logs.items()}
    checkpoint = training.Checkpoint(folder / "bookkeeping", "bench")
    checkpoint.start()
    epochs_timed: list[dict[str, float]] = []
    with tracking.start_run(experiment, "bench bookkeeping", tags) as run:
        arranged = training.epoch_callbacks(
            checkpoint, [tracking.EpochLogger(run)], training.SafePoints()
        )
        callbacks = keras.callbacks.CallbackList(arranged, model=model)
        callbacks.on_train_begin()
        for epoch in range(epochs):
            with timed() as figures:
                callbacks.on_epoch_begin(epoch)
                callbacks.on_epoch_end(epoch, dict(logs))
            epochs_timed.append(figures)
        callbacks.on_train_end()
    _check_logged(run)
    if len(checkpoint.read_history()) != epochs:
        raise BenchError(f"the bookkeeping probe wrote {checkpoint.history} incompletely")
    checkpoint.clear()
    return epochs_timed


def _fixed_cost(
    params: Params,
    spec: ModelSpec,
    model: keras.Model,
    dataset: Mapping[str, np.ndarray],
    tags: Mapping[str, str],
) -> dict[str, float]:
    """Seconds of each tracking call a train stage makes outside its epoch loop, on the stage's
    own run params."""
    from pipeline import tracking
    from pipeline.stages.train import run_params

    steps: dict[str, float] = {}

    @contextlib.contextmanager
    def step(name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        steps[name] = time.perf_counter() - start

    stack = contextlib.ExitStack()
    try:
        with step("connect"):
            experiment = tracking.connect(params.tracking)
        with step("start_run"):
            run = stack.enter_context(tracking.start_run(experiment, f"bench {spec.name}", tags))
        with step("log_params"):
            run.log_params(run_params(params, spec, model, dataset))
        with step("log_text summary"):
            run.log_text(tracking.model_summary(model), "model_summary.txt")
        with step("log_keras_model"):
            run.log_keras_model(model, dataset["x_val"][:5], spec.name)
        with step("end_run"):
            stack.close()
    finally:
        stack.close()
    _check_logged(run)
    steps["total"] = sum(steps.values())
    return steps
