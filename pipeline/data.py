"""MNIST data: IDX parsing, download with checksums, normalisation, stratified splits.

Raw files are stored decompressed, exactly the bytes whose SHA-256 params.yaml pins; the processed
data set is one uncompressed .npz of float32 images [N, H, W, 1] and int64 labels.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import time
import zipfile
import zlib
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

import numpy as np
import requests
from tqdm import tqdm

from pipeline.config import DataFiles
from pipeline.errors import DataError
from pipeline.io import write_with

log = logging.getLogger(__name__)

IDX_UINT8 = 0x08
GZIP_MAGIC = b"\x1f\x8b"
CHUNK_BYTES = 1 << 16
DATASET_ARRAYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
DATASET_SCALARS = ("mean", "std", "normalize")


# ---------------------------------------------------------------------------- IDX files


def parse_idx(data: bytes, source: str | Path) -> np.ndarray:
    """Parse an uncompressed IDX file of uint8 items into an array of the declared shape."""
    if len(data) < 4:
        raise DataError(f"{source}: too short for an IDX header ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0:
        raise DataError(f"{source}: not an IDX file (starts with {data[:4].hex()}, not 0000)")
    if data[2] != IDX_UINT8:
        raise DataError(f"{source}: IDX item type 0x{data[2]:02x} is not supported (only 0x08)")
    ndim = data[3]
    if not 1 <= ndim <= 4:
        raise DataError(f"{source}: IDX header declares {ndim} dimensions, expected 1 to 4")
    header_bytes = 4 + 4 * ndim
    if len(data) < header_bytes:
        raise DataError(f"{source}: IDX header cut short ({len(data)} of {header_bytes} bytes)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = 1
    for size in shape:
        expected *= size
    actual = len(data) - header_bytes
    if actual < expected:
        raise DataError(f"{source}: header says {expected} items, file holds {actual}")
    if actual > expected:
        raise DataError(
            f"{source}: header says {expected} items, file holds {actual} "
            f"({actual - expected} trailing bytes)"
        )
    try:
        return np.frombuffer(data, dtype=np.uint8, offset=header_bytes).reshape(shape).copy()
    except ValueError as error:  # e.g. a zero-sized shape whose other dimensions overflow
        raise DataError(f"{source}: IDX shape {list(shape)} is not usable ({error})") from None


def decompress(data: bytes, source: str | Path) -> bytes:
    """Gunzip `data` if it is gzip, else return it as is; refuse HTML pages and corrupt gzip."""
    _refuse_html(data, source)
    if not data.startswith(GZIP_MAGIC):
        return data
    try:
        data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{source}: corrupt or truncated gzip ({error})") from None
    _refuse_html(data, source)
    return data


def _refuse_html(data: bytes, source: str | Path) -> None:
    # A mirror that moved often answers 200 with an HTML page; IDX files start with two zero bytes.
    if data[:512].lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        raise DataError(f"{source}: got an HTML page, not an IDX file")


def raw_name(file_name: str) -> str:
    """The name a file is stored under in data/raw: decompressed, so without `.gz`."""
    return file_name.removesuffix(".gz")


# ---------------------------------------------------------------------------- download


class _Transient(Exception):
    """A fault worth retrying at the same source: timeout, dropped connection, HTTP 5xx."""


class _Permanent(Exception):
    """A fault retrying cannot fix at this source: HTTP 4xx, missing file, wrong content."""


def sources(mirrors: tuple[str, ...]) -> list[str]:
    """The sources to try in order: $MNIST_MIRROR (if set) first, then the params mirrors."""
    override = os.environ.get("MNIST_MIRROR", "").strip()
    return [override, *mirrors] if override else list(mirrors)


def fetch(
    name: str,
    sha256: str,
    sources: list[str],
    timeout: float,
    retries: int,
    backoff: float,
    session: requests.Session | None = None,
) -> bytes:
    """Fetch `name` from the first source that serves bytes whose decompressed SHA-256 matches.

    A source is a URL prefix (http, https, file) or a local folder. Transient faults are retried
    `retries` times with exponential backoff; anything else moves on to the next source.
    """
    own_session = session is None
    session = session or requests.Session()
    failures: list[str] = []
    try:
        for source in sources:
            location = _location(source, name)
            try:
                read = partial(_read, location, timeout, session)
                data = _with_retries(read, retries, backoff)
                data = decompress(data, location)
                digest = hashlib.sha256(data).hexdigest()
                if digest != sha256:
                    raise _Permanent(f"sha256 mismatch (got {digest[:12]}..., want {sha256})")
            except (_Transient, _Permanent, DataError) as error:
                reason = str(error).removeprefix(f"{location}: ")
                log.warning("%s: %s", location, reason)
                failures.append(f"{location}: {reason}")
                continue
            log.info("fetched %s from %s", name, location)
            return data
    finally:
        if own_session:
            session.close()
    tried = "; ".join(failures) or "no sources (set MNIST_MIRROR or data.mirrors)"
    raise DataError(f"could not fetch {name}: {tried}")


def _location(source: str, name: str) -> str:
    """The URL or path of file `name` at `source`."""
    if "://" in source:
        return f"{source.rstrip('/')}/{name}"
    return str(Path(source) / name)


def _with_retries(read: Callable[[], bytes], retries: int, backoff: float) -> bytes:
    """Call `read` up to `retries` times, sleeping backoff * 2**attempt after a transient fault."""
    for attempt in range(retries):
        try:
            return read()
        except _Transient as error:
            if attempt == retries - 1:
                suffix = f" (after {retries} attempts)" if retries > 1 else ""
                raise _Transient(f"{error}{suffix}") from None
            log.warning("%s; retrying in %.1f s", error, backoff * 2**attempt)
            time.sleep(backoff * 2**attempt)
    raise _Permanent("no attempts made (retries must be >= 1)")


def _read(location: str, timeout: float, session: requests.Session) -> bytes:
    """The bytes at `location`; raise _Transient or _Permanent with a short reason."""
    scheme = urlparse(location).scheme if "://" in location else ""
    if scheme in ("http", "https"):
        return _read_http(location, timeout, session)
    if scheme not in ("", "file"):
        raise _Permanent(f"unsupported URL scheme {scheme!r} (use http, https, file or a folder)")
    path = Path(unquote(urlparse(location).path)) if scheme == "file" else Path(location)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise _Permanent("no such file") from None
    except OSError as error:
        raise _Permanent(f"cannot read ({error.strerror})") from None


def _read_http(url: str, timeout: float, session: requests.Session) -> bytes:
    """Download `url` in chunks behind a progress bar."""
    try:
        with session.get(url, stream=True, timeout=timeout) as response:
            if response.status_code >= 500:
                raise _Transient(f"HTTP {response.status_code}")
            if response.status_code >= 400:
                raise _Permanent(f"HTTP {response.status_code}")
            length = response.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
            name = url.rsplit("/", 1)[-1]
            body = bytearray()
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=name, disable=None, leave=False
            ) as bar:
                for chunk in response.iter_content(CHUNK_BYTES):
                    body.extend(chunk)
                    bar.update(len(chunk))
            return bytes(body)
    except requests.Timeout:
        raise _Transient(f"timed out after {timeout:g} s") from None
    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as error:
        if "timed out" in str(error):
            raise _Transient(f"timed out after {timeout:g} s") from None
        raise _Transient(f"connection failed ({type(error).__name__})") from None
    except requests.RequestException as error:
        raise _Permanent(f"request failed ({type(error).__name__})") from None


# ---------------------------------------------------------------------------- raw data set


def load_raw(
    raw_dir: Path, files: DataFiles, image_shape: tuple[int, ...], num_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read and check the four raw IDX files: (train_x, train_y, test_x, test_y), all uint8."""
    train_x, train_y = _load_pair(
        raw_dir, files.train_images.name, files.train_labels.name, image_shape, num_classes
    )
    test_x, test_y = _load_pair(
        raw_dir, files.test_images.name, files.test_labels.name, image_shape, num_classes
    )
    return train_x, train_y, test_x, test_y


