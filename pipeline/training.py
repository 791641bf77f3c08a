"""compile_and_fit(): optimiser, schedule and model.fit, resumable after an interruption.

An interrupted fit resumes from its last completed epoch: `Backup` (Keras' BackupAndRestore,
made safe against a kill mid-write) keeps its state in checkpoints/<model>/<fingerprint>/, a
folder DVC does not delete, keyed by everything that determines the weights, so a changed
parameter never resumes a stale training. The backup holds the weights and the optimiser's
variables (its step, hence the schedule, too); everything random in epoch k (batch order,
dropout, augmentation) is drawn afresh from (seed, k) when the epoch begins, so a resumed
training ends with the weights of one that was never interrupted.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
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

from pipeline.config import ModelSpec, RunnerConfig, TrainConfig
from pipeline.errors import Terminated
from pipeline.io import owned, remove_owned, write_json


def fingerprint(spec: ModelSpec, seed: int, runner: RunnerConfig, data_md5: str) -> str:
    """A short hash of everything that determines the trained weights."""
    key = {"spec": asdict(spec), "seed": seed, "runner": asdict(runner), "data": data_md5}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Checkpoint:
    """The resumable state of one training: Keras backup, epoch history, MLflow run id."""

    def __init__(self, model_dir: Path, key: str, owner: Path | None = None) -> None:
        """State in `model_dir`/`key`; nothing outside `model_dir`, itself strictly inside
        `owner` (default: its parent, e.g. checkpoints/), is ever removed."""
        self.model_dir = model_dir
        self.owner = model_dir.parent if owner is None else owner
        self.dir = model_dir / key
        self.backup = self.dir / "backup"
        self.history = self.dir / "history.csv"
        self._run_id_file = self.dir / "mlflow_run_id"

    def resuming(self) -> bool:
        """True if an earlier training with the same fingerprint stopped after some epochs."""
        return self.backup.is_dir() and any(self.backup.iterdir())

    def start(self) -> None:
        """Prepare the folder; forget other fingerprints' and a finished training's leftovers."""
        owned(self.model_dir, self.owner)  # a name like `..` must not reach past checkpoints/
        if self.model_dir.is_dir():
            for other in self.model_dir.iterdir():
                if other != self.dir:
                    remove_owned(other, self.model_dir)
        if not self.resuming():
            self._remove()
        self.dir.mkdir(parents=True, exist_ok=True)

    def _remove(self) -> None:
        owned(self.model_dir, self.owner)
        if self.dir.exists():
            remove_owned(self.dir, self.model_dir)

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
        self._remove()

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

    A signal raised at any bytecode could stop the Backup callback half-way through writing its
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


class Backup(keras.callbacks.Callback):
    """Keras' BackupAndRestore, but a kill at any instant leaves a backup that loads.

    BackupAndRestore overwrites its weights file and then its metadata in place: a SIGKILL
    while it writes leaves a truncated HDF5 file, or weights of one epoch beside the epoch
    number of the one before. Here each epoch's weights (the model's and the optimiser's,
    hence its step and the schedule) go to their own file, and only then does the metadata,
    replaced atomically, point at them; older files are removed after that.
    """

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.metadata = self.folder / "training_metadata.json"

    def _weights(self, epoch: int) -> Path:
        return self.folder / f"epoch-{epoch}.weights.h5"

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if not self.metadata.is_file():
            return
        epoch = json.loads(self.metadata.read_text())["epoch"]
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(self._weights(epoch))
        self.model._initial_epoch = epoch  # what BackupAndRestore sets for fit to resume

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        done = epoch + 1
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = self.folder / f"partial-{done}.weights.h5"
        self.model.save_weights(partial, overwrite=True)
        os.replace(partial, self._weights(done))
        write_json(self.metadata, {"epoch": done})
        for stale in self.folder.glob("*.weights.h5"):
            if stale != self._weights(done):
                stale.unlink()


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
    epoch_seeds: EpochSeeds | None = None,
) -> list[keras.callbacks.Callback]:
    """The per-epoch bookkeeping around every fit, `callbacks` (tracking) in their place.

    Order matters for a kill between two callbacks: the tracking callbacks see an epoch before
    the history file, and the history file before the backup, so a resumed fit redoes (and
    re-logs) an epoch rather than leaving one missing. `epoch_seeds` comes first, so every
    epoch's randomness is set before anything else sees the epoch.
    """
    return [
        *([epoch_seeds] if epoch_seeds is not None else []),
        EpochTimer(),
        *callbacks,
        keras.callbacks.CSVLogger(str(checkpoint.history), append=True),
        Backup(checkpoint.backup),
        safe_points,
    ]


def epoch_order(size: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the `size` training images in epoch `epoch`: depends only on seed and epoch."""
    return np.random.default_rng([seed, epoch]).permutation(size)


