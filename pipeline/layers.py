"""The layer grammar of params.yaml: one class per layer type.

Each class owns all there is to know about its layer: its keys (pydantic validates them, and an
error names the dotted key), its text in MLflow params, its weights and output shape (so a model
is counted without building it), the checks that it fits its input, and its Keras layer. Adding
a layer type is one new class, listed in LAYER_TYPES.

Keras is not imported here: `build` gets `keras.layers` from the builder, so reading params stays
free of the Keras import and its backend choice.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, ClassVar, Literal, NamedTuple

from pydantic import BeforeValidator, ConfigDict, Discriminator, Field, StrictInt, Tag
from pydantic.dataclasses import dataclass

from pipeline.errors import ConfigError

MAX_UNITS = 16_384  # hidden/dense units and conv filters: one such layer fits a 24 GiB machine
MAX_WINDOW = 28  # conv kernel, pool window and stride: at most the MNIST image side
BAD_LAYER = "must be dropout, batchnorm, flatten, {conv: N, kernel: K}, {pool: N} or {dense: N}"

Units = Annotated[StrictInt, Field(gt=0, le=MAX_UNITS)]
Window = Annotated[StrictInt, Field(gt=0, le=MAX_WINDOW)]
# Unknown keys are errors; NaN and inf are not numbers here (the same rules as config.py).
_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


class Shape(NamedTuple):
    """What enters a layer: a height x width x channels map, or `flat` features (1 x 1 x n)."""

    height: int
    width: int
    channels: int
    flat: bool = False

    def flattened(self) -> Shape:
        return Shape(1, 1, self.height * self.width * self.channels, flat=True)


class _Layer:
    """What every layer type answers; the defaults are those of a layer without weights that
    keeps its input's shape."""

    tag: ClassVar[str]

    def text(self) -> str:
        """How the layer reads in MLflow's params (`conv32x3`, `pool2`, `flatten`)."""
        return self.tag

    def output(self, shape: Shape) -> Shape:
        return shape

    def parameters(self, shape: Shape) -> int:
        """Keras' count of this layer's weights on an input of `shape`."""
        return 0

    def check(self, shape: Shape, key: str) -> None:
        """Refuse an input this layer cannot take, naming its dotted `key`."""

    def build(self, nn: Any, x: Any, shape: Shape, index: int, dropout: float) -> Any:
        """This layer applied to `x` (`nn` is keras.layers)."""
        raise NotImplementedError


class _Windowed(_Layer):
    """A layer that slides a window over the map: only before flatten/dense, only if it fits."""

    def window(self) -> int:
        raise NotImplementedError

    def check(self, shape: Shape, key: str) -> None:
        if shape.flat:
            raise ConfigError(f"{key}: {self.tag} after flatten/dense")
        if getattr(self, "padding", "valid") == "valid" and self.window() > min(shape[:2]):
            raise ConfigError(
                f"{key}: {self.tag} window {self.window()} is larger than its "
                f"{shape.height}x{shape.width} input"
            )


