"""Section 2: seconds per training epoch of every architecture, extrapolated from a subset."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pipeline import data, paths
from pipeline.config import ModelSpec, Params
from tools.bench.measure import subset_size, summary
from tools.bench.sections import BUDGET_SECONDS
from tools.bench.trials import REPEATS, EpochTrial, clear_keras, fresh_model

if TYPE_CHECKING:  # TensorFlow, Keras and MLflow are imported only where they are used
    from pipeline.runner import Runtime

log = logging.getLogger("tools.bench")

EPOCH_IMAGES_MAX = 10_240
EPOCH_IMAGES_MIN = 2_560


def epoch_times(
    params: Params,
    runtime: Runtime,
    repeats: int = REPEATS,
    budget_s: float = BUDGET_SECONDS["epochs"],
) -> dict[str, Any]:
    """Seconds per training epoch and images/s of every model, extrapolated from a subset."""
    dataset = data.load_dataset(paths.DATASET)
    full = len(dataset["y_train"])
    keep = data.stratified_subset(dataset["y_train"], EPOCH_IMAGES_MAX, params.seed)
    x_train, y_train = dataset["x_train"][keep], dataset["y_train"][keep]
    # Warm-up, probe and the timed epochs take about repeats + 2 epochs per model.
    target_s = budget_s / (len(params.models) * (repeats + 2))
    models = []
    for name, spec in params.models.items():
        batch = spec.train.batch_size
        log.info("  %s", name)
        # Built for the whole training split (its schedule), timed on the subset.
        model, trainee = fresh_model(params, spec, dataset, runtime)
        trial = EpochTrial(trainee, x_train, y_train, batch, params.seed)
        trial.warm_up()
        images = subset_size(trial.probe(), target_s, batch, EPOCH_IMAGES_MIN, len(y_train))
        trial.use(images)
        runs = [trial.epoch() for _ in range(repeats)]
        models.append(epoch_row(spec, int(model.count_params()), images, full, runs))
        clear_keras()
    return {
        "full_train_images": full,
        "repeats": repeats,
        "target_epoch_s": target_s,
        "models": models,
    }


def epoch_row(
    spec: ModelSpec, parameters: int, images: int, full: int, runs: Sequence[Mapping[str, float]]
) -> dict[str, Any]:
    """One model's figures: median seconds over `images`, extrapolated to `full` images."""
    seconds = summary(runs, "wall_s")
    return {
        "name": spec.name,
        "kind": spec.kind,
        "batch_size": spec.train.batch_size,
        "parameters": parameters,
        "subset_images": images,
        "epoch_s_subset": seconds,
        "epoch_s_full": seconds["median"] * full / images,
        "images_per_s": images / seconds["median"],
    }
