"""Frozen pydantic dataclasses mirroring params.yaml, and load_params() that validates them.

Every error is one line naming the dotted key, e.g. `models.cnn.cnn_a.dropout must be in [0, 1),
got 1.5`: pydantic's error location is the key, and `_message` words its error type.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticCustomError

from pipeline.errors import ConfigError
from pipeline.layers import LAYER_TYPES, Dense, Layer, Units
from pipeline.layers import parameter_count as count_layers
from pipeline.paths import PARAMS

__all__ = [
    "ConfigError",
    "load_params",
    "parse_params",
    "parameter_count",
    "Params",
    "ModelSpec",
    "Layer",
    "EnsembleConfig",
    "replicate_name",
]

MODEL_KINDS = ("mlp", "cnn")
# A shell word, a path segment, a DVC stage key, an MLflow run name and a Keras model name.
MODEL_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
ENSEMBLE = "ensemble"  # the report's ensemble row, folder and run name; no model may take it
# Replicate k >= 1 of model <name> is the model named <name>_r<k> in every path, stage and run.
REPLICATE_NAME = re.compile(r"(?P<model>.+)_r(?P<replicate>[1-9][0-9]*)")
MAX_REPLICATES = 10  # trainings per model, the first included: each one costs a full training
MAX_PARAMETERS = 100_000_000  # weights, Adam's two moments and gradients: ~1.6 GB in float32
SHA256 = r"^[0-9a-f]{64}$"

# Scalars are strict (no "10" for 10, no 1 for true); extra keys are errors; NaN and inf are not
# numbers here. The classes themselves must take mappings, hence strict types, not strict=True.
_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


def _fail(tail: str) -> typing.NoReturn:
    """An error whose text follows its key as it is (`.hidden is missing`, `: unknown kind`)."""
    raise PydanticCustomError("config", "{tail}", {"tail": tail})


def _checked(tp: Any, allowed: str, predicate: Callable[[Any], bool]) -> Any:
    """`tp` with a check whose error says all that is allowed (pydantic names one failed bound)."""

    def check(value: Any) -> Any:
        if not predicate(value):
            raise PydanticCustomError("check", "{allowed}", {"allowed": allowed})
        return value

    return Annotated[tp, AfterValidator(check)]


def _exact_bool(value: Any) -> Any:
    # A lax Literal takes 1 for true, and pydantic cannot make a Literal strict.
    if type(value) in (int, float):
        raise PydanticCustomError("check", "must be one of auto | true | false")
    return value


def _replicate_list(value: Any) -> Any:
    # A count is the natural guess, but dvc.yaml's matrix can only expand a list.
    if isinstance(value, int) and not isinstance(value, bool):
        count = value if 1 <= value <= MAX_REPLICATES else 3
        _fail(
            f" must be a list of the replicates beyond the first, not a count "
            f"({list(range(1, count))} for N = {count} trainings per model), got {value!r}"
        )
    return value


Positive = Annotated[StrictInt, Field(gt=0)]
NonNegative = Annotated[StrictInt, Field(ge=0)]
Rate = _checked(StrictFloat, "must be in [0, 1)", lambda v: 0 <= v < 1)
Accuracy = _checked(StrictFloat, "must be in [0, 1]", lambda v: 0 <= v <= 1)
Fraction = _checked(StrictFloat, "must be in (0, 1)", lambda v: 0 < v < 1)
ImageShape = _checked(
    tuple[StrictInt, ...], "must be two positive ints", lambda v: len(v) == 2 and min(v) > 0
)


@dataclass(frozen=True, config=_STRICT)
class DataFile:
    name: StrictStr
    sha256: Annotated[StrictStr, StringConstraints(pattern=SHA256)]


@dataclass(frozen=True, config=_STRICT)
class DataFiles:
    train_images: DataFile
    train_labels: DataFile
    test_images: DataFile
    test_labels: DataFile


@dataclass(frozen=True, config=_STRICT)
class DataConfig:
    mirrors: tuple[StrictStr, ...]
    files: DataFiles
    image_shape: ImageShape
    num_classes: Annotated[StrictInt, Field(ge=2)]
    timeout_seconds: Annotated[StrictFloat, Field(gt=0)]
    retries: Annotated[StrictInt, Field(ge=1)]
    backoff_seconds: Annotated[StrictFloat, Field(ge=0)]
    max_idx_bytes: Annotated[StrictInt, Field(ge=1)]


@dataclass(frozen=True, config=_STRICT)
class PreprocessConfig:
    normalize: Literal["scale", "standardize"]
    validation_fraction: Fraction
    train_limit: NonNegative


@dataclass(frozen=True, config=_STRICT)
class RunnerConfig:
    device: Literal["auto", "cpu", "gpu"]
    mixed_precision: StrictBool
    jit_compile: Annotated[Literal["auto", True, False], BeforeValidator(_exact_bool)]
    strategy: Literal["default", "mirrored", "multi_worker"]
    deterministic: StrictBool
    logical_cpus: NonNegative
    backend: Literal["tensorflow", "jax"] = "tensorflow"

    @model_validator(mode="after")
    def _xla_needs_nondeterminism(self) -> RunnerConfig:
        """Keras on TensorFlow silently compiles without XLA under op determinism; refuse the
        pair instead of recording an XLA run that was none. (JAX is XLA and deterministic.)"""
        if self.jit_compile is True and self.deterministic and self.backend == "tensorflow":
            _fail(
                ".jit_compile: true needs runner.deterministic: false (Keras turns XLA off under "
                "TensorFlow's op determinism); set one of them to false, or jit_compile: auto"
            )
        return self


@dataclass(frozen=True, config=_STRICT)
class TrainConfig:
    epochs: Positive
    batch_size: Positive
    learning_rate: Annotated[StrictFloat, Field(gt=0)]
    optimizer: Literal["adam", "sgd", "rmsprop"]
    lr_schedule: Literal["constant", "cosine"]


@dataclass(frozen=True, config=_STRICT)
class AugmentConfig:
    """Random training-time distortions: one resampling (pipeline.augment), none at inference."""

    rotation: Rate = 0.0  # fraction of a full turn
    shift: Rate = 0.0  # fraction of the image size
    zoom: Rate = 0.0


@dataclass(frozen=True, config=_STRICT)
class ModelSpec:
    name: Annotated[StrictStr, StringConstraints(pattern=f"^{MODEL_NAME.pattern}$")]
    kind: Literal["mlp", "cnn"]
    source: StrictStr
    reported_accuracy: Accuracy
    target_accuracy: Accuracy
    dropout: Rate
    train: TrainConfig
    hidden: tuple[Units, ...] = ()
    layers: tuple[Layer, ...] = ()
    augment: AugmentConfig = AugmentConfig()


@dataclass(frozen=True, config=_STRICT)
class EvaluateConfig:
    batch_size: Annotated[StrictInt, Field(gt=0, le=100_000)]
    grid_size: Annotated[StrictInt, Field(ge=1, le=100)]
    top_confusions: Annotated[StrictInt, Field(ge=1, le=100)]


@dataclass(frozen=True, config=_STRICT)
class TrackingConfig:
    experiment: StrictStr
    registered_model: StrictStr
    log_model: StrictBool
    # MLflow's HTTP client settings (whole seconds, as MLflow reads them), for a tracking server.
    request_timeout_seconds: Annotated[StrictInt, Field(ge=1, le=600)]
    request_retries: Annotated[StrictInt, Field(ge=0, le=10)]
    request_backoff_seconds: Annotated[StrictInt, Field(ge=0, le=60)]


@dataclass(frozen=True, config=_STRICT)
class EnsembleConfig:
    rounds: Annotated[StrictInt, Field(ge=1, le=100)]


@dataclass(frozen=True, config=_STRICT)
class ServingConfig:
    max_images: Annotated[StrictInt, Field(ge=1, le=100_000)]
    max_pixels: Annotated[StrictInt, Field(ge=784, le=1_000_000_000)]


@dataclass(frozen=True, config=_STRICT)
class Params:
    seed: Annotated[StrictInt, Field(ge=0, le=2**32 - 1)]  # what NumPy and TensorFlow accept
    data: DataConfig
    preprocess: PreprocessConfig
    runner: RunnerConfig
    train: TrainConfig
    models: Mapping[str, ModelSpec]
    evaluate: EvaluateConfig
    tracking: TrackingConfig
    ensemble: EnsembleConfig
    serving: ServingConfig
    replicates: Annotated[tuple[StrictInt, ...], BeforeValidator(_replicate_list)]

    def model(self, name: str) -> ModelSpec:
        """The spec of model `name`, or a ConfigError listing the known names."""
        if name not in self.models:
            known = ", ".join(sorted(self.models))
            raise ConfigError(f"models: no model named {name!r} (known: {known})")
        return self.models[name]

    def replicate(self, name: str) -> tuple[ModelSpec, int]:
        """The spec and replicate number of `name`: a model (replicate 0) or `<model>_r<k>`."""
        match = REPLICATE_NAME.fullmatch(name)
        if name in self.models or match is None:
            return self.model(name), 0
        replicate = int(match["replicate"])
        if match["model"] not in self.models or replicate not in self.replicates:
            known = ", ".join(sorted(self.models))
            raise ConfigError(
                f"models: no model or replicate named {name!r} (models: {known}; replicates: "
                f"{list(self.replicates)}, named <model>_r<k>)"
            )
        return self.models[match["model"]], replicate

    def replicate_names(self, model: str) -> list[str]:
        """Every training of `model`: its own name (replicate 0), then `<model>_r<k>`."""
        return [replicate_name(model, k) for k in (0, *self.replicates)]

    @field_validator("replicates")
    @classmethod
    def _consecutive(cls, replicates: tuple[int, ...], info: ValidationInfo) -> tuple[int, ...]:
        """1, 2, ..., N-1: the trainings beyond the first, at most MAX_REPLICATES in all, none
        named like a model."""
        if list(replicates) != list(range(1, len(replicates) + 1)):
            _fail(f" must be [] or [1, 2, ..., N-1] in order, got {list(replicates)}")
        if len(replicates) >= MAX_REPLICATES:
            _fail(
                f" lists {len(replicates)} replicates beyond the first; at most "
                f"{MAX_REPLICATES - 1} (N = {MAX_REPLICATES} trainings per model)"
            )
        models = info.data.get("models") or {}
        for model in models:
            for replicate in replicates:
                if (name := replicate_name(model, replicate)) in models:
                    _fail(
                        f": replicate {replicate} of model {model} would be named {name}, "
                        "the name of another model (rename that model)"
                    )
        return replicates

    @field_validator("models", mode="before")
    @classmethod
    def _entries(cls, raw: Any, info: ValidationInfo) -> Any:
        """models.<kind>.<name> -> {"<kind>.<name>": entry}, so that error locations stay keys."""
        # By hand: the file groups models by kind, Params holds them by name (no pydantic type
        # merges two levels); each entry itself is a ModelSpec that pydantic validates.
        if isinstance(raw, types.MappingProxyType):
            return raw  # Params.models itself, e.g. from dataclasses.replace(params, ...)
        if not isinstance(raw, dict):
            _fail(f" must be a mapping of kind -> models, got {raw!r}")
        defaults = info.data.get("train")
        defaults = dataclasses.asdict(defaults) if defaults else {}
        entries: dict[str, Any] = {}
        kinds: dict[Any, str] = {}
        for kind, named in raw.items():
            if kind not in MODEL_KINDS:
                _fail(f".{_shown(kind)}: unknown model kind {kind!r} (known: mlp, cnn)")
            if named is None:
                continue
            if not isinstance(named, dict):
                _fail(f".{kind} must be a mapping of name -> model, got {named!r}")
            for name, entry in named.items():
                if not (isinstance(name, str) and MODEL_NAME.fullmatch(name)):
                    _fail(
                        f".{kind}.{name!r}: a model name must match {MODEL_NAME.pattern} (a shell "
                        "word, a path segment, a DVC stage key, an MLflow run name)"
                    )
                if name == ENSEMBLE:
                    _fail(f".{kind}.{name}: the name {ENSEMBLE!r} is reserved for the ensemble")
                if name in kinds:
                    _fail(f".{kind}.{name}: duplicate model name (also models.{kinds[name]})")
                kinds[name] = kind
                entries[f"{kind}.{name}"] = _entry(kind, name, entry, defaults)
        if not entries:
            _fail(" is empty: add at least one model under models.mlp or models.cnn")
        return entries

    @field_validator("models")
    @classmethod
    def _by_name(cls, models: Mapping[str, ModelSpec], info: ValidationInfo) -> Any:
        """Each model within MAX_PARAMETERS, then Params.models: a read-only mapping by name."""
        data = info.data.get("data")
        for spec in models.values():
            count = parameter_count(spec, data.image_shape, data.num_classes) if data else 0
            if count > MAX_PARAMETERS:
                _fail(
                    f".{spec.kind}.{spec.name}: {count:,} parameters, more than the "
                    f"{MAX_PARAMETERS:,} allowed"
                )
        return types.MappingProxyType({spec.name: spec for spec in models.values()})


def replicate_name(model: str, replicate: int) -> str:
    """The name of replicate `replicate` of `model`: the model's own for 0, else `<model>_r<k>`."""
    return model if replicate == 0 else f"{model}_r{replicate}"


