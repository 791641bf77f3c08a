"""Turn the raw IDX files into one normalised, stratified train/validation/test data set.

Reads: data/raw/<four IDX files>; params data.files, data.image_shape, data.num_classes,
preprocess.* (normalize, validation_fraction, train_limit) and seed.
Writes: data/processed/dataset.npz (float32 images [N, H, W, 1], int64 labels, mean, std, method).
"""

from __future__ import annotations

import logging

from pipeline.config import Params
from pipeline.entry import run_stage

log = logging.getLogger("pipeline.stages.preprocess")


def main(params: Params) -> None:
    """Subset (optional), split, normalise with training statistics, save."""
    import numpy as np

    from pipeline import paths
    from pipeline.data import (
        load_raw,
        normalize,
        save_dataset,
        stratified_split,
        stratified_subset,
    )

    data, prep = params.data, params.preprocess
    pool_x, pool_y, test_x, test_y = load_raw(
        paths.RAW_DIR, data.files, data.image_shape, data.num_classes
    )
    keep = stratified_subset(pool_y, prep.train_limit, params.seed)
    pool_x, pool_y = pool_x[keep], pool_y[keep]
    train_idx, val_idx = stratified_split(pool_y, prep.validation_fraction, params.seed)
    (x_train, x_val, x_test), mean, std = normalize(
        pool_x[train_idx], pool_x[val_idx], test_x, method=prep.normalize
    )
    save_dataset(
        paths.DATASET,
        x_train=x_train,
        y_train=pool_y[train_idx].astype(np.int64),
        x_val=x_val,
        y_val=pool_y[val_idx].astype(np.int64),
        x_test=x_test,
        y_test=test_y.astype(np.int64),
        mean=mean,
        std=std,
        normalize=prep.normalize,
    )
    log.info(
        "wrote %s: train %s, validation %s, test %s (%s: mean %.4f, std %.4f)",
        paths.DATASET,
        x_train.shape,
        x_val.shape,
        x_test.shape,
        prep.normalize,
        mean,
        std,
    )


if __name__ == "__main__":
    run_stage(main, __doc__, loads_keras=False)
