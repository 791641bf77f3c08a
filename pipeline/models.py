"""Builders keyed by kind ("mlp", "cnn"): a params entry in, an uncompiled keras.Model out."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras
from keras import layers

from pipeline.config import ModelSpec
from pipeline.errors import DataError
from pipeline.layers import Shape


def _output(x: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
    # float32 softmax even under a mixed-precision policy, for numerically stable probabilities.
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(
        x
    )


def build_mlp(spec: ModelSpec, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """Flatten, then Dense(units, relu) per `hidden` entry (with dropout if > 0), then softmax."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Flatten(name="flatten")(inputs)
    for i, units in enumerate(spec.hidden):
        x = layers.Dense(units, activation="relu", name=f"dense_{i}")(x)
        if spec.dropout > 0:
            x = layers.Dropout(spec.dropout, name=f"dropout_{i}")(x)
    return keras.Model(inputs, _output(x, num_classes), name=spec.name)


def build_cnn(spec: ModelSpec, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """The layer list as written (pipeline.layers builds each), then softmax; Flatten added if
    missing. A layer that cannot take its input is a ConfigError naming it."""
    inputs = keras.Input(shape=input_shape, name="image")
    x, shape = inputs, Shape(*input_shape)
    for index, layer in enumerate(spec.layers):
        layer.check(shape, f"models.{spec.kind}.{spec.name}.layers.{index}")
        x = layer.build(layers, x, shape, index, spec.dropout)
        shape = layer.output(shape)
    if not shape.flat:
        x = layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, _output(x, num_classes), name=spec.name)


BUILDERS: dict[str, Callable[[ModelSpec, tuple[int, ...], int], keras.Model]] = {
    "mlp": build_mlp,
    "cnn": build_cnn,
}


def build_model(spec: ModelSpec, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """The uncompiled Functional classifier for `spec` (input `input_shape`, e.g. (28, 28, 1)).

    Augmentation is not part of it: see `augment.with_augmentation` for the model to fit.
    """
    return BUILDERS[spec.kind](spec, input_shape, num_classes)


def load_model(path: Path) -> keras.Model:
    """Load a trained model with Keras' safe mode (no arbitrary code from the file)."""
    if not path.is_file():
        raise DataError(f"{path}: no trained model here; run `dvc repro` to train it")
    try:
        return keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as error:  # noqa: BLE001 - Keras raises many types for a corrupt file
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"{path}: not a loadable Keras model ({reason[:300]})") from None


# A zip entry's fixed date (the earliest a zip can hold) and permissions in a saved model.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_ZIP_MODE = 0o644 << 16


def save_model(model: keras.Model, path: Path) -> None:
    """Save `model` as a .keras file whose bytes depend on its config and weights only.

    Keras stamps the save time into metadata.json and the weights entry's zip date, and
    numbers shared objects in config.json by their memory address, so two trainings of
    identical weights gave different files (and DVC hashes). The archive is rewritten with those
    fixed (shared objects numbered in order of appearance); `path` is a temporary path
    (io.write_with makes it atomic).
    """
    import json
    import zipfile

    model.save(path)
    with zipfile.ZipFile(path) as saved:
        entries = [(info, saved.read(info)) for info in saved.infolist()]
    with zipfile.ZipFile(path, "w") as fixed:
        for info, data in entries:
            if info.filename == "metadata.json":
                metadata = json.loads(data)
                metadata.pop("date_saved", None)
                data = json.dumps(metadata, sort_keys=True).encode()
            elif info.filename == "config.json":
                data = json.dumps(_renumber_shared(json.loads(data), {})).encode()
            entry = zipfile.ZipInfo(info.filename, date_time=_ZIP_EPOCH)
            entry.compress_type = info.compress_type
            entry.external_attr = _ZIP_MODE
            fixed.writestr(entry, data)


def _renumber_shared(node: object, numbers: dict[int, int]) -> object:
    """`node` (a Keras config) with each `shared_object_id` replaced by 1, 2, ... in order."""
    if isinstance(node, dict):
        renumbered = {}
        for key, value in node.items():
            if key == "shared_object_id" and isinstance(value, int):
                renumbered[key] = numbers.setdefault(value, len(numbers) + 1)
            else:
                renumbered[key] = _renumber_shared(value, numbers)
        return renumbered
    if isinstance(node, list):
        return [_renumber_shared(value, numbers) for value in node]
    return node
