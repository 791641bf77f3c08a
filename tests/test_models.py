"""Tests of pipeline.models: builders by parameter count and layers, and model loading."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import pytest

from pipeline.config import ModelSpec, Params, load_params, parameter_count
from pipeline.errors import ConfigError, DataError
from pipeline.layers import Conv, Dense, Dropout, Flatten, Layer, Pool
from pipeline.models import build_model, load_model

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
# Counted by hand from params.yaml (weights + biases); cnn_b is the seeds' stated 2,774,410.
PARAMETER_COUNTS = {
    "mlp_c_5x30": 27_580,
    "mlp_d_784": 623_290,
    "mlp_e_128": 101_770,
    "cnn_a_32_64": 34_826,
    "cnn_b_64_dense": 2_774_410,
    "cnn_c_20_40_60": 42_530,
    "cnn_d_32": 592_074,
    "cnn_d_30_15": 59_933,
    # ours: 5 convs and a dense layer with batch norm (2 trainable + 2 moving statistics each)
    "cnn_ours_bn": 270_218,
}


@pytest.fixture(scope="module")
def params() -> Params:
    return load_params()


@pytest.fixture
def mixed_bfloat16() -> Iterator[None]:
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def images(count: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((count, *INPUT_SHAPE), dtype=np.float32)


def with_layers(spec: ModelSpec, *layer_specs: Layer) -> ModelSpec:
    return dataclasses.replace(spec, layers=layer_specs)


def layer_kinds(model: keras.Model) -> list[str]:
    return [type(layer).__name__ for layer in model.layers]


def test_every_params_model_has_an_expected_count(params: Params) -> None:
    assert set(params.models) == set(PARAMETER_COUNTS)


@pytest.mark.parametrize(("name", "count"), PARAMETER_COUNTS.items())
def test_parameter_count_and_output_shape(params: Params, name: str, count: int) -> None:
    model = build_model(params.model(name), INPUT_SHAPE, NUM_CLASSES)
    assert model.count_params() == count
    assert parameter_count(params.model(name), INPUT_SHAPE[:2], NUM_CLASSES) == count  # config's
    assert model.name == name
    assert model.input_shape == (None, *INPUT_SHAPE)
    assert model.output_shape == (None, NUM_CLASSES)
    assert model.compiled is False
    output = model.layers[-1]
    assert output.get_config()["activation"] == "softmax"
    assert output.compute_dtype == "float32"


@pytest.mark.parametrize("name", ["mlp_e_128", "cnn_a_32_64"])
def test_softmax_stays_float32_under_mixed_precision(
    params: Params, name: str, mixed_bfloat16: None
) -> None:
    model = build_model(params.model(name), INPUT_SHAPE, NUM_CLASSES)
    hidden = model.layers[1] if name.startswith("cnn") else model.get_layer("dense_0")
    assert hidden.compute_dtype == "bfloat16"  # the policy did reach the hidden layers
    assert model.output.dtype == "float32"
    probabilities = keras.ops.convert_to_numpy(model(images(3), training=False))
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_policy_is_float32_outside_the_mixed_precision_fixture(params: Params) -> None:
    assert keras.mixed_precision.global_policy().name == "float32"
    model = build_model(params.model("mlp_e_128"), INPUT_SHAPE, NUM_CLASSES)
    assert model.get_layer("dense_0").compute_dtype == "float32"


def test_cnn_layer_sequence_follows_params(params: Params) -> None:
    spec = dataclasses.replace(params.model("cnn_c_20_40_60"), dropout=0.35)
    model = build_model(spec, INPUT_SHAPE, NUM_CLASSES)
    assert layer_kinds(model) == [
        "InputLayer",
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "MaxPooling2D",
        "Dropout",
        "Conv2D",
        "MaxPooling2D",
        "Dropout",
        "Flatten",
        "Dense",
        "Dropout",
        "Dense",
    ]
    counts = Counter(layer_kinds(model))
    kinds = ("Conv2D", "MaxPooling2D", "Dropout", "Dense")
    assert [counts[kind] for kind in kinds] == [3, 3, 3, 2]
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [(c.filters, c.kernel_size) for c in convs] == [
        (20, (5, 5)),
        (40, (3, 3)),
        (60, (2, 2)),
    ]
    assert all(c.get_config()["activation"] == "relu" for c in convs)
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert [p.pool_size for p in pools] == [(2, 2)] * 3
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert [d.rate for d in dropouts] == [0.35] * 3  # every dropout layer uses the model's rate
    assert model.get_layer("dense_9").units == 100


@pytest.mark.parametrize(("dropout", "expected_dropouts"), [(0.0, 0), (0.25, 5)])
def test_mlp_dropout_layers_only_when_dropout_positive(
    params: Params, dropout: float, expected_dropouts: int
) -> None:
    spec = dataclasses.replace(params.model("mlp_c_5x30"), dropout=dropout)
    model = build_model(spec, INPUT_SHAPE, NUM_CLASSES)
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert len(dropouts) == expected_dropouts
    assert all(d.rate == dropout for d in dropouts)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [30, 30, 30, 30, 30, NUM_CLASSES]
    assert model.count_params() == PARAMETER_COUNTS["mlp_c_5x30"]  # dropout adds no weights


@pytest.mark.parametrize(
    ("layer_specs", "expected"),
    [
        (  # 28 -> conv 3 -> 26 -> pool 13 -> 2x2, then a 5x5 window
            (Conv(8, 3), Pool(13), Conv(8, 5)),
            "layers.2: conv window 5 is larger than its 2x2 input",
        ),
        (  # 28 -> pool 9 -> 3x3, then a 4x4 window
            (Pool(9), Pool(4)),
            "layers.1: pool window 4 is larger than its 3x3 input",
        ),
        (  # 28 -> pool 2 -> 14x14, then a 15x15 window (29 is refused by params: MAX_WINDOW)
            (Pool(2), Conv(8, 15)),
            "layers.1: conv window 15 is larger than its 14x14 input",
        ),
        (  # 28 -> conv 3 stride 4 -> 7x7 ((28 - 3) // 4 + 1), then an 8x8 window
            (Conv(8, 3, stride=4), Conv(8, 8)),
            "layers.1: conv window 8 is larger than its 7x7 input",
        ),
        (
            (Conv(8, 3), Flatten(), Conv(8, 3)),
            "layers.2: conv after flatten/dense",
        ),
        (
            (Dense(16), Pool(2)),
            "layers.1: pool after flatten/dense",
        ),
    ],
)
def test_unbuildable_cnn_names_model_and_layer(
    params: Params, layer_specs: tuple[Layer, ...], expected: str
) -> None:
    spec = with_layers(params.model("cnn_a_32_64"), *layer_specs)
    with pytest.raises(ConfigError) as info:
        build_model(spec, INPUT_SHAPE, NUM_CLASSES)  # build time: nothing compiled or fitted yet
    assert str(info.value) == f"models.cnn.cnn_a_32_64.{expected}"


@pytest.mark.parametrize(
    ("layer_specs", "count"),
    [
        ((Conv(4, 28),), 28 * 28 * 4 + 4 + 4 * 10 + 10),  # kernel == map: 1x1
        ((Pool(9), Pool(3)), 1 * 10 + 10),  # window == 3x3 map
        ((Conv(4, 3),), 40 + 26 * 26 * 4 * 10 + 10),  # no flatten written
    ],
)
def test_windows_that_exactly_fit_build(
    params: Params, layer_specs: tuple[Layer, ...], count: int
) -> None:
    spec = with_layers(params.model("cnn_a_32_64"), *layer_specs)
    model = build_model(spec, INPUT_SHAPE, 10)
    assert model.count_params() == count == parameter_count(spec, INPUT_SHAPE[:2], 10)
    assert layer_kinds(model)[-2:] == ["Flatten", "Dense"]


@pytest.mark.parametrize(
    ("padding", "sizes"),
    [("valid", [13, 6, 4]), ("same", [14, 7, 7])],  # valid: (n - 3) // 2 + 1; same: ceil(n / 2)
)
def test_strided_convs_shrink_the_map_as_keras_does(
    params: Params, padding: str, sizes: list[int]
) -> None:
    spec = with_layers(
        params.model("cnn_a_32_64"),
        Conv(8, 3, padding, stride=2),
        Conv(8, 3, padding, stride=2),
        Conv(8, 3, padding),
    )
    model = build_model(spec, INPUT_SHAPE, NUM_CLASSES)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.strides for c in convs] == [(2, 2), (2, 2), (1, 1)]
    assert [c.output.shape[1:3] for c in convs] == [(n, n) for n in sizes]
    assert parameter_count(spec, INPUT_SHAPE[:2], NUM_CLASSES) == model.count_params()


def test_dense_first_cnn_gets_an_implicit_flatten(params: Params) -> None:
    spec = with_layers(params.model("cnn_d_32"), Dense(16), Dropout())
    model = build_model(spec, INPUT_SHAPE, NUM_CLASSES)
    assert layer_kinds(model) == ["InputLayer", "Flatten", "Dense", "Dropout", "Dense"]
    assert model.count_params() == (784 * 16 + 16) + (16 * 10 + 10)
    assert parameter_count(spec, INPUT_SHAPE[:2], NUM_CLASSES) == model.count_params()
    assert model.output_shape == (None, NUM_CLASSES)


def test_load_model_round_trips_predictions(params: Params, tmp_path: Path) -> None:
    model = build_model(params.model("cnn_a_32_64"), INPUT_SHAPE, NUM_CLASSES)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = load_model(path)
    assert loaded.name == "cnn_a_32_64"
    assert layer_kinds(loaded) == layer_kinds(model)
    x = images(8, seed=1)
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    assert expected.std() > 0  # random weights, not a constant output that would match anyway
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x, training=False)), expected)


def test_load_model_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "models" / "cnn_a_32_64.keras"
    with pytest.raises(DataError) as info:
        load_model(path)
    assert str(info.value) == f"{path}: no trained model here; run `dvc repro` to train it"


def test_load_model_corrupt_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.keras"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(DataError) as info:
        load_model(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not a loadable Keras model (")
    assert "\n" not in message