def _load_pair(
    raw_dir: Path,
    images_name: str,
    labels_name: str,
    image_shape: tuple[int, ...],
    num_classes: int,
) -> tuple[np.ndarray, np.ndarray]:
    images_path = Path(raw_dir) / raw_name(images_name)
    labels_path = Path(raw_dir) / raw_name(labels_name)
    images, labels = _read_idx(images_path), _read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != tuple(image_shape):
        want = ", ".join(str(size) for size in ("N", *image_shape))
        got = ", ".join(str(size) for size in images.shape)
        raise DataError(f"{images_path}: expected images of shape [{want}], got [{got}]")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected a 1-D label list, got {labels.ndim} dimensions")
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images "
            f"but {labels_path} holds {len(labels)} labels"
        )
    bad = np.flatnonzero(labels >= num_classes)
    if bad.size:
        raise DataError(
            f"{labels_path}: label {labels[bad[0]]} at index {bad[0]} is outside "
            f"[0, {num_classes}) ({bad.size} such labels)"
        )
    return images, labels


def _read_idx(path: Path) -> np.ndarray:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: missing; run `dvc repro download`") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror})") from None
    return parse_idx(data, path)


# ---------------------------------------------------------------------------- transforms


def normalize(
    train_x: np.ndarray, *others: np.ndarray, method: Literal["scale", "standardize"]
) -> tuple[list[np.ndarray], float, float]:
    """Pixels to float32 [N, H, W, 1]: x/255, then (x - mean)/std with training-split stats.

    Returns ([train, *others], mean, std); for "scale" mean is 0 and std is 1.
    """
    if method not in ("scale", "standardize"):
        raise ValueError(f"normalize method must be scale or standardize, got {method!r}")
    arrays = [np.divide(x, 255, dtype=np.float32)[..., np.newaxis] for x in (train_x, *others)]
    if method == "scale":
        return arrays, 0.0, 1.0
    mean, std = _mean_std(arrays[0])
    if std == 0:
        raise DataError("training images are all the same value: cannot standardize them")
    for x in arrays:
        x -= np.float32(mean)
        x /= np.float32(std)
    return arrays, mean, std


