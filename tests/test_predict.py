"""Tests of pipeline.imaging and pipeline.predict: drawn digits, bad files, real MNIST, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFile

from pipeline import imaging, paths, predict
from pipeline.data import decompress, parse_idx
from pipeline.errors import DataError
from pipeline.imaging import read_image, to_mnist
from tests.support import REPO_ROOT, pipeline_env

# A "7": a top bar and a slanted stem, in a 60x90 box whose top-left corner is the origin.
SEVEN = [(0, 0), (60, 0), (20, 90)]
STROKE = 12


def draw_seven(
    size: tuple[int, int] = (120, 160),
    at: tuple[int, int] = (30, 35),
    paper: int | tuple[int, ...] = 255,
    ink: int | tuple[int, ...] = 0,
    mode: str = "L",
) -> Image.Image:
    """A thick 7 (no anti-aliasing, so its two colours stay exact) with its box at `at`."""
    image = Image.new(mode, size, paper)
    points = [(x + at[0], y + at[1]) for x, y in SEVEN]
    ImageDraw.Draw(image).line(points, fill=ink, width=STROKE, joint="curve")
    return image


def saved(image: Image.Image, path: Path, **options: object) -> Path:
    image.save(path, **options)
    return path


def centre_of_mass(digit: np.ndarray) -> tuple[float, float]:
    rows, cols = np.indices(digit.shape)
    return float((rows * digit).sum() / digit.sum()), float((cols * digit).sum() / digit.sum())


def ink_box(digit: np.ndarray) -> tuple[int, int]:
    rows, cols = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


@pytest.fixture
def reference(tmp_path: Path) -> np.ndarray:
    """The dark-on-light 7 as MNIST: what every other rendering of it should become."""
    return to_mnist(read_image(saved(draw_seven(), tmp_path / "reference.png")))


# ---------------------------------------------------------------------------- to_mnist


def test_reference_looks_like_mnist(reference: np.ndarray) -> None:
    assert reference.shape == (28, 28) and reference.dtype == np.float32
    assert reference.min() == 0.0 and reference.max() == pytest.approx(1.0)
    # Ink on paper: the corners are paper, and most of the field is paper as in MNIST.
    assert reference[[0, 0, -1, -1], [0, -1, 0, -1]].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert 0.05 < (reference > 0.5).mean() < 0.4


def test_light_on_dark_gives_the_same_digit(tmp_path: Path, reference: np.ndarray) -> None:
    light = saved(draw_seven(paper=0, ink=255), tmp_path / "light.png")
    np.testing.assert_allclose(to_mnist(read_image(light)), reference, atol=1e-6)


def test_off_centre_digit_in_a_large_canvas_ends_centred(
    tmp_path: Path, reference: np.ndarray
) -> None:
    corner = saved(draw_seven(size=(300, 200), at=(220, 95)), tmp_path / "corner.png")
    digit = to_mnist(read_image(corner))
    row, col = centre_of_mass(digit)
    assert abs(row - 14) <= 1 and abs(col - 14) <= 1
    height, width = ink_box(digit)
    assert height <= 20 and width <= 20 and max(height, width) >= 19
    np.testing.assert_allclose(digit, reference, atol=1e-6)  # only the position differed


def test_small_digit_is_scaled_up_to_the_box(tmp_path: Path) -> None:
    image = Image.new("L", (57, 23), 255)
    ImageDraw.Draw(image).line([(40, 3), (40, 12)], fill=0, width=2)  # a tiny "1"
    digit = to_mnist(read_image(saved(image, tmp_path / "odd.png")))
    assert digit.shape == (28, 28)
    assert ink_box(digit)[0] == 20
    row, col = centre_of_mass(digit)
    assert abs(row - 14) <= 1 and abs(col - 14) <= 1


@pytest.mark.parametrize(
    ("name", "image"),
    [
        ("rgb.png", draw_seven(mode="RGB", paper=(250, 240, 200), ink=(20, 20, 160))),
        # Transparent paper whose hidden colour is black: it must show as white, not as ink.
        ("rgba.png", draw_seven(mode="RGBA", paper=(0, 0, 0, 0), ink=(0, 0, 0, 255))),
        ("palette.png", draw_seven().convert("P")),
        ("odd-size.png", draw_seven(size=(57 * 3, 23 * 9), at=(7, 11))),
        # Grey ink on grey paper: 16-bit samples clipped to 8 bits would both read as white.
        (
            "gray16.png",
            Image.fromarray(np.asarray(draw_seven(paper=200, ink=60), np.uint16) * 257),
        ),
    ],
)
def test_colour_modes_and_sizes_give_the_same_digit(
    tmp_path: Path, reference: np.ndarray, name: str, image: Image.Image
) -> None:
    gray = read_image(saved(image, tmp_path / name))
    assert gray.dtype == np.float32 and gray.shape == image.size[::-1]
    assert gray.min() >= 0.0 and gray.max() <= 1.0
    np.testing.assert_allclose(to_mnist(gray), reference, atol=1e-5)


def test_palette_with_a_transparent_index_shows_white_paper(
    tmp_path: Path, reference: np.ndarray
) -> None:
    image = draw_seven(mode="P", paper=0, ink=1)
    image.putpalette([0, 0, 0, 0, 0, 0])  # both indices black; index 0 is see-through
    path = saved(image, tmp_path / "transparent.png", transparency=0)
    np.testing.assert_allclose(to_mnist(read_image(path)), reference, atol=1e-5)


def test_exif_orientation_is_applied(tmp_path: Path, reference: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: stored a quarter turn anticlockwise, shown turned back
    stored = draw_seven().transpose(Image.Transpose.ROTATE_90)
    path = saved(stored, tmp_path / "phone.png", exif=exif.tobytes())
    np.testing.assert_allclose(to_mnist(read_image(path)), reference, atol=1e-6)


def test_faint_smudges_are_not_ink(tmp_path: Path, reference: np.ndarray) -> None:
    image = draw_seven()
    ImageDraw.Draw(image).rectangle([(100, 140), (110, 150)], fill=250)  # 2% as dark as the ink
    digit = to_mnist(read_image(saved(image, tmp_path / "smudged.png")))
    np.testing.assert_allclose(digit, reference, atol=1e-6)


def test_jpeg_is_close_to_the_png(tmp_path: Path, reference: np.ndarray) -> None:
    jpeg = saved(draw_seven().convert("RGB"), tmp_path / "seven.jpg", quality=85)
    digit = to_mnist(read_image(jpeg))
    assert np.abs(digit - reference).mean() < 0.03
    row, col = centre_of_mass(digit)
    assert abs(row - 14) <= 1 and abs(col - 14) <= 1


@pytest.mark.parametrize(
    ("name", "pixels"),
    [
        ("white.png", np.full((80, 60), 255)),
        ("black.png", np.zeros((80, 60))),
        ("gray.png", np.full((80, 60), 128)),
        ("paper-grain.png", 250 + np.random.default_rng(0).integers(-5, 6, (80, 60))),
    ],
)
def test_blank_image_is_refused(tmp_path: Path, name: str, pixels: np.ndarray) -> None:
    path = saved(Image.fromarray(pixels.astype(np.uint8)), tmp_path / name)
    with pytest.raises(DataError, match=rf"^{path}: no digit found \(the image is blank\)$"):
        to_mnist(read_image(path), source=path)


def test_to_mnist_rejects_an_array_that_is_not_2d() -> None:
    with pytest.raises(ValueError, match="2-D"):
        to_mnist(np.zeros((28, 28, 3)))


# ---------------------------------------------------------------------------- bad files


def noisy_png(path: Path, size: tuple[int, int] = (200, 200)) -> Path:
    """A PNG that does not compress to almost nothing, so cutting it cuts image data."""
    pixels = np.random.default_rng(1).integers(0, 256, size[::-1], dtype=np.uint8)
    return saved(Image.fromarray(pixels), path)


def make_missing(tmp_path: Path) -> Path:
    return tmp_path / "missing.png"


def make_empty(tmp_path: Path) -> Path:
    (tmp_path / "empty.png").write_bytes(b"")
    return tmp_path / "empty.png"


def make_text(tmp_path: Path) -> Path:
    (tmp_path / "notes.png").write_text("this is a note, not a picture\n")
    return tmp_path / "notes.png"


def make_truncated(tmp_path: Path) -> Path:
    data = noisy_png(tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    return tmp_path / "cut.png"


def make_folder(tmp_path: Path) -> Path:
    (tmp_path / "folder.png").mkdir()
    return tmp_path / "folder.png"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (make_missing, "no such file"),
        (make_empty, "empty file"),
        (make_text, "not an image"),
        (make_truncated, "unreadable image"),
        (make_folder, "not a file"),
    ],
)
def test_bad_file_is_a_one_line_data_error_naming_it(tmp_path: Path, make, reason: str) -> None:
    path = make(tmp_path)
    with pytest.raises(DataError) as caught:
        read_image(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and reason in message
    assert "\n" not in message


def test_too_many_pixels_is_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = noisy_png(tmp_path / "big.png", size=(30, 20))
    monkeypatch.setattr(imaging, "MAX_PIXELS", 599)

    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise RuntimeError("the pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(DataError, match=rf"^{path}: 30x20 pixels is more than the 599 pixel"):
        read_image(path)


def test_too_many_bytes_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = noisy_png(tmp_path / "heavy.png", size=(30, 20))
    monkeypatch.setattr(imaging, "MAX_BYTES", path.stat().st_size - 1)
    with pytest.raises(DataError, match=rf"^{path}: [\d,]+ bytes is larger than"):
        read_image(path)


def test_decompression_bomb_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = noisy_png(tmp_path / "bomb.png", size=(30, 30))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL refuses above twice this
    with pytest.raises(DataError, match=rf"^{path}: refused as a decompression bomb"):
        read_image(path)


# ---------------------------------------------------------------------------- predict (no Keras)


class FixedModel:
    """Stands in for a Keras model: records its input, answers with set probabilities."""

    def __init__(self, probabilities: np.ndarray) -> None:
        self.probabilities = probabilities
        self.seen: np.ndarray | None = None

    def predict(self, batch: np.ndarray, **options: object) -> np.ndarray:
        self.seen = batch
        return self.probabilities[: len(batch)]


def test_classify_normalises_like_training_and_reads_the_argmax() -> None:
    images = np.random.default_rng(2).random((2, 28, 28), dtype=np.float32)
    probabilities = np.full((2, 10), 0.01, dtype=np.float32)
    probabilities[0, 7], probabilities[1, 3] = 0.91, 0.91
    model = FixedModel(probabilities)
    results = predict.classify(model, ["a.png", "b.png"], images, mean=0.25, std=0.5)
    assert model.seen is not None and model.seen.dtype == np.float32
    assert model.seen.shape == (2, 28, 28, 1)
    np.testing.assert_allclose(model.seen[..., 0], (images - 0.25) / 0.5, rtol=1e-6)
    assert [(r["file"], r["digit"]) for r in results] == [("a.png", 7), ("b.png", 3)]
    assert results[0]["probability"] == pytest.approx(0.91)
    assert results[1]["probabilities"] == pytest.approx(probabilities[1].tolist())


def test_predict_files_raises_for_an_unreadable_file(tmp_path: Path) -> None:
    good = saved(draw_seven(), tmp_path / "good.png")
    model = FixedModel(np.eye(10, dtype=np.float32))
    with pytest.raises(DataError, match="missing.png: no such file"):
        predict.predict_files(model, [good, tmp_path / "missing.png"], 0.0, 1.0)


def test_normalization_reads_only_the_scalars(tmp_path: Path) -> None:
    path = tmp_path / "dataset.npz"
    # A pickled member cannot be read with allow_pickle=False: reading it would fail the test.
    np.savez(
        path,
        mean=np.float64(0.13),
        std=np.float64(0.31),
        normalize=np.str_("standardize"),
        x_train=np.array([{"not": "readable"}], dtype=object),
    )
    assert predict.normalization(path) == (pytest.approx(0.13), pytest.approx(0.31))


@pytest.mark.parametrize(
    ("contents", "reason"),
    [
        (None, "missing; run `dvc repro preprocess`"),
        ({"mean": 0.0}, "lacks std"),
        ({"mean": 0.0, "std": 0.0}, "unusable normalisation"),
        (b"not a zip archive", "not a readable data set"),
    ],
)
def test_normalization_errors_name_the_data_set(tmp_path: Path, contents, reason: str) -> None:
    path = tmp_path / "dataset.npz"
    if isinstance(contents, dict):
        np.savez(path, **contents)
    elif isinstance(contents, bytes):
        path.write_bytes(contents)
    with pytest.raises(DataError) as caught:
        predict.normalization(path)
    assert str(caught.value).startswith(f"{path}: ") and reason in str(caught.value)


@pytest.mark.parametrize(
    ("summary", "reason"),
    [
        (None, "missing; run `dvc repro` first"),
        ('{"champion": null}', "names no champion"),
        ("{not json", "not readable JSON"),
    ],
)
def test_champion_errors_say_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, summary: str | None, reason: str
) -> None:
    monkeypatch.setattr(paths, "REPORTS_DIR", tmp_path)
    if summary is not None:
        (tmp_path / "summary.json").write_text(summary)
    with pytest.raises(DataError, match=reason):
        predict.champion_name()


def test_champion_name_comes_from_the_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(paths, "REPORTS_DIR", tmp_path)
    (tmp_path / "summary.json").write_text('{"champion": "cnn_a_32_64", "models": []}')
    assert predict.champion_name() == "cnn_a_32_64"


def test_help_is_quick_because_keras_is_not_imported() -> None:
    code = (
        "import sys, pipeline.predict; print('keras' in sys.modules, 'tensorflow' in sys.modules)"
    )
    env = pipeline_env()
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.split() == ["False", "False"], done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.predict", "--help"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "--champion" in done.stdout


# ---------------------------------------------------------------------------- real MNIST


def read_idx(mirror: Path, name: str, count: int) -> np.ndarray:
    path = mirror / name
    return parse_idx(decompress(path.read_bytes(), path), path)[:count]


@pytest.fixture(scope="module")
def mnist(mirror: Path) -> dict[str, np.ndarray]:
    """5,000 real training images and 200 real test images, uint8, with labels."""
    return {
        "x_train": read_idx(mirror, "train-images-idx3-ubyte.gz", 5000),
        "y_train": read_idx(mirror, "train-labels-idx1-ubyte.gz", 5000),
        "x_test": read_idx(mirror, "t10k-images-idx3-ubyte.gz", 200),
        "y_test": read_idx(mirror, "t10k-labels-idx1-ubyte.gz", 200),
    }


@pytest.fixture(scope="module")
def small_model(mnist: dict[str, np.ndarray]):
    """A small CNN trained for two epochs on x/255 (the `scale` normalisation: mean 0, std 1)."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(28, 28, 1), name="image")
    x = keras.layers.Conv2D(16, 3, activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inputs, outputs, name="small_cnn")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(
        mnist["x_train"][..., None] / 255, mnist["y_train"], epochs=2, batch_size=64, verbose=0
    )
    return model