class EpochBatches:
    """(x, y) in batches for `model.fit`: `data` is what fit reads, on either backend.

    Shuffled, epoch k holds every image once in `epoch_order(len(x), seed, k)`; `set_epoch(k)`
    (called by EpochSeeds when epoch k begins) selects it, so a fit resumed at epoch k draws the
    same batches as one that never stopped. Unshuffled, the order is the arrays' own.
    On TensorFlow `data` is a tf.data pipeline that gathers each batch through the order (a
    variable the callback assigns), with tf.data autotuning off: its tuner thread sleeps for up
    to a minute between rounds, and TensorFlow 2.21 waits for it to wake before it closes an
    epoch's iterator, on a 2-core CPU 25-40 s of idle time in a third of the 50-second epochs of
    a convnet; one batch prefetched in the background keeps the model just as busy. On JAX it
    is a keras.utils.PyDataset over the NumPy arrays, so TensorFlow is never imported.
    """

    def __init__(
        self, x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0
    ) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size
        self.shuffle, self.seed = shuffle, seed
        self.order = epoch_order(len(x), seed, 0) if shuffle else np.arange(len(x))
        self._order_variable: Any = None
        if keras.backend.backend() == "tensorflow":
            self.data: Any = self._tf_dataset()
        else:
            self.data = _ArrayBatches(self)

    def __len__(self) -> int:
        return steps_per_epoch(len(self.x), self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Draw epoch `epoch`'s batches next (the order a fresh iterator reads)."""
        if not self.shuffle:
            return
        self.order = epoch_order(len(self.x), self.seed, epoch)
        if self._order_variable is not None:
            self._order_variable.assign(self.order)

    def batch(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch `index` of the current epoch, as NumPy arrays."""
        chosen = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        return self.x[chosen], self.y[chosen]

    def _tf_dataset(self) -> Any:
        import tensorflow as tf

        features, labels = tf.constant(self.x), tf.constant(self.y)
        positions = tf.data.Dataset.range(len(self.x)).batch(self.batch_size)
        if self.shuffle:
            with tf.device("/cpu:0"):
                self._order_variable = tf.Variable(self.order, trainable=False, dtype=tf.int64)
            order = self._order_variable

            def gather(indices: Any) -> tuple[Any, Any]:
                chosen = tf.gather(order, indices)
                return tf.gather(features, chosen), tf.gather(labels, chosen)
        else:

            def gather(indices: Any) -> tuple[Any, Any]:
                return tf.gather(features, indices), tf.gather(labels, indices)

        options = tf.data.Options()
        options.autotune.enabled = False
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA
        )
        return positions.map(gather).prefetch(1).with_options(options)


class _ArrayBatches(keras.utils.PyDataset):
    """EpochBatches as a PyDataset: one batch per index, read in order on the main thread."""

    def __init__(self, source: EpochBatches) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.source.batch(index)


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0) -> Any:
    """What `model.fit` reads: EpochBatches(...).data (epoch 0's order if shuffled)."""
    return EpochBatches(x, y, batch_size, shuffle, seed).data


def seed_generators(model: keras.Model) -> list[keras.random.SeedGenerator]:
    """Every SeedGenerator of `model`'s layers (dropout, augmentation), in layer order."""
    found: dict[int, keras.random.SeedGenerator] = {}
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for generator in getattr(layer, "_seed_generators", ()):
            found.setdefault(id(generator), generator)
    return list(found.values())


def replicate_seed(seed: int, replicate: int) -> int:
    """The seed of seed replicate `replicate`: `seed` itself for 0 (the model's own training,
    so its weights do not change when replicates are added), else one drawn from (seed, k)."""
    if replicate == 0:
        return seed
    # A hash of both, not seed + k: replicate 1 of seed 42 must not be replicate 0 of seed 43.
    return int(np.random.SeedSequence([seed, replicate]).generate_state(1)[0])


def epoch_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of the `index`th SeedGenerator in epoch `epoch`."""
    return int(np.random.default_rng([seed, epoch, index]).integers(1, 2**31 - 1))


class EpochSeeds(keras.callbacks.Callback):
    """Makes everything random in epoch k a function of (seed, k) alone.

    When epoch k begins it selects the training batches' order for k and reseeds every
    SeedGenerator of the model (dropout, augmentation) from (seed, k, its index). Nothing
    random then carries over from earlier epochs, so a fit resumed at epoch k continues exactly.
    """

    def __init__(self, seed: int, sources: Sequence[EpochBatches]) -> None:
        super().__init__()
        self.seed, self.sources = seed, list(sources)

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        for source in self.sources:
            source.set_epoch(epoch)
        for index, generator in enumerate(seed_generators(self.model)):
            state = generator.state
            value = np.array([epoch_seed(self.seed, epoch, index), 0])
            state.assign(keras.ops.convert_to_tensor(value, dtype=state.dtype))


def progress_verbosity() -> int:
    """Keras' progress bar within the epoch on a terminal, one line per epoch otherwise."""
    return 1 if sys.stdout.isatty() else 2


def fit(
    model: keras.Model,
    dataset: Mapping[str, np.ndarray],
    train: TrainConfig,
    checkpoint: Checkpoint,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    seed: int = 0,
) -> pd.DataFrame:
    """Fit for `train.epochs` (resuming if the checkpoint holds some) and return every epoch.

    Epoch k's batch order, dropout and augmentation depend only on `seed` and k.
    """
    safe_points = SafePoints()
    training = EpochBatches(
        dataset["x_train"], dataset["y_train"], train.batch_size, shuffle=True, seed=seed
    )
    validation = EpochBatches(dataset["x_val"], dataset["y_val"], train.batch_size, False)
    with _deferred_signals(safe_points):
        model.fit(
            training.data,
            validation_data=validation.data,
            epochs=train.epochs,
            shuffle=False,  # the order is EpochBatches'; Keras would reshuffle a PyDataset
            verbose=progress_verbosity(),
            callbacks=epoch_callbacks(
                checkpoint, callbacks, safe_points, EpochSeeds(seed, [training])
            ),
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
