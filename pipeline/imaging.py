"""Image files to MNIST digits: read any picture PIL opens, then crop, scale and centre it.

MNIST was built by fitting each digit into a 20x20 box (aspect ratio kept, anti-aliased) and
placing that box in a 28x28 field so the centre of mass sits at the centre; ink is 1, paper 0.
`to_mnist` repeats those steps on a photo or a drawing, whichever way round its colours are.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from pipeline.errors import DataError

MAX_BYTES = 50 * 1024 * 1024
MAX_PIXELS = 40_000_000

SIZE = 28  # side of an MNIST image
BOX = 20  # side of the box the digit is scaled into
CENTRE = 14.0  # where MNIST puts the centre of mass (row and column, in pixel indices)
NOISE_FLOOR = 0.1  # an image whose ink rises less than this above its paper is blank
INK_THRESHOLD = 0.05  # ink fainter than this fraction of the darkest stroke counts as paper

_TRANSPARENT_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


def read_image(path: str | Path) -> np.ndarray:
    """The picture at `path` as float32 grayscale [H, W] in [0, 1]; transparency shows white."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror})") from None
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    if size == 0:
        raise DataError(f"{path}: empty file")
    if size > MAX_BYTES:
        raise DataError(f"{path}: {size:,} bytes is larger than the {MAX_BYTES:,} byte limit")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror})") from None
    return decode_image(data, path)


def decode_image(
    data: bytes,
    source: str | Path = "image",
    max_pixels: int | None = None,
    limit: str = "pixel limit",
) -> np.ndarray:
    """Encoded image bytes (PNG, JPEG, anything PIL opens) as float32 gray [H, W] in [0, 1].

    `source` names the image in every error; transparency shows white; an image of more than
    `max_pixels` (default MAX_PIXELS; the `limit` named in the error) is refused before it is
    decoded.
    """
    max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
    if len(data) == 0:
        raise DataError(f"{source}: empty image")
    if len(data) > MAX_BYTES:
        raise DataError(f"{source}: {len(data):,} bytes is more than the {MAX_BYTES:,} byte limit")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size  # from the header: nothing is decoded yet
            if width * height > max_pixels:
                raise DataError(
                    f"{source}: {width}x{height} pixels is more than the {max_pixels:,} {limit}"
                )
            return _grayscale(ImageOps.exif_transpose(image), source)
    except DataError:
        raise
    except Image.DecompressionBombError:
        raise DataError(f"{source}: refused as a decompression bomb (too many pixels)") from None
    except Image.UnidentifiedImageError:
        raise DataError(f"{source}: not an image (no format PIL can read)") from None
    except Exception as error:  # noqa: BLE001 - PIL's decoders raise many types for a bad file
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"{source}: unreadable image ({reason[:200]})") from None


def from_pixels(
    pixels: object,
    source: str = "array",
    max_pixels: int | None = None,
    limit: str = "pixel limit",
) -> np.ndarray:
    """An 8-bit image array ([H, W] gray, [H, W, 1|3|4] gray/RGB/RGBA) as gray in [0, 1]."""
    max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
    try:
        array = np.asarray(pixels, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{source}: pixels must be a rectangular array of numbers") from None
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.size == 0 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise DataError(f"{source}: expected an [H, W] or [H, W, 1|3|4] image, got {array.shape}")
    if array.shape[0] * array.shape[1] > max_pixels:
        height, width = array.shape[:2]
        raise DataError(
            f"{source}: {width}x{height} pixels is more than the {max_pixels:,} {limit}"
        )
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 255:
        raise DataError(f"{source}: pixels must be finite numbers in 0-255")
    # uint8 [H, W] opens as L, [H, W, 3] as RGB, [H, W, 4] as RGBA
    return _grayscale(Image.fromarray(array.round().astype(np.uint8)), source)


def _grayscale(image: Image.Image, path: str | Path) -> np.ndarray:
    """A decoded PIL image as float32 gray in [0, 1]."""
    if image.mode.startswith("I;16"):
        return (np.asarray(image, dtype=np.float32) / 65535).clip(0, 1)
    if image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float32)
        if not np.isfinite(values).all():
            raise DataError(f"{path}: pixel values that are not finite numbers (NaN or inf)")
        # 32-bit modes hold 16-bit samples (older PNG loaders), 8-bit ones, or floats in [0, 1].
        full_scale = 65535 if values.max() > 255 else 255 if values.max() > 1 else 1
        return (values / full_scale).clip(0, 1)
    try:
        if image.mode in _TRANSPARENT_MODES or "transparency" in image.info:
            rgba = image.convert("RGBA")
            paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(paper, rgba)
        gray = image.convert("L")
    except ValueError:
        raise DataError(f"{path}: colour mode {image.mode} cannot be read as grayscale") from None
    return np.asarray(gray, dtype=np.float32) / 255


def to_mnist(gray: np.ndarray, source: str | Path = "image", size: int = SIZE) -> np.ndarray:
    """Grayscale [H, W] in [0, 1] to a float32 [size, size] MNIST digit (ink 1.0, paper 0.0).

    `source` names the image in the error raised when it holds no ink. The digit's box and
    centre scale with `size` as MNIST's 20 and 14 do with 28 (data.image_shape).
    """
    gray = np.asarray(gray, dtype=np.float32)
    if gray.ndim != 2 or gray.size == 0:
        raise ValueError(f"expected a non-empty 2-D grayscale image, got shape {gray.shape}")
    ink = _ink(gray)
    if ink is None:
        raise DataError(f"{source}: no digit found (the image is blank)")
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return _centre(_fit(crop, round(size * BOX / SIZE)), size)


def _ink(gray: np.ndarray) -> np.ndarray | None:
    """Ink as positive values over a zero background, darkest stroke 1; None if there is none."""
    border = np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])
    paper = float(np.median(border))
    if paper > 0.5:  # light paper: the ink is the dark part
        gray, paper = 1 - gray, 1 - paper
    ink = np.clip(gray - paper, 0, None)
    peak = float(ink.max())
    if peak < NOISE_FLOOR:
        return None
    ink /= peak
    ink[ink < INK_THRESHOLD] = 0
    return ink


def _fit(crop: np.ndarray, box: int = BOX) -> np.ndarray:
    """Scale `crop` so its longer side is `box` pixels (anti-aliased); darkest stroke back to 1."""
    height, width = crop.shape
    scale = box / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size != (width, height):
        crop = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS))
        crop = crop.clip(0, None)  # Lanczos rings slightly below zero beside strokes
        # Scaling a thin stroke down fades it; MNIST strokes reach full ink, so restore the peak.
        crop = crop / max(float(crop.max()), 1e-6)
    return crop.astype(np.float32)


def _centre(glyph: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Place `glyph` in a size x size field with its centre of mass at the centre (kept whole)."""
    centre = CENTRE * size / SIZE
    height, width = glyph.shape
    mass = float(glyph.sum())
    row = float(glyph.sum(axis=1) @ np.arange(height)) / mass
    col = float(glyph.sum(axis=0) @ np.arange(width)) / mass
    # A lopsided glyph would need to leave the field to be centred exactly; keep all its ink.
    top = min(max(round(centre - row), 0), size - height)
    left = min(max(round(centre - col), 0), size - width)
    field = np.zeros((size, size), dtype=np.float32)
    field[top : top + height, left : left + width] = glyph
    return field