@pytest.fixture(scope="module")
def inverted_pngs(mnist: dict[str, np.ndarray], tmp_path_factory) -> list[Path]:
    """The 200 test digits as PNG files, dark ink on white paper (255 - pixel)."""
    folder = tmp_path_factory.mktemp("inverted")
    return [
        saved(Image.fromarray(255 - pixels), folder / f"test-{i:03d}-label-{label}.png")
        for i, (pixels, label) in enumerate(zip(mnist["x_test"], mnist["y_test"], strict=True))
    ]


def test_inverted_pngs_come_back_as_the_original_digits(
    mnist: dict[str, np.ndarray], inverted_pngs: list[Path]
) -> None:
    names, images, errors = predict.load_images(inverted_pngs)
    assert errors == [] and len(names) == 200
    original = mnist["x_test"] / 255
    difference = np.abs(images - original).mean(axis=(1, 2))
    assert np.median(difference) < 0.002
    # MNIST's centre of mass is rarely a whole pixel, so rounding it may move a digit by one.
    shifted = [
        np.abs(np.roll(images, (dy, dx), axis=(1, 2)) - original).mean(axis=(1, 2))
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    ]
    assert np.min(shifted, axis=0).max() < 0.01


def test_predictions_on_inverted_pngs_agree_with_the_arrays(
    mnist: dict[str, np.ndarray], small_model, inverted_pngs: list[Path]
) -> None:
    direct = small_model.predict(mnist["x_test"][..., None] / 255, verbose=0).argmax(axis=1)
    # A model that has learnt nothing would agree with itself trivially.
    assert (direct == mnist["y_test"]).mean() >= 0.8  # about 93% here
    results = predict.predict_files(small_model, inverted_pngs, 0.0, 1.0)
    from_files = np.array([result["digit"] for result in results])
    agreement = (from_files == direct).mean()
    print(f"agreement on {len(results)} inverted PNGs: {agreement:.1%}")
    assert agreement >= 0.99


