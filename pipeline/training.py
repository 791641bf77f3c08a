"""compile_and_fit(): optimiser, schedule and model.fit, resumable after an interruption.

An interrupted fit resumes from its last completed epoch: Keras BackupAndRestore keeps its state
in checkpoints/<model>/<fingerprint>/, a folder DVC does not delete, keyed by everything that
determines the weights, so a changed parameter never resumes a stale training.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from pipeline.config import ModelSpec, RunnerConfig, TrainConfig
from pipeline.errors import Terminated


def fingerprint(spec: ModelSpec, seed: int, runner: RunnerConfig, data_md5: str) -> str:
    """A short hash of everything that determines the trained weights."""
    key = {"spec": asdict(spec), "seed": seed, "runner": asdict(runner), "data": data_md5}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Checkpoint:
    """The resumable state of one training: Keras backup, epoch history, MLflow run id."""

    def __init__(self, model_dir: Path, key: str) -> None:
        self.model_dir = model_dir
        self.dir = model_dir / key
        self.backup = self.dir / "backup"
        self.history = self.dir / "history.csv"
        self._run_id_file = self.dir / "mlflow_run_id"

    def resuming(self) -> bool:
        """True if an earlier training with the same fingerprint stopped after some epochs."""
        return self.backup.is_dir() and any(self.backup.iterdir())

    def start(self) -> None:
        """Prepare the folder; forget other fingerprints' and a finished training's leftovers."""
        if self.model_dir.is_dir():
            for other in self.model_dir.iterdir():
                if other != self.dir:
                    shutil.rmtree(other, ignore_errors=True)
        if not self.resuming():
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)

    def run_id(self) -> str | None:
        """The MLflow run of the interrupted training, if any."""
        if self.resuming() and self._run_id_file.is_file():
            return self._run_id_file.read_text().strip() or None
        return None

    def save_run_id(self, run_id: str) -> None:
        """Remember the MLflow run so a resumed training continues it."""
        self._run_id_file.write_text(run_id)

    def clear(self) -> None:
        """Delete the state once the training has completed and its outputs are written."""
        shutil.rmtree(self.dir, ignore_errors=True)

    def read_history(self) -> pd.DataFrame:
        """Every completed epoch so far (1-based `epoch`), across interruptions."""
        if not self.history.is_file() or self.history.stat().st_size == 0:
            return pd.DataFrame()
        history = pd.read_csv(self.history)
        history["epoch"] = history["epoch"].astype(int) + 1
        # An epoch redone after a kill between its CSV row and its backup appears twice.
        return history.drop_duplicates("epoch", keep="last").reset_index(drop=True)


class SafePoints(keras.callbacks.Callback):
    """Defers Ctrl-C and SIGTERM to the end of a batch or epoch.

    A signal raised at any bytecode could stop BackupAndRestore half-way through writing its
    backup, and the next run could not resume. Placed last, this raises only at safe points.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pending: int | None = None

    def record(self, signum: int, frame: FrameType | None) -> None:
        self.pending = signum

    def _raise_pending(self, *args: Any, **kwargs: Any) -> None:
        if self.pending == signal.SIGTERM:
            raise Terminated()
        if self.pending is not None:
            raise KeyboardInterrupt()

    on_train_batch_end = _raise_pending
    on_epoch_end = _raise_pending


@contextmanager
def _deferred_signals(safe_points: SafePoints) -> Iterator[None]:
    previous = {s: signal.signal(s, safe_points.record) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        safe_points._raise_pending()  # a signal that arrived after the last safe point


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_seconds` (wall time of the epoch) to each epoch's logs."""

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._start


def _optimizer(train: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    rate: float | keras.optimizers.schedules.LearningRateSchedule = train.learning_rate
    if train.lr_schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(
            train.learning_rate, decay_steps=train.epochs * steps_per_epoch
        )
    if train.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=0.9)
    if train.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(rate)
    return keras.optimizers.Adam(rate)


def steps_per_epoch(train_size: int, batch_size: int) -> int:
    """Batches per epoch (the last one may be partial)."""
    return -(-train_size // batch_size)


def compile_model(
    model: keras.Model, train: TrainConfig, train_size: int, jit_compile: bool
) -> None:
    """Compile with the configured optimiser and schedule, sparse cross-entropy and accuracy."""
    model.compile(
        optimizer=_optimizer(train, steps_per_epoch(train_size, train.batch_size)),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )


def epoch_callbacks(
    checkpoint: Checkpoint,
    callbacks: Sequence[keras.callbacks.Callback],
    safe_points: SafePoints,
) -> list[keras.callbacks.Callback]:
    """The per-epoch bookkeeping around every fit, `callbacks` (tracking) in their place.

    Order matters for a kill between two callbacks: the tracking callbacks see an epoch before
    the history file, and the history file before the backup, so a resumed fit redoes (and
    re-logs) an epoch rather than leaving one missing.
    """
    return [
        EpochTimer(),
        *callbacks,
        keras.callbacks.CSVLogger(str(checkpoint.history), append=True),
        keras.callbacks.BackupAndRestore(str(checkpoint.backup), delete_checkpoint=False),
        safe_points,
    ]


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool) -> tf.data.Dataset:
    """(x, y) in batches, drawn in a new order each epoch if `shuffle` (from TF's global seed).

    What `model.fit` builds from arrays itself, but with tf.data autotuning off. Its tuner thread
    sleeps for up to a minute between rounds, and TensorFlow 2.21 waits for it to wake before it
    closes an epoch's iterator: on a 2-core CPU, 25-40 s of idle time in a third of the 50-second
    epochs of a convnet. One batch prefetched in the background keeps the model just as busy.
    """
    features, labels = tf.constant(x), tf.constant(y)
    order = tf.data.Dataset.range(len(x))
    if shuffle:
        order = order.shuffle(len(x), reshuffle_each_iteration=True)
    dataset = order.batch(batch_size).map(
        lambda indices: (tf.gather(features, indices), tf.gather(labels, indices))
    )
    options = tf.data.Options()
    options.autotune.enabled = False
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.prefetch(1).with_options(options)


def fit(
    model: keras.Model,
    dataset: Mapping[str, np.ndarray],
    train: TrainConfig,
    checkpoint: Checkpoint,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> pd.DataFrame:
    """Fit for `train.epochs` (resuming if the checkpoint holds some) and return every epoch."""
    safe_points = SafePoints()
    with _deferred_signals(safe_points):
        model.fit(
            batches(dataset["x_train"], dataset["y_train"], train.batch_size, shuffle=True),
            validation_data=batches(
                dataset["x_val"], dataset["y_val"], train.batch_size, shuffle=False
            ),
            epochs=train.epochs,
            verbose=2,
            callbacks=epoch_callbacks(checkpoint, callbacks, safe_points),
        )
    return checkpoint.read_history()


def summarize(history: pd.DataFrame, parameters: int) -> dict[str, float | int]:
    """The totals DVC tracks as metrics (train.json): size, epochs, time, last-epoch accuracy."""
    return {
        "parameters": parameters,
        "epochs": len(history),
        "train_seconds": round(float(history["epoch_seconds"].sum()), 2),
        "val_accuracy": float(history["val_accuracy"].iloc[-1]),
        "val_loss": float(history["val_loss"].iloc[-1]),
        "train_accuracy": float(history["accuracy"].iloc[-1]),
    }
