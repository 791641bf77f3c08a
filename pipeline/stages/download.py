"""Download the four MNIST IDX files and store them decompressed and checksum-verified.

Reads: params data.* (mirrors, files with sha256, timeout, retries, backoff, max_idx_bytes);
$MNIST_MIRROR, a local folder or URL prefix tried before the mirrors.
Writes: data/raw/<name without .gz> for each of the four files, each written atomically.
"""

from __future__ import annotations

import dataclasses
import logging

from pipeline.config import Params
from pipeline.entry import run_stage

log = logging.getLogger("pipeline.stages.download")


def main(params: Params) -> None:
    """Fetch, verify and store each raw file."""
    from pipeline import paths
    from pipeline.data import fetch, raw_name, sources
    from pipeline.io import write_bytes

    data = params.data
    mirrors = sources(data.mirrors)
    for role in dataclasses.fields(data.files):
        file = getattr(data.files, role.name)
        content = fetch(
            file.name,
            file.sha256,
            mirrors,
            timeout=data.timeout_seconds,
            retries=data.retries,
            backoff=data.backoff_seconds,
            max_bytes=data.max_idx_bytes,
        )
        target = paths.RAW_DIR / raw_name(file.name)
        write_bytes(target, content)
        log.info("wrote %s (%s bytes)", target, f"{len(content):,}")


if __name__ == "__main__":
    run_stage(main, __doc__, loads_keras=False)
