"""The baseline of a comparison: the revision the workspace or experiment started from, and its
test predictions, read through DVC from that revision's outputs (cache or remote), never
retrained or recomputed.
"""

from __future__ import annotations

import io
import json
import logging
import os
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline import champion, paths, provenance

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Baseline:
    """What the baseline revision recorded: test labels, each model's predicted test labels
    (the ensemble's too, blended from its members) and test accuracy."""

    rev: str | None
    labels: np.ndarray | None = None
    predictions: Mapping[str, np.ndarray] = field(default_factory=dict)
    accuracies: Mapping[str, float] = field(default_factory=dict)
    # models the revision evaluated whose predictions are in neither the DVC cache nor a remote
    missing: tuple[str, ...] = ()


def revision() -> str | None:
    """The revision to compare against: the one `dvc exp run` started from, else HEAD."""
    rev = os.environ.get("DVC_EXP_BASELINE_REV") or provenance.head_commit()
    return rev or None


def read(names: Iterable[str], rev: str | None, root: Path = paths.ROOT) -> Baseline:
    """Each named model's test predictions and accuracy at `rev` of the repository at `root`
    (this one unless told), as far as DVC can find them."""
    if rev is None:
        return Baseline(None)
    from dvc.api import DVCFileSystem
    from dvc.exceptions import DvcException
    from scmrepo.exceptions import SCMError

    try:
        # A read-only view of the commit: it takes no repository lock, so it works inside a
        # running `dvc repro` or `dvc exp run` (also --temp, whose copy shares the cache).
        filesystem = DVCFileSystem(str(root), rev=rev)
    except (DvcException, SCMError, OSError) as error:
        log.warning("baseline %s: cannot open it through DVC: %s", rev, error)
        return Baseline(rev)

    def read_bytes(path: Path) -> bytes | None:
        try:
            with filesystem.open(path.relative_to(paths.ROOT).as_posix(), mode="rb") as handle:
                return handle.read()
        except (DvcException, SCMError, OSError) as error:
            log.debug("baseline %s: %s: %s", rev, path, error)
            return None

    labels, probabilities, accuracies, missing = None, {}, {}, []
    for name in names:
        reports = paths.model_reports(name)
        accuracy = _test_accuracy(read_bytes(reports / "metrics.json"))
        if accuracy is None:
            continue  # a model the baseline did not have (or could not score)
        accuracies[name] = accuracy
        arrays = _test_arrays(read_bytes(reports / "probabilities.npz"))
        if arrays is None:
            missing.append(name)
            continue
        probabilities[name] = arrays["test"]
        labels = arrays["y_test"] if labels is None else labels
    predictions = {name: array.argmax(axis=1) for name, array in probabilities.items()}
    ensemble = _ensemble(read_bytes(paths.REPORTS_DIR / "summary.json"))
    if ensemble is not None:
        accuracies[champion.ENSEMBLE], weights = ensemble
        # its members' stored probabilities, blended with the weights it recorded
        if set(weights) <= set(probabilities):
            blended = champion.blend(probabilities, weights)
            predictions[champion.ENSEMBLE] = blended.argmax(axis=1)
        else:
            missing.append(champion.ENSEMBLE)
    return Baseline(rev, labels, predictions, accuracies, tuple(missing))


def _test_accuracy(text: bytes | None) -> float | None:
    """`test_accuracy` of a metrics.json, or None if absent or unreadable."""
    try:
        return float(json.loads(text)["test_accuracy"]) if text else None
    except (ValueError, KeyError, TypeError):
        return None


def _test_arrays(data: bytes | None) -> dict[str, np.ndarray] | None:
    """The test probabilities and labels of a probabilities.npz, or None if unreadable."""
    if not data:
        return None
    try:
        with np.load(io.BytesIO(data)) as arrays:
            return {"test": arrays["test"], "y_test": arrays["y_test"]}
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile):
        return None


def _ensemble(text: bytes | None) -> tuple[float, dict[str, int]] | None:
    """The ensemble's test accuracy and member weights in a summary.json, or None."""
    try:
        ensemble = json.loads(text)["ensemble"] if text else None
        return float(ensemble["test_accuracy"]), dict(ensemble["members"])
    except (ValueError, KeyError, TypeError):
        return None
