"""MNIST data: IDX parsing, download with checksums, normalisation, stratified splits.

Raw files are stored decompressed, exactly the bytes whose SHA-256 params.yaml pins; the processed
data set is one uncompressed .npz of float32 images [N, H, W, 1] and int64 labels.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import math
import os
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

import numpy as np
import requests
import requests.adapters
from tqdm import tqdm
from urllib3.exceptions import MaxRetryError, ProtocolError
from urllib3.util.retry import Retry

from pipeline.config import DataFiles
from pipeline.errors import DataError
from pipeline.io import write_with

log = logging.getLogger(__name__)

IDX_UINT8 = 0x08
GZIP_MAGIC = b"\x1f\x8b"
CHUNK_BYTES = 1 << 16
IDX_HEADER_MAX_BYTES = 4 + 4 * 4  # magic, then up to four dimension sizes
DATASET_ARRAYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
DATASET_SCALARS = ("mean", "std", "normalize")


# ---------------------------------------------------------------------------- IDX files


def _header(head: bytes, source: str | Path) -> tuple[int, tuple[int, ...]]:
    """(header bytes, shape) of an IDX file of uint8 items starting with `head`."""
    if len(head) < 4:
        raise DataError(f"{source}: too short for an IDX header ({len(head)} bytes)")
    if head[0] != 0 or head[1] != 0:
        raise DataError(f"{source}: not an IDX file (starts with {head[:4].hex()}, not 0000)")
    if head[2] != IDX_UINT8:
        raise DataError(f"{source}: IDX item type 0x{head[2]:02x} is not supported (only 0x08)")
    ndim = head[3]
    if not 1 <= ndim <= 4:
        raise DataError(f"{source}: IDX header declares {ndim} dimensions, expected 1 to 4")
    header_bytes = 4 + 4 * ndim
    if len(head) < header_bytes:
        raise DataError(f"{source}: IDX header cut short ({len(head)} of {header_bytes} bytes)")
    shape = tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return header_bytes, shape


def parse_idx(data: bytes, source: str | Path) -> np.ndarray:
    """Parse an uncompressed IDX file of uint8 items into an array of the declared shape."""
    header_bytes, shape = _header(data, source)
    expected = math.prod(shape)
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


def decompress(data: bytes, source: str | Path, max_bytes: int | None = None) -> bytes:
    """Gunzip `data` if it is gzip, else return it as is; refuse HTML pages and corrupt gzip.

    The content may not exceed the size its IDX header declares nor `max_bytes`
    (params data.max_idx_bytes; None: the header alone bounds it); a gzip is inflated only up to
    that bound, so a small file that inflates to gigabytes fails before it costs the memory.
    """
    _refuse_html(data, source)
    if not data.startswith(GZIP_MAGIC):
        _check_size(data, _size_limit(data, source, max_bytes), source, max_bytes)
        return data
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            head = stream.read(IDX_HEADER_MAX_BYTES)
            limit = _size_limit(head, source, max_bytes)
            data = head + (
                stream.read() if limit is None else stream.read(max(0, limit + 1 - len(head)))
            )
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{source}: corrupt or truncated gzip ({error})") from None
    _refuse_html(data, source)
    _check_size(data, limit, source, max_bytes)
    return data


def _declared_bytes(head: bytes) -> int | None:
    """The file size an IDX header of uint8 items at the start of `head` declares, else None
    (not an IDX header: parse_idx names what is wrong with it later)."""
    try:
        header_bytes, shape = _header(head, "")
    except DataError:
        return None
    return header_bytes + math.prod(shape)


def _size_limit(head: bytes, source: str | Path, max_bytes: int | None) -> int | None:
    """The most bytes the content may hold: its declared IDX size, capped at `max_bytes`."""
    declared = _declared_bytes(head)
    if declared is not None and max_bytes is not None and declared > max_bytes:
        raise DataError(
            f"{source}: IDX header declares {declared:,} bytes, "
            f"more than data.max_idx_bytes ({max_bytes:,})"
        )
    return declared if declared is not None else max_bytes


def _check_size(data: bytes, limit: int | None, source: str | Path, max_bytes: int | None) -> None:
    if limit is None or len(data) <= limit:
        return
    if limit == max_bytes:
        raise DataError(f"{source}: holds more than data.max_idx_bytes ({max_bytes:,} bytes)")
    raise DataError(f"{source}: holds more than the {limit:,} bytes its IDX header declares")


def _refuse_html(data: bytes, source: str | Path) -> None:
    # A mirror that moved often answers 200 with an HTML page; IDX files start with two zero bytes.
    if data[:512].lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        raise DataError(f"{source}: got an HTML page, not an IDX file")


def raw_name(file_name: str) -> str:
    """The name a file is stored under in data/raw: decompressed, so without `.gz`."""
    return file_name.removesuffix(".gz")


# ---------------------------------------------------------------------------- download


class _Unusable(Exception):
    """This source cannot provide the file (after any retries); fetch moves on to the next."""


def retrying_session(retries: int, backoff: float) -> requests.Session:
    """A session that tries each request `retries` times on timeouts, dropped connections and
    HTTP 5xx, with urllib3's exponential backoff (no pause before the first retry, then
    backoff * 2, * 4, ...); 4xx and wrong content are not retried."""
    policy = Retry(
        total=retries - 1,
        backoff_factor=backoff,
        status_forcelist=range(500, 600),
        raise_on_status=False,  # the last 5xx answer comes back, to be named in the error
        respect_retry_after_header=False,  # a mirror cannot make us wait longer than params say
    )
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(max_retries=policy)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


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
    max_bytes: int | None = None,
) -> bytes:
    """Fetch `name` from the first source that serves bytes whose decompressed SHA-256 matches.

    A source is a URL prefix (http, https, file) or a local folder. HTTP faults worth retrying
    are retried `retries` times with exponential backoff (see `retrying_session`); anything else
    moves on to the next source. `max_bytes` bounds what is read and inflated (see `decompress`).
    """
    own_session = session is None
    session = session or retrying_session(retries, backoff)
    failures: list[str] = []
    try:
        for source in sources:
            location = _location(source, name)
            try:
                data = _read(location, timeout, session, _compressed_bound(max_bytes))
                data = decompress(data, location, max_bytes)
                digest = hashlib.sha256(data).hexdigest()
                if digest != sha256:
                    raise _Unusable(f"sha256 mismatch (got {digest[:12]}..., want {sha256})")
            except (_Unusable, DataError) as error:
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


def _compressed_bound(max_bytes: int | None) -> int | None:
    # Gzip grows incompressible data by at most 5 bytes per 16 KiB block plus its header.
    return None if max_bytes is None else max_bytes + max_bytes // 2048 + 1024


def _location(source: str, name: str) -> str:
    """The URL or path of file `name` at `source`."""
    if "://" in source:
        return f"{source.rstrip('/')}/{name}"
    return str(Path(source) / name)


def _read(location: str, timeout: float, session: requests.Session, bound: int | None) -> bytes:
    """The bytes at `location`, at most `bound` of them; raise _Unusable with a short reason."""
    scheme = urlparse(location).scheme if "://" in location else ""
    if scheme in ("http", "https"):
        return _read_http(location, timeout, session, bound)
    if scheme not in ("", "file"):
        raise _Unusable(f"unsupported URL scheme {scheme!r} (use http, https, file or a folder)")
    path = Path(unquote(urlparse(location).path)) if scheme == "file" else Path(location)
    try:
        with path.open("rb") as file:
            if bound is not None and os.fstat(file.fileno()).st_size > bound:
                raise _Unusable(_too_big(bound))
            data = file.read() if bound is None else file.read(bound + 1)
    except FileNotFoundError:
        raise _Unusable("no such file") from None
    except OSError as error:
        raise _Unusable(f"cannot read ({error.strerror})") from None
    if bound is not None and len(data) > bound:
        raise _Unusable(_too_big(bound))
    return data


def _too_big(bound: int) -> str:
    return f"larger than {bound:,} bytes, more than data.max_idx_bytes allows"


def _read_http(url: str, timeout: float, session: requests.Session, bound: int | None) -> bytes:
    """Download `url` behind a progress bar; the session's policy also retries a cut body."""
    policy = session.get_adapter(url).max_retries
    while True:
        try:
            return _download(url, timeout, session, bound)
        except requests.exceptions.ChunkedEncodingError as error:
            # urllib3 retries only until the headers arrive; a body cut short after them is
            # retried here under the same policy (count and backoff).
            try:
                policy = policy.increment("GET", url, error=ProtocolError(str(error)))
            except (MaxRetryError, ProtocolError):  # ProtocolError: a policy without retries
                raise _Unusable(f"connection dropped mid-body{_attempts(session, url)}") from None
            policy.sleep()


