"""Tests of pipeline.training.batches: the input pipeline every fit of the pipeline reads."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from pipeline.training import batches

IMAGES = 10
BATCH = 4


@pytest.fixture
def arrays() -> tuple[np.ndarray, np.ndarray]:
    """Image i is filled with i and labelled i, so a batch shows which images it holds."""
    x = np.repeat(np.arange(IMAGES, dtype=np.float32), 28 * 28).reshape(IMAGES, 28, 28, 1)
    return x, np.arange(IMAGES, dtype=np.int64)


def epochs(dataset: object, count: int) -> list[list[np.ndarray]]:
    """The label batches of `count` passes over the dataset, each pass a new iterator."""
    return [[labels.numpy() for _, labels in dataset] for _ in range(count)]


def test_each_epoch_holds_every_image_once_in_batches_with_its_label(arrays) -> None:
    keras.utils.set_random_seed(0)
    for images, labels in batches(*arrays, BATCH, shuffle=True):
        assert images.shape[1:] == (28, 28, 1)
        assert (images.numpy()[:, 0, 0, 0] == labels.numpy()).all()
    for epoch in epochs(batches(*arrays, BATCH, shuffle=True), 3):
        assert [len(labels) for labels in epoch] == [4, 4, 2]
        assert sorted(np.concatenate(epoch)) == list(range(IMAGES))


def test_shuffled_batches_change_order_each_epoch_and_repeat_with_the_seed(arrays) -> None:
    def orders() -> list[list[int]]:
        keras.utils.set_random_seed(0)
        shuffled = batches(*arrays, BATCH, shuffle=True)
        return [np.concatenate(epoch).tolist() for epoch in epochs(shuffled, 3)]

    first, again = orders(), orders()
    assert first == again
    assert len({tuple(order) for order in first}) == 3
    assert list(range(IMAGES)) not in first


def test_unshuffled_batches_keep_the_order(arrays) -> None:
    for epoch in epochs(batches(*arrays, BATCH, shuffle=False), 2):
        assert np.concatenate(epoch).tolist() == list(range(IMAGES))


def test_tf_data_autotuning_is_off(arrays) -> None:
    # Its tuner thread holds up the end of each epoch by up to a minute (see batches()).
    assert batches(*arrays, BATCH, shuffle=True).options().autotune.enabled is False