def _mean_std(x: np.ndarray, block: int = 1 << 20) -> tuple[float, float]:
    """Mean and population std of float32 `x`, accumulated in float64 one block at a time."""
    flat = x.reshape(-1)
    if flat.size == 0:
        raise DataError("no training images to compute normalisation statistics from")
    mean = float(flat.mean(dtype=np.float64))
    squares = 0.0
    for start in range(0, flat.size, block):
        deviation = flat[start : start + block].astype(np.float64) - mean
        squares += float(np.dot(deviation, deviation))
    return mean, (squares / flat.size) ** 0.5


def _allocate(counts: np.ndarray, total: int) -> np.ndarray:
    """Split `total` over classes in proportion to `counts`, by largest remainder (exact sum)."""
    n = int(counts.sum())
    quotas, remainders = np.divmod(counts.astype(np.int64) * total, n)
    short = total - int(quotas.sum())
    quotas[np.argsort(-remainders, kind="stable")[:short]] += 1
    return quotas


def _stratified_pick(labels: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of `total` items drawn at random per class, classes in proportion."""
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    picked = []
    for k, take in enumerate(_allocate(counts, total)):
        members = np.flatnonzero(inverse == k)
        picked.append(rng.choice(members, size=int(take), replace=False))
    return np.sort(np.concatenate(picked)) if picked else np.empty(0, dtype=np.int64)


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train_idx, val_idx): round(fraction * N) validation items, classes in proportion."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    labels = np.asarray(labels).reshape(-1)
    n_val = int(np.floor(fraction * len(labels) + 0.5))
    if not 0 < n_val < len(labels):
        raise DataError(
            f"cannot split {len(labels)} images at validation fraction {fraction}: "
            "one side would be empty"
        )
    val_idx = _stratified_pick(labels, n_val, np.random.default_rng(seed))
    keep = np.ones(len(labels), dtype=bool)
    keep[val_idx] = False
    return np.flatnonzero(keep), val_idx


def stratified_subset(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Sorted indices of `limit` items, classes in proportion; 0 (or >= N) keeps every item."""
    labels = np.asarray(labels).reshape(-1)
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if limit == 0 or limit >= len(labels):
        return np.arange(len(labels))
    return _stratified_pick(labels, limit, np.random.default_rng(seed))


# ---------------------------------------------------------------------------- processed data set


def save_dataset(path: Path, **arrays: Any) -> None:
    """Write the processed data set as an uncompressed .npz, atomically."""
    expected = set(DATASET_ARRAYS + DATASET_SCALARS)
    if set(arrays) != expected:
        raise ValueError(f"save_dataset needs exactly the keys {sorted(expected)}")

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as file:
            np.savez(file, **{key: np.asarray(value) for key, value in arrays.items()})

    write_with(path, write)


def _read_dataset(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """The named members of the processed data set; an npz reads only the members asked for."""
    hint = "run `dvc repro preprocess`"
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError(f"{path}: not an .npz archive; {hint}")
        with archive:
            missing = [k for k in keys if k not in archive.files]
            if missing:
                raise DataError(f"{path}: lacks {', '.join(missing)}; {hint}")
            return {key: archive[key] for key in keys}
    except FileNotFoundError:
        raise DataError(f"{path}: missing; {hint}") from None
    except (OSError, ValueError, TypeError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"{path}: not a readable data set ({reason}); {hint}") from None


def load_dataset(path: Path) -> dict[str, Any]:
    """Read the processed data set: arrays by name, plus float `mean`, `std`, str `normalize`."""
    data: dict[str, Any] = _read_dataset(path, DATASET_ARRAYS + DATASET_SCALARS)
    data["mean"] = float(data["mean"])
    data["std"] = float(data["std"])
    data["normalize"] = str(data["normalize"])
    return data


def normalization(path: Path) -> tuple[float, float]:
    """The training (mean, std) stored in the processed data set, without reading its arrays."""
    scalars = _read_dataset(path, ("mean", "std"))
    mean, std = float(scalars["mean"]), float(scalars["std"])
    if not np.isfinite(mean) or not np.isfinite(std) or std <= 0:
        raise DataError(
            f"{path}: unusable normalisation mean={mean}, std={std}; run `dvc repro preprocess`"
        )
    return mean, std