# ---------------------------------------------------------------------------- the CLI


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_model) -> dict[str, Path]:
    """A models/, data set and reports/summary.json in tmp_path, as the CLI expects them."""
    models = tmp_path / "models"
    models.mkdir()
    small_model.save(models / "small_cnn.keras")
    np.savez(tmp_path / "dataset.npz", mean=np.float64(0.0), std=np.float64(1.0))
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "summary.json").write_text(json.dumps({"champion": "small_cnn"}))
    monkeypatch.setattr(paths, "model_file", lambda name: models / f"{name}.keras")
    monkeypatch.setattr(paths, "DATASET", tmp_path / "dataset.npz")
    monkeypatch.setattr(paths, "REPORTS_DIR", reports)
    return {"models": models, "reports": reports}


def expected_digits(small_model, mnist: dict[str, np.ndarray], count: int) -> list[int]:
    return small_model.predict(mnist["x_test"][:count, ..., None] / 255, verbose=0).argmax(1)


def test_cli_prints_one_line_per_file_with_the_champion(
    installed, small_model, mnist, inverted_pngs: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert predict.main([str(path) for path in inverted_pngs[:3]]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert err == "" and len(lines) == 3
    for line, path, digit in zip(
        lines, inverted_pngs, expected_digits(small_model, mnist, 3), strict=False
    ):
        assert line.startswith(f"{path}: {digit} (") and line.endswith("%)")


def test_cli_json_lists_every_probability(
    installed, small_model, mnist, inverted_pngs: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    files = [str(path) for path in inverted_pngs[:2]]
    assert predict.main([*files, "--model", "small_cnn", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [result["file"] for result in results] == files
    assert [result["digit"] for result in results] == list(expected_digits(small_model, mnist, 2))
    for result in results:
        assert len(result["probabilities"]) == 10
        assert sum(result["probabilities"]) == pytest.approx(1.0, abs=1e-4)
        assert result["probability"] == max(result["probabilities"])


def test_cli_reports_a_bad_file_and_still_predicts_the_good_one(
    installed, inverted_pngs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image\n")
    assert predict.main([str(inverted_pngs[0]), str(notes)]) == 1
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1 and out.startswith(f"{inverted_pngs[0]}: ")
    assert err.splitlines() == [f"error: {notes}: not an image (no format PIL can read)"]


def test_cli_missing_model_is_one_line_and_exit_1(
    installed, inverted_pngs: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert predict.main([str(inverted_pngs[0]), "--model", "nonexistent"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: ") and "nonexistent.keras: no trained model here" in err
    assert len(err.splitlines()) == 1


def test_cli_refuses_model_and_champion_together(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        predict.main(["digit.png", "--model", "x", "--champion"])
    assert caught.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_cli_reports_a_nan_image_and_still_predicts_the_good_one(
    installed, inverted_pngs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pixels = np.zeros((28, 28), dtype=np.float32)
    pixels[5:20, 12:16] = 1.0
    pixels[0, 0] = np.nan
    nan_image = saved(Image.fromarray(pixels), tmp_path / "nan.tiff")
    assert predict.main([str(nan_image), str(inverted_pngs[0])]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[0].startswith(f"{inverted_pngs[0]}: ") and len(out.splitlines()) == 1
    assert err.splitlines() == [
        f"error: {nan_image}: pixel values that are not finite numbers (NaN or inf)"
    ]


def test_any_fault_while_centring_one_image_is_its_own_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = saved(draw_seven(), tmp_path / "good.png")
    odd = saved(draw_seven(size=(100, 100)), tmp_path / "odd.png")
    real_to_mnist = predict.to_mnist

    def failing_on_odd(gray: np.ndarray, source: object = "image") -> np.ndarray:
        if str(source).endswith("odd.png"):
            raise FloatingPointError("overflow in the centre of mass")
        return real_to_mnist(gray, source)

    monkeypatch.setattr(predict, "to_mnist", failing_on_odd)
    names, images, errors = predict.load_images([odd, good])
    assert names == [str(good)] and images.shape == (1, 28, 28)
    assert [str(error) for error in errors] == [
        f"{odd}: cannot be read as a digit (FloatingPointError: overflow in the centre of mass)"
    ]
