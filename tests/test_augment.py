"""Tests of pipeline.augment: the composed transform, RandomAffine, and the model to fit."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

from pipeline.augment import RandomAffine, affine_transforms, is_active, with_augmentation
from pipeline.config import AugmentConfig, Params, load_params
from pipeline.models import build_model, load_model

INPUT_SHAPE = (28, 28, 1)


@pytest.fixture(scope="module")
def params() -> Params:
    return load_params()


def transformed(image: np.ndarray, angle: float, scale: float, dx: float, dy: float) -> np.ndarray:
    def one(value: float) -> keras.KerasTensor:
        return ops.convert_to_tensor([value], dtype="float32")

    transforms = affine_transforms(one(angle), one(scale), one(dx), one(dy), *image.shape[1:3])
    out = ops.image.affine_transform(image, transforms, fill_mode="constant", fill_value=0)
    return ops.convert_to_numpy(out)


def impulse(row: int, col: int) -> np.ndarray:
    image = np.zeros((1, *INPUT_SHAPE), dtype=np.float32)
    image[0, row, col, 0] = 1.0
    return image


@pytest.mark.parametrize(
    ("dx", "dy", "where"),
    [(1.0, 0.0, (10, 6)), (0.0, 2.0, (12, 5)), (-3.0, -1.0, (9, 2)), (0.0, 0.0, (10, 5))],
)
def test_whole_pixel_shifts_move_the_image_without_blurring(
    dx: float, dy: float, where: tuple[int, int]
) -> None:
    out = transformed(impulse(10, 5), 0.0, 1.0, dx, dy)[0, :, :, 0]
    expected = np.zeros_like(out)
    expected[where] = 1.0
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_a_quarter_turn_is_clockwise_about_the_centre() -> None:
    pattern = np.random.default_rng(1).random((1, *INPUT_SHAPE), dtype=np.float32)
    out = transformed(pattern, math.pi / 2, 1.0, 0.0, 0.0)[0, :, :, 0]
    np.testing.assert_allclose(out, np.rot90(pattern[0, :, :, 0], k=-1), atol=1e-5)


def test_scale_two_shows_twice_the_area_at_half_size() -> None:
    # Output pixel (x, y) samples input (cx + 2 (x - cx), ...): a 2x2 block at the centre of a
    # 28x28 grid (cx = 13.5) comes from input pixels 12.5 +- 0.5 and 14.5 +- 0.5 around it.
    image = np.zeros((1, *INPUT_SHAPE), dtype=np.float32)
    image[0, 12, 12, 0] = image[0, 15, 15, 0] = 1.0
    out = transformed(image, 0.0, 2.0, 0.0, 0.0)[0, :, :, 0]
    assert out[13, 13] == pytest.approx(0.25, abs=1e-6)  # samples (12.5, 12.5): a quarter of 12,12
    assert out[14, 14] == pytest.approx(0.25, abs=1e-6)
    assert out.sum() == pytest.approx(0.5, abs=1e-5)  # half the ink: the image shrank


def test_random_affine_is_the_identity_at_inference_only() -> None:
    keras.utils.set_random_seed(0)
    layer = RandomAffine(0.03, 0.1, 0.1)
    x = np.random.default_rng(0).random((16, *INPUT_SHAPE), dtype=np.float32)
    np.testing.assert_array_equal(ops.convert_to_numpy(layer(x, training=False)), x)
    first = ops.convert_to_numpy(layer(x, training=True))
    second = ops.convert_to_numpy(layer(x, training=True))
    assert first.shape == x.shape
    assert not np.allclose(first, x)
    assert not np.allclose(first, second)  # a new draw every batch
    # one draw per image: the same image twice in a batch is moved differently
    pair = ops.convert_to_numpy(layer(np.repeat(x[:1], 2, axis=0), training=True))
    assert not np.allclose(pair[0], pair[1])


def test_random_affine_stays_within_its_bounds() -> None:
    # A dot 0.7 px from the centre: shift moves it at most 0.1 x 28 = 2.8 px per axis, rotation
    # (+-10.8 degrees) and zoom (+-10%) well under 0.2 px, and bilinear sampling spreads it over
    # the next pixel: its ink stays within 4 px, and some images move it by 2 px or more.
    keras.utils.set_random_seed(1)
    dot = np.repeat(impulse(14, 14), 64, axis=0)
    out = ops.convert_to_numpy(RandomAffine(0.03, 0.1, 0.1)(dot, training=True))[..., 0]
    _, rows, cols = np.nonzero(out > 1e-3)
    assert np.abs(rows - 14).max() <= 4 and np.abs(cols - 14).max() <= 4
    assert np.abs(rows - 14).max() >= 2 and np.abs(cols - 14).max() >= 2


def test_uncovered_pixels_get_the_background_of_the_normalised_images(params: Params) -> None:
    # Standardised images have a blank pixel of -mean/std, not 0: a shift must not paint a
    # border brighter than the background.
    background = -0.42
    blank = np.full((8, *INPUT_SHAPE), background, dtype=np.float32)
    spec = params.model("cnn_ours_bn")
    trainee = with_augmentation(build_model(spec, INPUT_SHAPE, 10), spec.augment, background)
    assert trainee.layers[0].get_config()["fill_value"] == background
    keras.utils.set_random_seed(2)
    out = ops.convert_to_numpy(trainee.layers[0](blank, training=True))
    np.testing.assert_allclose(out, background, atol=1e-6)
    scaled = ops.convert_to_numpy(RandomAffine(0.0, 0.1, 0.0)(blank, training=True))
    assert (np.isclose(scaled, 0.0)).any()  # the default fill (0) shows on a shifted border


def test_no_augmentation_means_the_model_itself(params: Params) -> None:
    model = build_model(params.model("cnn_a_32_64"), INPUT_SHAPE, 10)
    assert not is_active(AugmentConfig())
    assert with_augmentation(model, AugmentConfig()) is model


def test_the_model_to_fit_shares_the_classifiers_weights(params: Params, tmp_path: Path) -> None:
    spec = params.model("cnn_ours_bn")
    assert is_active(spec.augment)
    keras.utils.set_random_seed(0)
    model = build_model(spec, INPUT_SHAPE, 10)
    trainee = with_augmentation(model, spec.augment)
    assert [type(layer).__name__ for layer in trainee.layers] == ["RandomAffine", "Functional"]
    assert trainee.count_params() == model.count_params()

    before = [w.copy() for w in model.get_weights()]
    trainee.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((32, *INPUT_SHAPE), dtype=np.float32)
    trainee.fit(x, np.arange(32) % 10, batch_size=16, epochs=1, verbose=0)
    changed = [not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True)]
    assert all(changed[:2])  # the first conv's kernel and bias learned through the wrapper

    path = tmp_path / "model.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        config = archive.read("config.json").decode()
    assert "RandomAffine" not in config  # the saved classifier loads without pipeline.augment
    probabilities = ops.convert_to_numpy(load_model(path)(x, training=False))
    np.testing.assert_allclose(probabilities, ops.convert_to_numpy(trainee(x)), atol=1e-6)
