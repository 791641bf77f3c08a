"""Section 5: loading the raw IDX files against loading the processed .npz."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline import data, paths
from pipeline.config import Params
from tools.bench.measure import alternating_order, interleave, summary, timed, verdict

INPUT_REPEATS = 5
INPUT_GOAL_SECONDS = 2.0


def input_pipeline(
    params: Params,
    repeats: int = INPUT_REPEATS,
    raw_dir: Path | None = None,
    dataset: Path | None = None,
) -> dict[str, Any]:
    """Seconds to read + normalise the raw IDX files, and to load the processed .npz."""
    raw_dir = raw_dir or paths.RAW_DIR
    dataset = dataset or paths.DATASET
    config = params.data

    def raw() -> dict[str, float]:
        with timed() as figures:
            train_x, _, test_x, _ = data.load_raw(
                raw_dir, config.files, config.image_shape, config.num_classes
            )
            data.normalize(train_x, test_x, method=params.preprocess.normalize)
        return figures

    def processed() -> dict[str, float]:
        with timed() as figures:
            data.load_dataset(dataset)
        return figures

    raw()  # warm the page cache: every timed run then reads from memory
    processed()
    runs = interleave({"raw": raw, "processed": processed}, repeats)
    return input_result(runs, params.preprocess.normalize)


def input_result(
    runs: Mapping[str, Sequence[Mapping[str, float]]], normalize: str
) -> dict[str, Any]:
    """Wall and CPU medians of both loads, each against the goal."""
    repeats = len(runs["raw"])
    result: dict[str, Any] = {
        "repeats": repeats,
        "order": alternating_order(list(runs), repeats),
        "goal_s": INPUT_GOAL_SECONDS,
        "normalize": normalize,
    }
    for side in runs:
        result[f"{side}_wall_s"] = summary(runs[side], "wall_s")
        result[f"{side}_cpu_s"] = summary(runs[side], "cpu_s")
        result[f"{side}_verdict"] = verdict(result[f"{side}_wall_s"]["median"], INPUT_GOAL_SECONDS)
    return result
