"""Tests of pipeline.data and the download and preprocess stages (no network beyond 127.0.0.1)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import paths
from pipeline.config import DataFile, DataFiles, Params, load_params
from pipeline.data import (
    decompress,
    fetch,
    load_dataset,
    load_raw,
    normalize,
    parse_idx,
    raw_name,
    save_dataset,
    sources,
    stratified_split,
    stratified_subset,
)
from pipeline.errors import DataError
from pipeline.stages import download, preprocess

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file holding uint8 `array`."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim])
    header += b"".join(size.to_bytes(4, "big") for size in array.shape)
    return header + array.tobytes()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def mnist_folder() -> Path:
    """The local MNIST copy: $MNIST_MIRROR, else ../shared/data/mnist beside the repo."""
    override = os.environ.get("MNIST_MIRROR", "").strip()
    return Path(override) if override else Path(__file__).parents[2] / "shared" / "data" / "mnist"


# ---------------------------------------------------------------------------- parse_idx


def test_parse_idx_reads_shape_and_values() -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    parsed = parse_idx(idx_bytes(images), "f")
    assert parsed.dtype == np.uint8
    np.testing.assert_array_equal(parsed, images)
    np.testing.assert_array_equal(parse_idx(idx_bytes([7, 1, 9]), "f"), [7, 1, 9])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x00", "too short for an IDX header"),
        (b"\x01\x00\x08\x01" + (1).to_bytes(4, "big") + b"x", "not an IDX file"),
        (b"\x00\x00\x0d\x01" + (1).to_bytes(4, "big") + b"x", "item type 0x0d is not supported"),
        (b"\x00\x00\x08\x00", "declares 0 dimensions, expected 1 to 4"),
        (b"\x00\x00\x08\x05" + bytes(20), "declares 5 dimensions, expected 1 to 4"),
        (b"\x00\x00\x08\x03" + (2).to_bytes(4, "big"), "IDX header cut short (8 of 16 bytes)"),
    ],
)
def test_parse_idx_rejects_bad_headers(data: bytes, message: str) -> None:
    with pytest.raises(DataError, match="^some/file: ") as caught:
        parse_idx(data, "some/file")
    assert message in str(caught.value)


def test_parse_idx_rejects_truncated_payload() -> None:
    data = idx_bytes(np.zeros((3, 4)))
    with pytest.raises(DataError, match="^f.idx: header says 12 items, file holds 11$"):
        parse_idx(data[:-1], "f.idx")


def test_parse_idx_rejects_trailing_bytes() -> None:
    data = idx_bytes(np.zeros((3, 4)))
    with pytest.raises(DataError, match=r"header says 12 items, file holds 14 \(2 trailing"):
        parse_idx(data + b"\x00\x00", "f.idx")


def test_parse_idx_rejects_an_empty_shape_too_big_for_numpy() -> None:
    data = b"\x00\x00\x08\x04" + (0).to_bytes(4, "big") + (2**32 - 1).to_bytes(4, "big") * 3
    with pytest.raises(DataError, match=r"^f: IDX shape \[0, 4294967295, .*\] is not usable"):
        parse_idx(data, "f")
    assert parse_idx(b"\x00\x00\x08\x02" + bytes(8), "f").shape == (0, 0)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_parse_idx_on_random_bytes_returns_an_array_or_raises_data_error(data: bytes) -> None:
    try:
        result = parse_idx(data, "fuzz")
    except DataError as error:
        assert str(error).startswith("fuzz: ") and "\n" not in str(error)
    else:
        assert isinstance(result, np.ndarray)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 6), st.binary(max_size=40))
def test_parse_idx_on_random_payloads_after_a_valid_prefix(ndim: int, rest: bytes) -> None:
    try:
        result = parse_idx(bytes([0, 0, 8, ndim]) + rest, "fuzz")
    except DataError as error:
        assert str(error).startswith("fuzz: ")
    else:
        assert result.ndim == ndim and result.size == len(rest) - 4 * ndim


# ---------------------------------------------------------------------------- decompress


def test_decompress_gunzips_gzip_and_passes_plain_bytes() -> None:
    plain = idx_bytes(np.arange(10))
    assert decompress(gzip.compress(plain), "f") == plain
    assert decompress(plain, "f") == plain


def test_decompress_rejects_truncated_gzip() -> None:
    packed = gzip.compress(idx_bytes(np.arange(1000) % 256))
    with pytest.raises(DataError, match=r"^http://x/f.gz: corrupt or truncated gzip"):
        decompress(packed[: len(packed) // 2], "http://x/f.gz")


@pytest.mark.parametrize(
    "page", [b"<!DOCTYPE html><html></html>", b"\n  <html><body>moved</body></html>"]
)
def test_decompress_rejects_html_pages_plain_or_gzipped(page: bytes) -> None:
    for data in (page, gzip.compress(page)):
        with pytest.raises(DataError, match="^src: got an HTML page, not an IDX file$"):
            decompress(data, "src")


def test_raw_name_drops_only_a_trailing_gz() -> None:
    assert raw_name("train-images-idx3-ubyte.gz") == "train-images-idx3-ubyte"
    assert raw_name("t10k-labels-idx1-ubyte") == "t10k-labels-idx1-ubyte"


def test_sources_put_mnist_mirror_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNIST_MIRROR", "/local/mnist")
    assert sources(("https://a/", "https://b/")) == ["/local/mnist", "https://a/", "https://b/"]
    monkeypatch.setenv("MNIST_MIRROR", "")
    assert sources(("https://a/",)) == ["https://a/"]
    monkeypatch.delenv("MNIST_MIRROR")
    assert sources(()) == []


# ---------------------------------------------------------------------------- fetch: folders


@pytest.fixture()
def labels_file() -> tuple[bytes, str]:
    """A small IDX label file and the SHA-256 of its bytes."""
    plain = idx_bytes(np.arange(100) % 10)
    return plain, sha256(plain)


def test_fetch_from_a_local_folder_gzipped_or_plain(
    tmp_path: Path, labels_file: tuple[bytes, str]
) -> None:
    plain, digest = labels_file
    (tmp_path / "labels.gz").write_bytes(gzip.compress(plain))
    (tmp_path / "labels").write_bytes(plain)
    assert fetch("labels.gz", digest, [str(tmp_path)], 1.0, 1, 0.0) == plain
    assert fetch("labels", digest, [f"{tmp_path}/"], 1.0, 1, 0.0) == plain
    assert fetch("labels.gz", digest, [tmp_path.as_uri() + "/"], 1.0, 1, 0.0) == plain


def test_fetch_falls_through_a_checksum_mismatch(
    tmp_path: Path, labels_file: tuple[bytes, str]
) -> None:
    plain, digest = labels_file
    wrong, right = tmp_path / "wrong", tmp_path / "right"
    wrong.mkdir()
    right.mkdir()
    (wrong / "labels.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(100))))
    (right / "labels.gz").write_bytes(gzip.compress(plain))
    assert fetch("labels.gz", digest, [str(wrong), str(right)], 1.0, 3, 0.0) == plain


def test_fetch_error_lists_every_source_on_one_line(
    tmp_path: Path, labels_file: tuple[bytes, str]
) -> None:
    _, digest = labels_file
    wrong_digest = sha256(idx_bytes(np.zeros(100)))
    (tmp_path / "labels.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(100))))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as caught:
        fetch("labels.gz", digest, [str(tmp_path), str(empty)], 1.0, 3, 0.0)
    assert str(caught.value) == (
        f"could not fetch labels.gz: {tmp_path}/labels.gz: sha256 mismatch "
        f"(got {wrong_digest[:12]}..., want {digest}); {empty}/labels.gz: no such file"
    )


def test_fetch_with_no_sources_says_so() -> None:
    with pytest.raises(DataError, match="could not fetch f.gz: no sources"):
        fetch("f.gz", "0" * 64, [], 1.0, 1, 0.0)


# ---------------------------------------------------------------------------- fetch: HTTP


class MirrorServer:
    """A local HTTP server whose first path segment picks a behaviour for every file."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.hits: Counter[str] = Counter()
        self.release = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server hook name
                server.hits[self.path] += 1
                _, mode, name = self.path.split("/", 2)
                body = server.files.get(name)
                if body is None or mode == "missing":
                    self.send_error(404)
                elif mode == "down" or (mode == "flaky" and server.hits[self.path] == 1):
                    self.send_error(503)
                elif mode == "html":
                    self.reply(b"<!DOCTYPE html><html><body>Not here</body></html>")
                elif mode == "truncated":
                    self.reply(body[: len(body) // 2])
                elif mode == "broken":  # promise the whole body, send half, hang up
                    self.reply(body[: len(body) // 2], length=len(body))
                    self.close_connection = True
                elif mode == "slow":  # answer only once the test is over
                    server.release.wait(10)
                else:
                    self.reply(body)

            def reply(self, body: bytes, length: int | None = None) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(length or len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # clients that gave up
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def prefix(self, mode: str) -> str:
        return f"{self.url}/{mode}/"


@pytest.fixture()
def mirror(labels_file: tuple[bytes, str]) -> Iterator[MirrorServer]:
    server = MirrorServer({"labels.gz": gzip.compress(labels_file[0])})
    server.thread.start()
    yield server
    server.release.set()
    server.httpd.shutdown()
    server.httpd.server_close()


def test_fetch_http_falls_through_404_html_and_truncated_gzip(
    mirror: MirrorServer, labels_file: tuple[bytes, str]
) -> None:
    plain, digest = labels_file
    modes = ["missing", "html", "truncated", "good"]
    result = fetch("labels.gz", digest, [mirror.prefix(m) for m in modes], 2.0, 3, 0.0)
    assert result == plain
    assert all(mirror.hits[f"/{m}/labels.gz"] == 1 for m in modes)  # none retried


def test_fetch_http_error_names_each_url_and_reason(
    mirror: MirrorServer, labels_file: tuple[bytes, str]
) -> None:
    _, digest = labels_file
    modes = ["missing", "html", "truncated"]
    with pytest.raises(DataError) as caught:
        fetch("labels.gz", digest, [mirror.prefix(m) for m in modes], 2.0, 3, 0.0)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(
        f"could not fetch labels.gz: {mirror.url}/missing/labels.gz: HTTP 404; "
        f"{mirror.url}/html/labels.gz: got an HTML page, not an IDX file; "
        f"{mirror.url}/truncated/labels.gz: corrupt or truncated gzip"
    )


def test_fetch_http_retries_5xx_with_exponential_backoff(
    mirror: MirrorServer, labels_file: tuple[bytes, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    plain, digest = labels_file
    pauses: list[float] = []
    monkeypatch.setattr(time, "sleep", pauses.append)
    assert fetch("labels.gz", digest, [mirror.prefix("flaky")], 2.0, 3, 0.5) == plain
    assert mirror.hits["/flaky/labels.gz"] == 2 and pauses == []  # urllib3: none before the first

    pauses.clear()
    with pytest.raises(DataError, match=r"down/labels.gz: HTTP 503 \(after 3 attempts\)$"):
        fetch("labels.gz", digest, [mirror.prefix("down")], 2.0, 3, 0.5)
    assert mirror.hits["/down/labels.gz"] == 3 and pauses == [1.0]  # then backoff * 2


def test_fetch_http_retries_a_dropped_connection(
    mirror: MirrorServer, labels_file: tuple[bytes, str]
) -> None:
    plain, digest = labels_file
    sources = [mirror.prefix("broken"), mirror.prefix("good")]
    assert fetch("labels.gz", digest, sources, 2.0, 2, 0.0) == plain
    assert mirror.hits["/broken/labels.gz"] == 2


def test_fetch_http_timeout_is_retried_then_falls_through(
    mirror: MirrorServer, labels_file: tuple[bytes, str]
) -> None:
    plain, digest = labels_file
    sources = [mirror.prefix("slow"), mirror.prefix("good")]
    assert fetch("labels.gz", digest, sources, 0.2, 2, 0.0) == plain
    assert mirror.hits["/slow/labels.gz"] == 2
    with pytest.raises(DataError, match=r"slow/labels.gz: timed out after 0.2 s \(after 2 "):
        fetch("labels.gz", digest, [mirror.prefix("slow")], 0.2, 2, 0.0)


# ---------------------------------------------------------------------------- load_raw


def small_files() -> DataFiles:
    names = ("train-images.gz", "train-labels.gz", "test-images.gz", "test-labels.gz")
    return DataFiles(*(DataFile(name, "0" * 64) for name in names))


def write_raw(
    folder: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]
) -> None:
    files = small_files()
    for file, array in zip(
        (files.train_images, files.train_labels, files.test_images, files.test_labels),
        (*train, *test),
        strict=True,
    ):
        (folder / raw_name(file.name)).write_bytes(idx_bytes(array))


def synthetic(n: int, shape: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    return images, (np.arange(n) % 10).astype(np.uint8)


def test_load_raw_returns_the_four_arrays(tmp_path: Path) -> None:
    train, test = synthetic(30, (4, 5), 0), synthetic(10, (4, 5), 1)
    write_raw(tmp_path, train, test)
    loaded = load_raw(tmp_path, small_files(), (4, 5), 10)
    for got, want in zip(loaded, (*train, *test), strict=True):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, want)


def test_load_raw_rejects_a_count_mismatch(tmp_path: Path) -> None:
    images, labels = synthetic(30, (4, 5), 0)
    write_raw(tmp_path, (images, labels[:29]), synthetic(10, (4, 5), 1))
    with pytest.raises(DataError) as caught:
        load_raw(tmp_path, small_files(), (4, 5), 10)
    assert str(caught.value) == (
        f"{tmp_path}/train-images holds 30 images but {tmp_path}/train-labels holds 29 labels"
    )


def test_load_raw_rejects_a_label_out_of_range(tmp_path: Path) -> None:
    images, labels = synthetic(10, (4, 5), 1)
    labels[7] = 12
    write_raw(tmp_path, synthetic(30, (4, 5), 0), (images, labels))
    with pytest.raises(DataError, match=r"test-labels: label 12 at index 7 is outside \[0, 10\)"):
        load_raw(tmp_path, small_files(), (4, 5), 10)


def test_load_raw_rejects_a_wrong_image_shape(tmp_path: Path) -> None:
    write_raw(tmp_path, synthetic(30, (4, 5), 0), synthetic(10, (4, 5), 1))
    with pytest.raises(DataError, match=r"expected images of shape \[N, 28, 28\], got \[30, 4, 5"):
        load_raw(tmp_path, small_files(), (28, 28), 10)


def test_load_raw_names_a_missing_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="train-images: missing; run `dvc repro download`"):
        load_raw(tmp_path, small_files(), (4, 5), 10)


# ---------------------------------------------------------------------------- splits


@pytest.fixture()
def mnist_like_labels() -> np.ndarray:
    labels = np.repeat(np.arange(10), MNIST_TRAIN_COUNTS).astype(np.uint8)
    return np.random.default_rng(7).permutation(labels)


def test_stratified_split_is_exact_and_proportional(mnist_like_labels: np.ndarray) -> None:
    train_idx, val_idx = stratified_split(mnist_like_labels, 0.15, seed=42)
    assert (len(train_idx), len(val_idx)) == (51_000, 9_000)
    assert np.intersect1d(train_idx, val_idx).size == 0
    np.testing.assert_array_equal(np.union1d(train_idx, val_idx), np.arange(60_000))
    per_class = np.bincount(mnist_like_labels[val_idx], minlength=10)
    assert np.all(np.abs(per_class - 0.15 * np.array(MNIST_TRAIN_COUNTS)) <= 1)


def test_stratified_split_is_deterministic_for_a_seed(mnist_like_labels: np.ndarray) -> None:
    first = stratified_split(mnist_like_labels, 0.15, seed=42)
    again = stratified_split(mnist_like_labels, 0.15, seed=42)
    other = stratified_split(mnist_like_labels, 0.15, seed=43)
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


def test_stratified_split_refuses_an_empty_side() -> None:
    with pytest.raises(DataError, match="cannot split 3 images"):
        stratified_split(np.array([0, 1, 2]), 0.1, seed=0)


def test_stratified_subset(mnist_like_labels: np.ndarray) -> None:
    np.testing.assert_array_equal(stratified_subset(mnist_like_labels, 0, 1), np.arange(60_000))
    subset = stratified_subset(mnist_like_labels, 1000, seed=1)
    assert len(subset) == 1000 == len(np.unique(subset))
    per_class = np.bincount(mnist_like_labels[subset], minlength=10)
    assert np.all(np.abs(per_class - 1000 * np.array(MNIST_TRAIN_COUNTS) / 60_000) <= 1)
    np.testing.assert_array_equal(subset, stratified_subset(mnist_like_labels, 1000, seed=1))


# ---------------------------------------------------------------------------- normalize


def test_normalize_scale() -> None:
    train, _ = synthetic(50, (6, 7), 0)
    test, _ = synthetic(20, (6, 7), 1)
    (x_train, x_test), mean, std = normalize(train, test, method="scale")
    assert (mean, std) == (0.0, 1.0)
    assert x_train.dtype == x_test.dtype == np.float32
    assert x_train.shape == (50, 6, 7, 1) and x_test.shape == (20, 6, 7, 1)
    np.testing.assert_allclose(x_test[..., 0], test / 255, rtol=1e-6)


def test_normalize_standardize_uses_training_statistics() -> None:
    train, _ = synthetic(50, (6, 7), 0)
    test = np.full((5, 6, 7), 200, dtype=np.uint8)
    (x_train, x_test), mean, std = normalize(train, test, method="standardize")
    assert x_train.dtype == x_test.dtype == np.float32 and x_test.shape == (5, 6, 7, 1)
    assert abs(float(x_train.mean())) < 1e-5 and abs(float(x_train.std()) - 1) < 1e-5
    assert mean == pytest.approx(train.mean() / 255) and std == pytest.approx(train.std() / 255)
    np.testing.assert_allclose(x_test, (200 / 255 - mean) / std, rtol=1e-5)


def test_normalize_rejects_constant_images_and_unknown_methods() -> None:
    with pytest.raises(DataError, match="cannot standardize"):
        normalize(np.zeros((3, 2, 2), np.uint8), method="standardize")
    with pytest.raises(ValueError, match="scale or standardize"):
        normalize(np.zeros((3, 2, 2), np.uint8), method="minmax")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- processed data set


def dataset_arrays() -> dict[str, object]:
    rng = np.random.default_rng(0)
    arrays: dict[str, object] = {}
    for split, n in (("train", 8), ("val", 2), ("test", 3)):
        arrays[f"x_{split}"] = rng.random((n, 28, 28, 1), dtype=np.float32)
        arrays[f"y_{split}"] = rng.integers(0, 10, n)
    return {**arrays, "mean": 0.13, "std": 0.31, "normalize": "standardize"}


def test_save_and_load_dataset_round_trip(tmp_path: Path) -> None:
    arrays = dataset_arrays()
    save_dataset(tmp_path / "dataset.npz", **arrays)
    assert [p.name for p in tmp_path.iterdir()] == ["dataset.npz"]  # no temp file left
    loaded = load_dataset(tmp_path / "dataset.npz")
    assert (loaded["mean"], loaded["std"], loaded["normalize"]) == (0.13, 0.31, "standardize")
    for key in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(loaded[key], arrays[key])
    assert loaded["x_train"].dtype == np.float32


def test_load_dataset_names_a_missing_or_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "dataset.npz"
    with pytest.raises(DataError, match="dataset.npz: missing; run `dvc repro preprocess`"):
        load_dataset(path)
    save_dataset(path, **dataset_arrays())
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match="not a readable data set .*; run `dvc repro preprocess`"):
        load_dataset(path)


def test_save_dataset_needs_every_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly the keys"):
        save_dataset(tmp_path / "d.npz", x_train=np.zeros(1))


# ---------------------------------------------------------------------------- real MNIST copy


@pytest.mark.skipif(not mnist_folder().is_dir(), reason="no local MNIST copy")
def test_real_mnist_copy_verifies_and_parses() -> None:
    files = load_params().data.files
    shapes = {}
    for file in (files.train_images, files.train_labels, files.test_images, files.test_labels):
        data = fetch(file.name, file.sha256, [str(mnist_folder())], 5.0, 1, 0.0)
        shapes[file.name] = parse_idx(data, file.name).shape
    assert list(shapes.values()) == [(60000, 28, 28), (60000,), (10000, 28, 28), (10000,)]


# ---------------------------------------------------------------------------- stages


def small_params(raw: dict[str, bytes], train_limit: int = 0) -> Params:
    """The repo's params with four small synthetic files and no public mirrors."""
    params = load_params()
    names = list(raw)
    files = DataFiles(*(DataFile(name, sha256(decompress(raw[name], name))) for name in names))
    data = dataclasses.replace(params.data, files=files, mirrors=(), retries=1)
    prep = dataclasses.replace(params.preprocess, train_limit=train_limit)
    return dataclasses.replace(params, data=data, preprocess=prep)


def synthetic_mirror(folder: Path) -> dict[str, bytes]:
    (train_x, train_y), (test_x, test_y) = synthetic(200, (28, 28), 0), synthetic(50, (28, 28), 1)
    raw = {
        "train-images.gz": gzip.compress(idx_bytes(train_x)),
        "train-labels.gz": gzip.compress(idx_bytes(train_y)),
        "test-images.gz": gzip.compress(idx_bytes(test_x)),
        "test-labels": idx_bytes(test_y),
    }
    folder.mkdir()
    for name, content in raw.items():
        (folder / name).write_bytes(content)
    return raw


def test_download_stage_writes_the_four_verified_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = synthetic_mirror(tmp_path / "mirror")
    monkeypatch.setenv("MNIST_MIRROR", str(tmp_path / "mirror"))
    monkeypatch.setattr(paths, "RAW_DIR", tmp_path / "raw")
    download.main(small_params(raw))
    written = sorted(p.name for p in (tmp_path / "raw").iterdir())
    assert written == ["test-images", "test-labels", "train-images", "train-labels"]
    for name, content in raw.items():
        assert (tmp_path / "raw" / raw_name(name)).read_bytes() == decompress(content, name)


def test_download_stage_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = synthetic_mirror(tmp_path / "mirror")
    params = small_params(raw)
    (tmp_path / "mirror" / "test-images.gz").write_bytes(b"\x1f\x8b truncated")
    monkeypatch.setenv("MNIST_MIRROR", str(tmp_path / "mirror"))
    monkeypatch.setattr(paths, "RAW_DIR", tmp_path / "raw")
    with pytest.raises(DataError, match="could not fetch test-images.gz: .*corrupt or truncated"):
        download.main(params)
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == [
        "train-images",
        "train-labels",
    ]


def test_preprocess_stage_writes_a_stratified_normalised_data_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = synthetic_mirror(tmp_path / "mirror")
    monkeypatch.setenv("MNIST_MIRROR", str(tmp_path / "mirror"))
    monkeypatch.setattr(paths, "RAW_DIR", tmp_path / "raw")
    monkeypatch.setattr(paths, "DATASET", tmp_path / "processed" / "dataset.npz")
    params = small_params(raw, train_limit=100)
    download.main(params)
    preprocess.main(params)
    dataset = load_dataset(tmp_path / "processed" / "dataset.npz")
    assert dataset["x_train"].shape == (85, 28, 28, 1) and dataset["x_val"].shape[0] == 15
    assert dataset["x_test"].shape == (50, 28, 28, 1) and dataset["y_test"].dtype == np.int64
    assert np.bincount(dataset["y_val"], minlength=10).tolist() == [2] * 5 + [1] * 5
    assert dataset["normalize"] == params.preprocess.normalize
