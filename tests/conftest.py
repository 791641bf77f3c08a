"""Shared fixtures; the helpers they use (and tests import) are in tests/support.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import DataError
from tests.support import mnist_mirror


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The local MNIST copy, or skip: it cannot be downloaded here."""
    try:
        return mnist_mirror()
    except DataError:
        pytest.skip("no MNIST copy: set MNIST_MIRROR to a folder with the four IDX .gz files")
