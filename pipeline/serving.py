"""The served champion's logic, without MLflow: raw images in, digit and ten probabilities out.

A request is a table with one row per image: column `image` holds PNG/JPEG bytes in base64 (or
raw bytes), or column `pixels` holds an 8-bit array ([H, W] gray, [H, W, 3] RGB, any size); no
other column. A request holds at most `max_images` images of `max_pixels` pixels in all (params
`serving`, stored with the model). Each
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from pipeline.errors import DataError
from pipeline.imaging import MAX_PIXELS, decode_image, from_pixels, to_mnist

MANIFEST = "serving.json"  # what the pyfunc's artifacts hold besides the member models
IMAGE_COLUMN = "image"
PIXELS_COLUMN = "pixels"
BATCH = 256


@dataclass(frozen=True)
class RequestLimits:
    """What one request may hold: images, and pixels over all its images."""

    max_images: int
    max_pixels: int


def manifest(
    weights: Mapping[str, int], mean: float, std: float, limits: RequestLimits
) -> dict[str, Any]:
    """The JSON stored with a served model: member weights, the training normalisation and
    the request limits (so they travel with the model)."""
    return {
        "members": dict(weights),
        "mean": float(mean),
        "std": float(std),
        "limits": {"max_images": limits.max_images, "max_pixels": limits.max_pixels},
    }


def png_base64(digit: np.ndarray) -> str:
    """A [28, 28] image in [0, 1] (ink 1) as a base64 PNG, dark ink on white paper."""
    pixels = (255 - np.clip(digit, 0, 1) * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _missing(value: Any) -> bool:
    """A cell that holds nothing: None, NaN (pandas' empty cell), an empty string."""
    if value is None or (isinstance(value, str | bytes | bytearray) and not value):
        return True
    return isinstance(value, float) and np.isnan(value)


def _gray(row: Mapping[str, Any], source: str, max_pixels: int, limit: str) -> np.ndarray:
    """One request row as grayscale [H, W] in [0, 1], refused beyond `max_pixels` (`limit`)."""
    unknown = sorted(str(key) for key in row if key not in (IMAGE_COLUMN, PIXELS_COLUMN))
    if unknown:
        raise DataError(
            f"{source}: unknown field {', '.join(map(repr, unknown))} "
            f"(give `{IMAGE_COLUMN}` or `{PIXELS_COLUMN}`)"
        )
    encoded, pixels = row.get(IMAGE_COLUMN), row.get(PIXELS_COLUMN)
    if not _missing(encoded) and not _missing(pixels):
        raise DataError(f"{source}: give `{IMAGE_COLUMN}` or `{PIXELS_COLUMN}`, not both")
    if isinstance(encoded, str) and encoded:
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise DataError(f"{source}: `{IMAGE_COLUMN}` is not base64") from None
        return decode_image(data, f"{source}: `{IMAGE_COLUMN}`", max_pixels, limit)
    if isinstance(encoded, bytes | bytearray) and encoded:
        return decode_image(bytes(encoded), f"{source}: `{IMAGE_COLUMN}`", max_pixels, limit)
    if not _missing(encoded):
        raise DataError(f"{source}: `{IMAGE_COLUMN}` must be a base64 string")
    if not _missing(pixels):
        return from_pixels(pixels, f"{source}: `{PIXELS_COLUMN}`", max_pixels, limit)
    raise DataError(
        f"{source}: give `{IMAGE_COLUMN}` (base64 PNG/JPEG) or `{PIXELS_COLUMN}` (8-bit array)"
    )


def _rows(request: pd.DataFrame | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The request's rows as mappings; a row of a frame without columns is an empty mapping."""
    if isinstance(request, pd.DataFrame):
        # to_dict("records") of a frame with rows but no columns is [], not [{}, ...]
        return (
            [dict(row) for _, row in request.iterrows()]
            if len(request.columns)
            else [{} for _ in range(len(request))]
        )
    rows = list(request)
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise DataError(f"row {index}: a row must be an object with `{IMAGE_COLUMN}` or "
                            f"`{PIXELS_COLUMN}`")  # fmt: skip
    return [dict(row) for row in rows]


def images(
    request: pd.DataFrame | Sequence[Mapping[str, Any]],
    limits: RequestLimits | None = None,
    size: int = 28,
) -> np.ndarray:
    """Every row of a request as MNIST digits [N, size, size]; a DataError names the first bad
    row and its field; `limits` bound the images and the pixels of the whole request."""
    rows = _rows(request)
    if not rows:
        # Also what MLflow's scoring server passes on for rows without a known column.
        raise DataError(
            f"request: no images (each row needs `{IMAGE_COLUMN}` or `{PIXELS_COLUMN}`)"
        )
    if limits is not None and len(rows) > limits.max_images:
        raise DataError(
            f"request: {len(rows):,} images, more than serving.max_images ({limits.max_images:,})"
        )
    digits = []
    left = limits.max_pixels if limits is not None else None
    for index, row in enumerate(rows):
        source = f"row {index}"
        if left is None or left >= MAX_PIXELS:
            gray = _gray(row, source, MAX_PIXELS, "pixel limit")
        else:
            gray = _gray(row, source, left, "pixels left of serving.max_pixels for this request")
        if left is not None:
            left -= gray.size
        digits.append(to_mnist(gray, source, size))
    return np.stack(digits)


class DigitReader:
    """Averaged members' probabilities on normalised MNIST digits."""

    def __init__(
        self,
        members: Mapping[str, Any],
        weights: Mapping[str, int],
        mean,
        std,
        limits: RequestLimits | None = None,
    ) -> None:
        self.members = dict(members)
        self.weights = dict(weights)
        self.mean = np.float32(mean)
        self.std = np.float32(std)
        self.limits = limits
        if not self.weights:
            raise ValueError("a DigitReader needs at least one member")

    @classmethod
    def load(cls, manifest_path: Path, model_files: Mapping[str, Path]) -> DigitReader:
        """Read the manifest and load each member's Keras file (safe mode)."""
        from pipeline.models import load_model  # Keras: only when a model is needed

        stored = json.loads(Path(manifest_path).read_text())
        members = {name: load_model(Path(model_files[name])) for name in stored["members"]}
        limits = RequestLimits(**stored["limits"])
        return cls(members, stored["members"], stored["mean"], stored["std"], limits)

    @property
    def image_size(self) -> int:
        """The side of the square images the members read (data.image_shape when trained)."""
        return int(next(iter(self.members.values())).input_shape[1])

    def probabilities(self, digits: np.ndarray) -> np.ndarray:
        """[N, classes] probabilities of digits [N, size, size] (ink 1, paper 0)."""
        batch = ((digits.astype(np.float32) - self.mean) / self.std)[..., np.newaxis]
        total = sum(self.weights.values())
        shares = [
            np.asarray(self.members[name].predict(batch, batch_size=BATCH, verbose=0), np.float64)
            * (weight / total)
            for name, weight in self.weights.items()
        ]
        return np.sum(shares, axis=0)

    def predict(self, request: pd.DataFrame | Sequence[Mapping[str, Any]]) -> pd.DataFrame:
        """One row per image: `digit` and `probabilities` (one float per class, 0 first)."""
        digits = images(request, self.limits, self.image_size)
        probabilities = self.probabilities(digits)
        return pd.DataFrame(
            {
                "digit": probabilities.argmax(axis=1).astype(np.int64),
                "probabilities": [row.astype(np.float64).tolist() for row in probabilities],
            }
        )