def _attempts(session: requests.Session, url: str) -> str:
    """` (after N attempts)` when the session's policy made more than one."""
    total = session.get_adapter(url).max_retries.total
    return f" (after {total + 1} attempts)" if isinstance(total, int) and total > 0 else ""


def _download(url: str, timeout: float, session: requests.Session, bound: int | None) -> bytes:
    try:
        with session.get(url, stream=True, timeout=timeout) as response:
            if response.status_code >= 400:
                retried = _attempts(session, url) if response.status_code >= 500 else ""
                raise _Unusable(f"HTTP {response.status_code}{retried}")
            length = response.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
            if bound is not None and total is not None and total > bound:
                raise _Unusable(_too_big(bound))
            body = bytearray()
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc=url.rsplit("/", 1)[-1],
                disable=None,
                leave=False,
            ) as bar:
                for chunk in response.iter_content(CHUNK_BYTES):
                    body.extend(chunk)
                    bar.update(len(chunk))
                    if bound is not None and len(body) > bound:
                        raise _Unusable(_too_big(bound))
            return bytes(body)
    except requests.exceptions.ChunkedEncodingError:
        raise
    except requests.Timeout:
        raise _Unusable(f"timed out after {timeout:g} s{_attempts(session, url)}") from None
    except requests.ConnectionError as error:
        if "timed out" in str(error):
            raise _Unusable(f"timed out after {timeout:g} s{_attempts(session, url)}") from None
        reason = type(error).__name__
        raise _Unusable(f"connection failed ({reason}){_attempts(session, url)}") from None
    except requests.RequestException as error:
        raise _Unusable(f"request failed ({type(error).__name__})") from None


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