def _entry(kind: str, name: str, entry: Any, defaults: dict[str, Any]) -> Any:
    """A model's entry with its name, kind and the train defaults its own `train:` overrides."""
    if not isinstance(entry, dict):
        return entry  # pydantic says "must be a mapping"
    key = f".{kind}.{name}"
    structure, other = ("hidden", "layers") if kind == "mlp" else ("layers", "hidden")
    for taken in ("name", "kind"):
        if taken in entry:
            _fail(f"{key}.{taken} is not a known key (it is the entry's own)")
    if other in entry:
        _fail(f"{key}.{other} is not a key of a {kind} model (use {structure})")
    if structure not in entry:
        _fail(f"{key}.{structure} is missing")
    if entry[structure] == []:
        _fail(f"{key}.{structure} must be a non-empty list, got []")
    train = {} if entry.get("train") is None else entry["train"]
    if isinstance(train, dict):
        train = {**defaults, **train}
    return {**entry, "name": name, "kind": kind, "train": train}


def parameter_count(spec: ModelSpec, image_shape: tuple[int, ...], num_classes: int) -> int:
    """Keras' count_params() of `models.build_model(spec, ...)`, computed without building it."""
    layers = spec.layers if spec.kind == "cnn" else tuple(Dense(units) for units in spec.hidden)
    return count_layers(layers, image_shape, num_classes)


