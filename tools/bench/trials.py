"""Models and data of the sections that train (1, 2 and 6): pick, subset, build, time an epoch."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline import data
from pipeline.config import ModelSpec, Params
from tools.bench.measure import BenchError, timed

if TYPE_CHECKING:  # TensorFlow, Keras and MLflow are imported only where they are used
    import keras
    import tensorflow as tf

    from pipeline.runner import Runtime


PREFERRED_MODEL = "cnn_a_32_64"  # the small CNN of sections 1 and 6; else the smallest CNN
REPEATS = 3  # medians of sections 2 and 6

WARMUP_BATCHES = 5
PROBE_BATCHES = 10


def pick_model(params: Params, preferred: str = PREFERRED_MODEL) -> str:
    """`preferred` if params has it, else the CNN with the fewest parameters."""
    if preferred in params.models:
        return preferred
    from pipeline.models import build_model

    sizes = {
        name: build_model(
            spec, (*params.data.image_shape, 1), params.data.num_classes
        ).count_params()
        for name, spec in params.models.items()
        if spec.kind == "cnn"
    }
    if not sizes:
        raise BenchError(f"no CNN in params.models to benchmark (and no {preferred})")
    return min(sizes, key=sizes.__getitem__)


def subset(
    dataset: Mapping[str, Any], train_images: int, val_images: int, seed: int
) -> dict[str, np.ndarray]:
    """A stratified subset of the training and validation splits (0 keeps a whole split), with
    the normalisation statistics."""
    train = data.stratified_subset(dataset["y_train"], train_images, seed)
    val = data.stratified_subset(dataset["y_val"], val_images, seed)
    return {
        "x_train": dataset["x_train"][train],
        "y_train": dataset["y_train"][train],
        "x_val": dataset["x_val"][val],
        "y_val": dataset["y_val"][val],
        "mean": dataset["mean"],
        "std": dataset["std"],
    }


def fresh_model(
    params: Params,
    spec: ModelSpec,
    dataset: Mapping[str, Any],
    runtime: Runtime,
    batch_size: int | None = None,
    policy: str | None = None,
    jit_compile: bool | None = None,
) -> tuple[keras.Model, keras.Model]:
    """Seed, then the train stage's own (model, compiled trainee) for `dataset` (its training
    size sets the schedule); `batch_size`, `policy` and `jit_compile` change only this model."""
    import keras

    from pipeline.stages.train import build_trainee

    if batch_size is not None:
        spec = dataclasses.replace(
            spec, train=dataclasses.replace(spec.train, batch_size=batch_size)
        )
    if jit_compile is not None:
        runtime = dataclasses.replace(runtime, jit_compile=jit_compile)
    keras.utils.set_random_seed(params.seed)
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy or previous)
    try:
        return build_trainee(params, spec, dataset, runtime)
    finally:
        keras.mixed_precision.set_global_policy(previous)


class EpochTrial:
    """A compiled model on fixed data: warm up once, then time epochs that replay one epoch.

    Before every timed epoch the model's variables (weights, batch-norm statistics, dropout and
    augmentation seeds), the optimizer state and the global seeds are restored, so with op
    determinism each repeat is the same "epoch 1 from the same initial weights": the validation
    accuracy is evaluated once, after the first, and comparable across settings.
    """

    def __init__(
        self,
        model: keras.Model,
        x: np.ndarray,
        y: np.ndarray,
        batch_size: int,
        seed: int,
        validation: tuple[np.ndarray, np.ndarray] | None = None,
        eval_batch_size: int = 1000,
    ) -> None:
        self.model, self.x, self.y, self.batch_size, self.seed = model, x, y, batch_size, seed
        self.validation, self.eval_batch_size = validation, eval_batch_size
        self.val_accuracy: float | None = None
        model.optimizer.build(model.trainable_variables)
        self._state = [v.numpy() for v in (*model.variables, *model.optimizer.variables)]

    def restore(self) -> None:
        """Back to the state the model was compiled with, global seeds included."""
        import keras

        variables = (*self.model.variables, *self.model.optimizer.variables)
        for variable, value in zip(variables, self._state, strict=True):
            variable.assign(value)
        keras.utils.set_random_seed(self.seed)

    def warm_up(self, batches: int = WARMUP_BATCHES) -> None:
        """Trace (and for XLA compile) the train function on a few batches."""
        self.model.fit(self._batches(batches * self.batch_size), shuffle=False, verbose=0)

    def probe(self, batches: int = PROBE_BATCHES) -> float:
        """Images per second over a few batches (after warm_up); fit overhead makes it low."""
        count = batches * self.batch_size
        sample = self._batches(count)
        with timed() as took:
            self.model.fit(sample, shuffle=False, verbose=0)
        return count / took["wall_s"]

    def _batches(self, images: int) -> tf.data.Dataset:
        """The first `images` images in batches, shuffled, as the train stage feeds them."""
        from pipeline import training

        return training.batches(self.x[:images], self.y[:images], self.batch_size, shuffle=True)

    def use(self, images: int) -> None:
        """Time epochs over the first `images` images from now on."""
        self.x, self.y = self.x[:images], self.y[:images]

    def epoch(self) -> dict[str, float]:
        """Wall and CPU seconds and final loss of one epoch; validation accuracy (not timed)."""
        epoch = self._batches(len(self.y))
        self.restore()
        with timed() as figures:
            history = self.model.fit(epoch, shuffle=False, verbose=0)
        figures["train_loss"] = float(history.history["loss"][-1])
        if self.validation is not None:
            if self.val_accuracy is None:  # the repeats replay this epoch
                x_val, y_val = self.validation
                scores = self.model.evaluate(
                    x_val, y_val, batch_size=self.eval_batch_size, verbose=0, return_dict=True
                )
                self.val_accuracy = float(scores["accuracy"])
            figures["val_accuracy"] = self.val_accuracy
        return figures


def clear_keras() -> None:
    """Free the models and graphs of the previous measurement."""
    import keras

    keras.backend.clear_session()
