"""Frozen dataclasses mirroring params.yaml, and load_params() that validates them.

Every error names the dotted key, e.g. `models.cnn.cnn_a.dropout must be in [0, 1), got 1.5`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pipeline.errors import ConfigError
from pipeline.paths import PARAMS

__all__ = ["ConfigError", "load_params", "parse_params", "Params", "ModelSpec", "LayerSpec"]

MODEL_KINDS = ("mlp", "cnn")


def _check(predicate: Callable[[Any], bool], message: str) -> dict[str, Any]:
    """Field metadata: a range check and the text that says what is allowed."""
    return {"check": (predicate, message)}


POSITIVE = _check(lambda v: v > 0, "must be > 0")
NON_NEGATIVE = _check(lambda v: v >= 0, "must be >= 0")
UNIT_OPEN = _check(lambda v: 0 < v < 1, "must be in (0, 1)")
RATE = _check(lambda v: 0 <= v < 1, "must be in [0, 1)")
ACCURACY = _check(lambda v: 0 <= v <= 1, "must be in [0, 1]")
SHA256 = _check(
    lambda v: len(v) == 64 and all(c in "0123456789abcdef" for c in v),
    "must be 64 lowercase hex digits",
)


@dataclass(frozen=True)
class DataFile:
    name: str
    sha256: str = field(metadata=SHA256)


@dataclass(frozen=True)
class DataFiles:
    train_images: DataFile
    train_labels: DataFile
    test_images: DataFile
    test_labels: DataFile


@dataclass(frozen=True)
class DataConfig:
    mirrors: tuple[str, ...]
    files: DataFiles
    image_shape: tuple[int, ...] = field(
        metadata=_check(lambda v: len(v) == 2 and min(v) > 0, "must be two positive ints")
    )
    num_classes: int = field(metadata=_check(lambda v: v >= 2, "must be >= 2"))
    timeout_seconds: float = field(metadata=POSITIVE)
    retries: int = field(metadata=_check(lambda v: v >= 1, "must be >= 1"))
    backoff_seconds: float = field(metadata=NON_NEGATIVE)


@dataclass(frozen=True)
class PreprocessConfig:
    normalize: Literal["scale", "standardize"]
    validation_fraction: float = field(metadata=UNIT_OPEN)
    train_limit: int = field(metadata=NON_NEGATIVE)


@dataclass(frozen=True)
class RunnerConfig:
    device: Literal["auto", "cpu", "gpu"]
    mixed_precision: bool
    jit_compile: Literal["auto", True, False]
    strategy: Literal["default", "mirrored", "multi_worker"]
    deterministic: bool
    logical_cpus: int = field(metadata=NON_NEGATIVE)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = field(metadata=POSITIVE)
    batch_size: int = field(metadata=POSITIVE)
    learning_rate: float = field(metadata=POSITIVE)
    optimizer: Literal["adam", "sgd", "rmsprop"]
    lr_schedule: Literal["constant", "cosine"]


@dataclass(frozen=True)
class LayerSpec:
    """One CNN layer: conv, pool, dense, dropout, batchnorm or flatten."""

    type: Literal["conv", "pool", "dense", "dropout", "batchnorm", "flatten"]
    size: int = 0  # filters for conv, units for dense, window for pool
    kernel: int = 0
    padding: Literal["valid", "same"] = "valid"
    stride: int = 1  # conv only: 2 halves the output, a learned alternative to pooling


@dataclass(frozen=True)
class AugmentConfig:
    """Random training-time distortions: one resampling (pipeline.augment), none at inference."""

    rotation: float = field(default=0.0, metadata=RATE)  # fraction of a full turn
    shift: float = field(default=0.0, metadata=RATE)  # fraction of the image size
    zoom: float = field(default=0.0, metadata=RATE)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: Literal["mlp", "cnn"]
    source: str
    reported_accuracy: float
    target_accuracy: float
    dropout: float
    train: TrainConfig
    hidden: tuple[int, ...] = ()
    layers: tuple[LayerSpec, ...] = ()
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass(frozen=True)
class EvaluateConfig:
    batch_size: int = field(metadata=POSITIVE)
    grid_size: int = field(metadata=POSITIVE)
    top_confusions: int = field(metadata=POSITIVE)


@dataclass(frozen=True)
class EnsembleConfig:
    rounds: int = field(metadata=_check(lambda v: 1 <= v <= 100, "must be in [1, 100]"))


@dataclass(frozen=True)
class TrackingConfig:
    experiment: str
    registered_model: str
    log_model: bool


@dataclass(frozen=True)
class Params:
    seed: int = field(metadata=NON_NEGATIVE)
    data: DataConfig
    preprocess: PreprocessConfig
    runner: RunnerConfig
    train: TrainConfig
    models: Mapping[str, ModelSpec]
    evaluate: EvaluateConfig
    ensemble: EnsembleConfig
    tracking: TrackingConfig

    def model(self, name: str) -> ModelSpec:
        """The spec of model `name`, or a ConfigError listing the known names."""
        if name not in self.models:
            known = ", ".join(sorted(self.models))
            raise ConfigError(f"models: no model named {name!r} (known: {known})")
        return self.models[name]


# ---------------------------------------------------------------------------- generic checking


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(str(a).lower() if isinstance(a, bool) else str(a) for a in tp.__args__)
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp` and return it in the dataclass's own form."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        # `True == 1` in Python: compare type and value, so `1` is not mistaken for `true`.
        if not any(type(value) is type(c) and value == c for c in choices):
            raise ConfigError(f"{key} must be one of {_type_name(tp)}, got {value!r}")
        return value
    if origin is tuple:
        item_type = typing.get_args(tp)[0]
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return tuple(_coerce(v, item_type, f"{key}.{i}") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            hint = " (write floats with a decimal point: 0.001)" if isinstance(value, str) else ""
            raise ConfigError(f"{key} must be a number, got {value!r}{hint}")
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be finite, got {value!r}")
        return float(value)
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if tp is not int and not isinstance(value, tp):
        raise ConfigError(f"{key} must be a {_type_name(tp)}, got {value!r}")
    return value


def _shown(name: Any) -> str:
    """A key from the user's file as it goes into an error: quoted if it would break the line."""
    text = str(name)
    return text if text.isprintable() else repr(text)


