"""The served model's requests, through a real `mlflow models serve` on 127.0.0.1: every bad
request is a 400 whose message is our one line naming the row and field (no traceback, no server
path), good ones (base64 PNG, gray and RGB arrays) answer 200, and the server keeps answering."""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from pipeline import serving, tracking
from pipeline.config import TrackingConfig
from tests.support import VENV_BIN, background_server, free_port, pipeline_env, tracking_requests

LIMITS = serving.RequestLimits(max_images=4, max_pixels=200_000)
CONFIG = TrackingConfig(
    experiment="serving", registered_model="served", log_model=True, **tracking_requests()
)


def png(pixels: np.ndarray, mode: str | None = None) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def bar() -> np.ndarray:
    """A vertical stroke, dark ink on white paper, 8-bit [28, 28]."""
    digit = np.full((28, 28), 255, np.uint8)
    digit[4:24, 12:16] = 0
    return digit


def big_bar(side: int) -> np.ndarray:
    """`bar()` drawn on a side x side sheet."""
    sheet = np.full((side, side), 255, np.uint8)
    sheet[side // 8 : -side // 8, side // 2 - side // 20 : side // 2 + side // 20] = 0
    return sheet


def bomb() -> str:
    """A 30 KB PNG that declares 20000 x 20000 pixels."""
    buffer = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A DigitReader of one untrained tiny CNN, logged with LIMITS and served; yields its URL."""
    import keras

    folder = tmp_path_factory.mktemp("serving")
    uri = f"sqlite:///{folder / 'store.db'}"
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        experiment = tracking.connect(CONFIG)
        keras.utils.set_random_seed(0)
        inputs = keras.Input((28, 28, 1))
        outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs))
        model_file = folder / "tiny.keras"
        keras.Model(inputs, outputs).save(model_file)
        with tracking.start_run(experiment, "report", {}) as run:
            model_uri = run.log_digit_reader(
                {"tiny": model_file},
                serving.manifest({"tiny": 1}, 0.1, 0.3, LIMITS),
                png(bar()),
            )
        assert model_uri and run.failures == []
    finally:
        if old is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old
    port = free_port()
    command = [
        str(VENV_BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    env = pipeline_env(MLFLOW_TRACKING_URI=uri, MLFLOW_DISABLE_TELEMETRY="true")
    url = f"http://127.0.0.1:{port}"
    with background_server(command, url, folder / "serve.log", env, folder, health="/ping"):
        yield url


def invoke(url: str, body: str) -> requests.Response:
    return requests.post(
        f"{url}/invocations",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=60,
    )


def records(*rows: object) -> str:
    return json.dumps({"dataframe_records": list(rows)})


RGB = np.stack([bar(), bar(), np.full((28, 28), 200, np.uint8)], axis=-1)
GOOD = [
    records({"image": png(bar())}),
    records({"pixels": bar().tolist()}),
    records({"pixels": RGB.tolist()}),
    records({"image": png(bar())}, {"pixels": RGB.tolist()}),
]
BAD = {
    "not base64": (records({"image": "not base64!"}), "row 0: `image` is not base64"),
    "not an image": (
        records({"image": base64.b64encode(b"hello").decode()}),
        "row 0: `image`: not an image (no format PIL can read)",
    ),
    "blank": (
        records({"image": png(np.full((28, 28), 255, np.uint8))}),
        "row 0: no digit found (the image is blank)",
    ),
    "negative": (
        records({"pixels": np.full((28, 28), -5).tolist()}),
        "row 0: `pixels`: pixels must be finite numbers in 0-255",
    ),
    "above 255": (
        records({"pixels": np.full((28, 28), 300).tolist()}),
        "row 0: `pixels`: pixels must be finite numbers in 0-255",
    ),
    "NaN": (
        records({"pixels": [[float("nan")] * 28] * 28}),
        "row 0: `pixels`: pixels must be finite numbers in 0-255",
    ),
    "bomb": (
        records({"image": bomb()}),
        "row 0: `image`: refused as a decompression bomb (too many pixels)",
    ),
    "large image": (
        records({"image": png(np.full((600, 600), 255, np.uint8))}),
        "row 0: `image`: 600x600 pixels is more than the 200,000 pixels left of "
        "serving.max_pixels for this request",
    ),
    "ragged": (
        records({"pixels": [[1, 2, 3], [4]]}),
        "row 0: `pixels`: pixels must be a rectangular array of numbers",
    ),
    "null image": (
        records({"image": None}),
        "row 0: give `image` (base64 PNG/JPEG) or `pixels` (8-bit array)",
    ),
    "null pixels": (
        records({"pixels": [[None] * 28] * 28}),
        "row 0: `pixels`: pixels must be finite numbers in 0-255",
    ),
    "a number": (records({"image": 5}), "row 0: `image` must be a base64 string"),
    # MLflow's parser keeps only the signature's columns: rows without one arrive as no rows.
    "unknown column": (
        records({"img": "x"}, {"img": "y"}),
        "request: no images (each row needs `image` or `pixels`)",
    ),
    "empty row": (records({}), "request: no images (each row needs `image` or `pixels`)"),
    "no rows": (records(), "request: no images (each row needs `image` or `pixels`)"),
    "both": (
        records({"image": png(bar()), "pixels": bar().tolist()}),
        "row 0: give `image` or `pixels`, not both",
    ),
    "too many images": (
        records(*[{"image": png(bar())}] * 5),
        "request: 5 images, more than serving.max_images (4)",
    ),
    "too many pixels": (
        records({"pixels": big_bar(400).tolist()}, {"pixels": big_bar(300).tolist()}),
        "row 1: `pixels`: 300x300 pixels is more than the 40,000 pixels left of "
        "serving.max_pixels for this request",
    ),
}


def test_good_requests_answer_a_digit_per_image(served: str) -> None:
    for body in GOOD:
        answer = invoke(served, body)
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert len(predictions) == len(json.loads(body)["dataframe_records"])
        for prediction in predictions:
            assert 0 <= prediction["digit"] <= 9
            assert sum(prediction["probabilities"]) == pytest.approx(1, abs=1e-5)


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_request_is_a_400_with_one_line_naming_the_field(served: str, case: str) -> None:
    body, message = BAD[case]
    answer = invoke(served, body)
    assert answer.status_code == 400, answer.text
    error = answer.json()
    assert error["message"] == message
    assert error["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "stack_trace" not in error
    for leak in ("Traceback", "site-packages", str(Path(serving.__file__).parent), "/tmp/"):
        assert leak not in answer.text
    # ... and the server still answers good requests.
    good = invoke(served, GOOD[0])
    assert good.status_code == 200, good.text


def test_a_request_beyond_the_limits_is_refused_locally_too() -> None:
    rows = [{"pixels": bar().tolist()}] * 5
    with pytest.raises(serving.DataError, match=r"request: 5 images, more than serving\.max_"):
        serving.images(rows, LIMITS)
    assert serving.images(rows[:4], LIMITS).shape == (4, 28, 28)
    assert serving.images(rows[:1], None, 14).shape == (1, 14, 14)
    with pytest.raises(serving.DataError, match=r"row 0: unknown field 'img'"):
        serving.images([{"img": "x"}])