@dataclass(frozen=True, config=_STRICT)
class Conv(_Windowed):
    """`{conv: filters, kernel: K}`, relu; `padding: same` and `stride` optional."""

    conv: Units
    kernel: Window
    padding: Literal["valid", "same"] = "valid"
    stride: Window = 1  # 2 halves the output, a learned alternative to pooling
    tag: ClassVar[str] = "conv"

    def window(self) -> int:
        return self.kernel

    def text(self) -> str:
        stride = f"s{self.stride}" if self.stride > 1 else ""
        return f"conv{self.conv}x{self.kernel}{stride}" + (
            "same" if self.padding == "same" else ""
        )

    def output(self, shape: Shape) -> Shape:
        if self.padding == "same":
            height, width = (-(-side // self.stride) for side in shape[:2])
        else:
            height, width = ((side - self.kernel) // self.stride + 1 for side in shape[:2])
        # A window larger than its map (which `check` refuses) counts as 1x1: an upper estimate.
        return Shape(max(height, 1), max(width, 1), self.conv)

    def parameters(self, shape: Shape) -> int:
        return (self.kernel * self.kernel * shape.channels + 1) * self.conv

    def build(self, nn: Any, x: Any, shape: Shape, index: int, dropout: float) -> Any:
        return nn.Conv2D(
            self.conv,
            self.kernel,
            strides=self.stride,
            padding=self.padding,
            activation="relu",
            name=f"conv_{index}",
        )(x)


@dataclass(frozen=True, config=_STRICT)
class Pool(_Windowed):
    """`{pool: N}`: N x N max pooling."""

    pool: Window
    tag: ClassVar[str] = "pool"

    def window(self) -> int:
        return self.pool

    def text(self) -> str:
        return f"pool{self.pool}"

    def output(self, shape: Shape) -> Shape:
        height, width = (max(side // self.pool, 1) for side in shape[:2])
        return Shape(height, width, shape.channels)

    def build(self, nn: Any, x: Any, shape: Shape, index: int, dropout: float) -> Any:
        return nn.MaxPooling2D(self.pool, name=f"pool_{index}")(x)


@dataclass(frozen=True, config=_STRICT)
class Dense(_Layer):
    """`{dense: units}`, relu; flattens the map first if nothing did."""

    dense: Units
    tag: ClassVar[str] = "dense"

    def text(self) -> str:
        return f"dense{self.dense}"

    def output(self, shape: Shape) -> Shape:
        return Shape(1, 1, self.dense, flat=True)

    def parameters(self, shape: Shape) -> int:
        return (shape.flattened().channels + 1) * self.dense

    def build(self, nn: Any, x: Any, shape: Shape, index: int, dropout: float) -> Any:
        if not shape.flat:
            x = nn.Flatten(name=f"flatten_{index}")(x)
        return nn.Dense(self.dense, activation="relu", name=f"dense_{index}")(x)


@dataclass(frozen=True, config=_STRICT)
class Flatten(_Layer):
    """`flatten`: the map as one feature vector."""

    tag: ClassVar[str] = "flatten"

    def output(self, shape: Shape) -> Shape:
        return shape.flattened()

    def build(self, nn: Any, x: Any, shape: Shape, index: int, dropout: float) -> Any:
        return nn.Flatten(name=f"flatten_{index}")(x)


@dataclass(frozen=True, config=_STRICT)
class Dropout(_Layer):
    """`dropout`: at the model's `dropout` rate."""

    tag: ClassVar[str] = "dropout"

    def build(self, nn: Any, x: Any, shape: Shape, index: int, dropout: float) -> Any:
        return nn.Dropout(dropout, name=f"dropout_{index}")(x)


@dataclass(frozen=True, config=_STRICT)
class BatchNorm(_Layer):
    """`batchnorm`: batch normalisation over the channels."""

    tag: ClassVar[str] = "batchnorm"

    def parameters(self, shape: Shape) -> int:
        return 4 * shape.channels  # gamma, beta, moving mean and variance

    def build(self, nn: Any, x: Any, shape: Shape, index: int, dropout: float) -> Any:
        return nn.BatchNormalization(name=f"batchnorm_{index}")(x)


LAYER_TYPES: dict[str, type[_Layer]] = {
    cls.tag: cls for cls in (Conv, Pool, Dense, Flatten, Dropout, BatchNorm)
}
_BARE = tuple(tag for tag, cls in LAYER_TYPES.items() if not dataclasses.fields(cls))


def _tag(raw: Any) -> str | None:
    """Which class reads `raw`: the layer key of a mapping, a bare word, or an instance's tag."""
    if isinstance(raw, dict):
        return next((key for key in raw if key in LAYER_TYPES and key not in _BARE), None)
    return getattr(raw, "tag", None)


def _bare(raw: Any) -> Any:
    """`flatten` -> Flatten(): a word is a layer without keys."""
    return LAYER_TYPES[raw]() if isinstance(raw, str) and raw in _BARE else raw


Layer = Annotated[
    Annotated[Conv, Tag("conv")]
    | Annotated[Pool, Tag("pool")]
    | Annotated[Dense, Tag("dense")]
    | Annotated[Flatten, Tag("flatten")]
    | Annotated[Dropout, Tag("dropout")]
    | Annotated[BatchNorm, Tag("batchnorm")],
    Discriminator(_tag, custom_error_type="bad_layer", custom_error_message=BAD_LAYER),
    BeforeValidator(_bare),
]


def parameter_count(
    layers: tuple[_Layer, ...], image_shape: tuple[int, ...], num_classes: int
) -> int:
    """Keras' count_params() of `layers` on a one-channel image plus the softmax output layer."""
    shape, count = Shape(*image_shape[:2], 1), 0
    for layer in layers:
        count += layer.parameters(shape)
        shape = layer.output(shape)
    return count + (shape.flattened().channels + 1) * num_classes