def _build(cls: type, raw: Any, key: str, **given: Any) -> Any:
    """Build dataclass `cls` from mapping `raw`, naming `key` in every error."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{key} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in given}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        dotted = f"{key}.{_shown(unknown[0])}" if key else _shown(unknown[0])
        raise ConfigError(f"{dotted} is not a known key (known: {', '.join(fields)})")
    values = dict(given)
    for name, f in fields.items():
        dotted = f"{key}.{name}" if key else name
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{dotted} is missing")
            continue
        value = _coerce(raw[name], hints[name], dotted)
        if "check" in f.metadata:
            predicate, message = f.metadata["check"]
            if not predicate(value):
                raise ConfigError(f"{dotted} {message}, got {raw[name]!r}")
        values[name] = value
    return cls(**values)


# ---------------------------------------------------------------------------- model entries


def _parse_layer(raw: Any, key: str) -> LayerSpec:
    if raw in ("dropout", "batchnorm", "flatten"):
        return LayerSpec(type=raw)
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(
            f"{key} must be dropout, batchnorm, flatten, {{conv: N, kernel: K}}, {{pool: N}} or "
            f"{{dense: N}}, got {raw!r}"
        )
    layer_type = next((k for k in raw if k in ("conv", "pool", "dense")), next(iter(raw)))
    allowed = {"conv": {"conv", "kernel"}, "pool": {"pool"}, "dense": {"dense"}}.get(layer_type)
    if allowed is None:
        raise ConfigError(
            f"{key} has unknown layer type {layer_type!r} (known: conv, pool, dense)"
        )
    raw = dict(raw)
    padding = raw.pop("padding", "valid") if layer_type == "conv" else "valid"
    if padding not in ("valid", "same"):
        raise ConfigError(f"{key}.padding must be one of valid | same, got {padding!r}")
    optional = {"stride"} if layer_type == "conv" else set()  # padding was taken above
    if not allowed <= set(raw) <= allowed | optional:
        also = " (optional: padding, stride)" if optional else ""
        raise ConfigError(
            f"{key} must have exactly the keys {sorted(allowed)}{also}, got {sorted(raw)}"
        )
    for k, v in raw.items():
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ConfigError(f"{key}.{k} must be a positive integer, got {v!r}")
    return LayerSpec(
        type=layer_type,
        size=raw[layer_type],
        kernel=raw.get("kernel", 0),
        padding=padding,
        stride=raw.get("stride", 1),
    )


def _parse_model(name: str, kind: str, raw: Any, defaults: dict[str, Any]) -> ModelSpec:
    key = f"models.{kind}.{name}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{key} must be a mapping, got {raw!r}")
    raw = dict(raw)
    train_raw = raw.pop("train", None)
    if train_raw is None:
        train_raw = {}
    if not isinstance(train_raw, dict):
        raise ConfigError(f"{key}.train must be a mapping, got {train_raw!r}")
    unknown = sorted(set(train_raw) - set(defaults))
    if unknown:
        raise ConfigError(f"{key}.train.{_shown(unknown[0])} is not a known key")
    train = _build(TrainConfig, {**defaults, **train_raw}, f"{key}.train")
    structure = "hidden" if kind == "mlp" else "layers"
    other = "layers" if kind == "mlp" else "hidden"
    if other in raw:
        raise ConfigError(f"{key}.{other} is not a key of a {kind} model (use {structure})")
    if structure not in raw:
        raise ConfigError(f"{key}.{structure} is missing")
    items = raw.pop(structure)
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{key}.{structure} must be a non-empty list, got {items!r}")
    if kind == "mlp":
        hidden = tuple(_coerce(v, int, f"{key}.hidden.{i}") for i, v in enumerate(items))
        for i, units in enumerate(hidden):
            if units <= 0:
                raise ConfigError(f"{key}.hidden.{i} must be > 0, got {units}")
        spec = _build(ModelSpec, raw, key, name=name, kind=kind, train=train, hidden=hidden)
    else:
        layers = tuple(_parse_layer(v, f"{key}.layers.{i}") for i, v in enumerate(items))
        spec = _build(ModelSpec, raw, key, name=name, kind=kind, train=train, layers=layers)
    for attr, check in (
        ("dropout", RATE),
        ("reported_accuracy", ACCURACY),
        ("target_accuracy", ACCURACY),
    ):
        predicate, message = check["check"]
        if not predicate(getattr(spec, attr)):
            raise ConfigError(f"{key}.{attr} {message}, got {getattr(spec, attr)!r}")
    return spec


def _parse_models(raw: Any, defaults: dict[str, Any]) -> dict[str, ModelSpec]:
    if not isinstance(raw, dict):
        raise ConfigError(f"models must be a mapping of kind -> models, got {raw!r}")
    models: dict[str, ModelSpec] = {}
    for kind, entries in raw.items():
        if kind not in MODEL_KINDS:
            raise ConfigError(
                f"models.{_shown(kind)}: unknown model kind {kind!r} "
                f"(known: {', '.join(MODEL_KINDS)})"
            )
        if entries is None:
            continue
        if not isinstance(entries, dict):
            raise ConfigError(f"models.{kind} must be a mapping of name -> model, got {entries!r}")
        for raw_name, entry in entries.items():
            name = str(raw_name)
            if not name.isprintable():
                raise ConfigError(f"models.{kind}.{name!r}: a model name must be printable")
            if name in models:
                raise ConfigError(
                    f"models.{kind}.{name}: duplicate model name (also models.{models[name].kind})"
                )
            models[name] = _parse_model(name, kind, entry, defaults)
    if not models:
        raise ConfigError("models is empty: add at least one model under models.mlp or models.cnn")
    return models


# ---------------------------------------------------------------------------- loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys instead of silently keeping the last one."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise ConfigError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


def parse_params(raw: Any) -> Params:
    """Validate a params mapping (as read from params.yaml) into Params."""
    if not isinstance(raw, dict):
        raise ConfigError(f"params must be a mapping, got {type(raw).__name__}")
    raw = dict(raw)
    models_raw = raw.pop("models", None)
    if "models" not in raw and models_raw is None:
        raise ConfigError("models is missing")
    if "train" not in raw:
        raise ConfigError("train is missing")
    train_raw = raw["train"]
    train = _coerce(train_raw, TrainConfig, "train")  # validate the defaults on their own first
    models = _parse_models(models_raw, dataclasses.asdict(train))
    return _build(Params, raw, "", models=types.MappingProxyType(models))


def load_params(path: Path = PARAMS) -> Params:
    """Read and validate params.yaml; every fault is a ConfigError naming the file or key."""
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read params ({error.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: cannot read params (not UTF-8 text)") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})".replace("\n", " ")) from None
    return parse_params(raw)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys for a (nested) config, e.g. {'train.epochs': 10}: MLflow params."""
    if dataclasses.is_dataclass(value):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
        return {prefix: ", ".join(_layer_text(v) for v in value)}
    return {prefix: value}


def _layer_text(layer: LayerSpec) -> str:
    if layer.type == "conv":
        stride = f"s{layer.stride}" if layer.stride > 1 else ""
        return f"conv{layer.size}x{layer.kernel}{stride}" + (
            "same" if layer.padding == "same" else ""
        )
    if layer.type in ("pool", "dense"):
        return f"{layer.type}{layer.size}"
    return layer.type