# ---------------------------------------------------------------------------- errors

_TEXT = {
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "finite_number": "must be finite",
    "bool_type": "must be a bool",
    "string_type": "must be a str",
    "tuple_type": "must be a list",
    "dataclass_type": "must be a mapping",
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than_equal": "must be <= {le}",
    "literal_error": "must be one of {expected}",
    "string_pattern_mismatch": "must be 64 lowercase hex digits",  # the one pattern: SHA256
}


def _shown(part: Any) -> str:
    """A key from the user's file as it goes into an error: quoted if it would break the line."""
    text = str(part)
    return text if text.isprintable() else repr(text)


def _is_tag(loc: tuple[Any, ...], index: int) -> bool:
    """Whether loc[index] is the layer type pydantic puts after a layer's position."""
    return index >= 2 and loc[index - 2] == "layers" and loc[index] in LAYER_TYPES


def _known_keys(loc: tuple[Any, ...]) -> str:
    """The keys of the section at `loc`, for an unknown key's error ('' if not a section)."""
    node: Any = Params
    for index, part in enumerate(loc):
        if _is_tag(loc, index):
            node = LAYER_TYPES[part]
        elif dataclasses.is_dataclass(node):
            node = typing.get_type_hints(node).get(part)
        else:  # tuple[X, ...] or Mapping[str, X]
            args = typing.get_args(node)
            node = (args[0] if typing.get_origin(node) is tuple else args[-1]) if args else None
    fields = dataclasses.fields(node) if dataclasses.is_dataclass(node) else ()
    return ", ".join(f.name for f in fields)


