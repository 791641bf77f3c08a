"""The served champion's logic, without MLflow: raw images in, digit and ten probabilities out.

A request is a table with one row per image: column `image` holds PNG/JPEG bytes in base64 (or
raw bytes), or column `pixels` holds an 8-bit array ([H, W] gray, [H, W, 3] RGB, any size). Each
image is inverted if needed and MNIST-centred by `pipeline.imaging`, normalised with the training
statistics stored with the model, and read by every member; members' probabilities are averaged
with their weights (one member with weight 1 for a single model).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from pipeline.errors import DataError
from pipeline.imaging import decode_image, from_pixels, to_mnist

MANIFEST = "serving.json"  # what the pyfunc's artifacts hold besides the member models
IMAGE_COLUMN = "image"
PIXELS_COLUMN = "pixels"
BATCH = 256


def manifest(weights: Mapping[str, int], mean: float, std: float) -> dict[str, Any]:
    """The JSON stored with a served model: member weights and the training normalisation."""
    return {"members": dict(weights), "mean": float(mean), "std": float(std)}


def png_base64(digit: np.ndarray) -> str:
    """A [28, 28] image in [0, 1] (ink 1) as a base64 PNG, dark ink on white paper."""
    pixels = (255 - np.clip(digit, 0, 1) * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _image(row: Mapping[str, Any], index: int) -> np.ndarray:
    """One request row as an MNIST digit [28, 28]."""
    source = f"row {index}"
    encoded = row.get(IMAGE_COLUMN)
    pixels = row.get(PIXELS_COLUMN)
    if isinstance(encoded, str) and encoded:
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise DataError(f"{source}: `{IMAGE_COLUMN}` is not base64") from None
        return to_mnist(decode_image(data, source), source)
    if isinstance(encoded, bytes | bytearray) and encoded:
        return to_mnist(decode_image(bytes(encoded), source), source)
    if pixels is not None and not (isinstance(pixels, float) and np.isnan(pixels)):
        return to_mnist(from_pixels(pixels, source), source)
    raise DataError(f"{source}: give `{IMAGE_COLUMN}` (base64 PNG/JPEG) or `{PIXELS_COLUMN}`")


def images(request: pd.DataFrame | Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Every row of a request as MNIST digits [N, 28, 28]; a DataError names the first bad row."""
    rows = request.to_dict("records") if isinstance(request, pd.DataFrame) else list(request)
    if not rows:
        return np.zeros((0, 28, 28), dtype=np.float32)
    return np.stack([_image(row, index) for index, row in enumerate(rows)])


class DigitReader:
    """Averaged members' probabilities on normalised MNIST digits."""

    def __init__(self, members: Mapping[str, Any], weights: Mapping[str, int], mean, std) -> None:
        self.members = dict(members)
        self.weights = dict(weights)
        self.mean = np.float32(mean)
        self.std = np.float32(std)

    @classmethod
    def load(cls, manifest_path: Path, model_files: Mapping[str, Path]) -> DigitReader:
        """Read the manifest and load each member's Keras file (safe mode)."""
        from pipeline.models import load_model  # Keras: only when a model is needed

        stored = json.loads(Path(manifest_path).read_text())
        members = {name: load_model(Path(model_files[name])) for name in stored["members"]}
        return cls(members, stored["members"], stored["mean"], stored["std"])

    def probabilities(self, digits: np.ndarray) -> np.ndarray:
        """[N, 10] probabilities of MNIST digits [N, 28, 28] (ink 1, paper 0)."""
        batch = ((digits.astype(np.float32) - self.mean) / self.std)[..., np.newaxis]
        total = sum(self.weights.values())
        blended = np.zeros((len(digits), 10), dtype=np.float64)
        for name, weight in self.weights.items():
            predicted = self.members[name].predict(batch, batch_size=BATCH, verbose=0)
            blended += np.asarray(predicted, dtype=np.float64) * (weight / total)
        return blended

    def predict(self, request: pd.DataFrame | Sequence[Mapping[str, Any]]) -> pd.DataFrame:
        """One row per image: `digit` and `probabilities` (ten floats, digit 0 first)."""
        digits = images(request)
        if len(digits) == 0:
            return pd.DataFrame({"digit": pd.Series(dtype="int64"), "probabilities": []})
        probabilities = self.probabilities(digits)
        return pd.DataFrame(
            {
                "digit": probabilities.argmax(axis=1).astype(np.int64),
                "probabilities": [row.astype(np.float64).tolist() for row in probabilities],
            }
        )