def _message(error: Any) -> str:
    """One line for pydantic's first error: the dotted key, what is allowed, what was given."""
    loc, kind, ctx, given = error["loc"], error["type"], error.get("ctx", {}), error["input"]
    key = ".".join(_shown(part) for i, part in enumerate(loc) if not _is_tag(loc, i))
    if kind == "config":
        return f"{key}{ctx['tail']}"
    if kind == "missing":
        return f"{key} is missing"
    if kind in ("unexpected_keyword_argument", "invalid_key"):
        known = _known_keys(loc[:-1])
        return f"{key} is not a known key" + (f" (known: {known})" if known else "")
    if kind == "literal_error":  # "'auto', True or False" -> "auto | true | false"
        expected = re.sub(r", | or ", " | ", ctx["expected"].replace("'", ""))
        ctx = {"expected": expected.replace("True", "true").replace("False", "false")}
    ctx = {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in ctx.items()}
    text = _TEXT[kind].format(**ctx) if kind in _TEXT else error["msg"]
    hint = " (write floats with a decimal point: 0.001)" if kind == "float_type" else ""
    return f"{key} {text}, got {given!r}" + (hint if isinstance(given, str) else "")


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
    try:
        return TypeAdapter(Params).validate_python(raw)
    except ValidationError as error:
        raise ConfigError(_message(error.errors(include_url=False)[0])) from None


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
        return {prefix: ", ".join(layer.text() for layer in value)}
    return {prefix: value}
