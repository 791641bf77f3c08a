"""Tests of pipeline.training: the batches every fit reads, epoch seeds, the checkpoint cleaner."""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from pipeline.errors import PipelineError
from pipeline.io import remove_owned
from pipeline.training import (
    Checkpoint,
    EpochBatches,
    EpochSeeds,
    epoch_order,
    progress_verbosity,
    seed_generators,
)

IMAGES = 10
BATCH = 4


@pytest.fixture
def arrays() -> tuple[np.ndarray, np.ndarray]:
    """Image i is filled with i and labelled i, so a batch shows which images it holds."""
    x = np.repeat(np.arange(IMAGES, dtype=np.float32), 28 * 28).reshape(IMAGES, 28, 28, 1)
    return x, np.arange(IMAGES, dtype=np.int64)


def epoch(source: EpochBatches, number: int) -> list[np.ndarray]:
    """The label batches of epoch `number`, read through a new iterator as fit does."""
    source.set_epoch(number)
    return [np.asarray(labels) for _, labels in source.data]


def test_each_epoch_holds_every_image_once_in_batches_with_its_label(arrays) -> None:
    source = EpochBatches(*arrays, BATCH, shuffle=True, seed=0)
    for images, labels in source.data:
        assert images.shape[1:] == (28, 28, 1)
        assert (np.asarray(images)[:, 0, 0, 0] == np.asarray(labels)).all()
    for number in range(3):
        batches = epoch(source, number)
        assert [len(labels) for labels in batches] == [4, 4, 2]
        assert sorted(np.concatenate(batches)) == list(range(IMAGES))


def test_epoch_order_depends_only_on_seed_and_epoch(arrays) -> None:
    first = EpochBatches(*arrays, BATCH, shuffle=True, seed=3)
    orders = [np.concatenate(epoch(first, number)).tolist() for number in range(3)]
    assert len({tuple(order) for order in orders}) == 3  # a new order each epoch
    assert list(range(IMAGES)) not in orders
    assert orders == [epoch_order(IMAGES, 3, number).tolist() for number in range(3)]
    # A fit resumed at epoch 2 (a fresh source, epochs 0 and 1 never read) sees the same order.
    resumed = EpochBatches(*arrays, BATCH, shuffle=True, seed=3)
    assert np.concatenate(epoch(resumed, 2)).tolist() == orders[2]
    other_seed = EpochBatches(*arrays, BATCH, shuffle=True, seed=4)
    assert np.concatenate(epoch(other_seed, 2)).tolist() != orders[2]


def test_unshuffled_batches_keep_the_order(arrays) -> None:
    source = EpochBatches(*arrays, BATCH, shuffle=False)
    for number in range(2):
        assert np.concatenate(epoch(source, number)).tolist() == list(range(IMAGES))


def test_tf_data_autotuning_is_off(arrays) -> None:
    # Its tuner thread holds up the end of each epoch by up to a minute (see EpochBatches).
    assert EpochBatches(*arrays, BATCH, shuffle=True).data.options().autotune.enabled is False


def test_epoch_seeds_reseed_dropout_from_seed_and_epoch_only(arrays) -> None:
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dropout(0.5)(keras.layers.Dropout(0.5)(inputs)))
    generators = seed_generators(model)
    assert len(generators) == 2
    callback = EpochSeeds(seed=5, sources=[])
    callback.set_model(model)

    def states(number: int) -> list[list[int]]:
        callback.on_epoch_begin(number)
        return [np.asarray(g.state.value).tolist() for g in generators]

    epoch_one = states(1)
    keras.random.uniform((3,), seed=generators[0])  # draws advance the state...
    assert states(1) == epoch_one  # ...and the next begin of epoch 1 puts it back
    assert states(2) != epoch_one
    assert epoch_one[0] != epoch_one[1]


def test_remove_owned_removes_only_inside_its_owner(tmp_path: Path) -> None:
    owner = tmp_path / "checkpoints"
    (owner / "mlp" / "key").mkdir(parents=True)
    remove_owned(owner / "mlp" / "key", owner)
    assert not (owner / "mlp" / "key").exists()
    for outside in (owner, owner / "..", tmp_path, owner / "mlp" / ".." / ".."):
        with pytest.raises(PipelineError, match="refusing to remove a path outside"):
            remove_owned(outside, owner)
    assert owner.is_dir() and (owner / "mlp").is_dir()


@pytest.mark.parametrize("name", ["..", ".", "../.."])
def test_checkpoint_named_outside_checkpoints_removes_nothing(tmp_path: Path, name: str) -> None:
    repo = tmp_path / "repo"
    precious = [
        repo / ".git" / "HEAD",
        repo / "pipeline" / "x.py",
        repo / "checkpoints" / "a" / "k",
    ]
    for file in precious:
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text("keep")
    checkpoint = Checkpoint(repo / "checkpoints" / name, "fingerprint", repo / "checkpoints")
    with pytest.raises(PipelineError, match="refusing to remove a path outside"):
        checkpoint.start()
    with pytest.raises(PipelineError, match="refusing to remove a path outside"):
        checkpoint.clear()
    assert all(file.read_text() == "keep" for file in precious)


def test_checkpoint_start_forgets_only_its_own_other_fingerprints(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    for folder in (root / "mlp" / "old", root / "cnn" / "other"):
        folder.mkdir(parents=True)
    checkpoint = Checkpoint(root / "mlp", "new", root)
    checkpoint.start()
    assert sorted(p.name for p in (root / "mlp").iterdir()) == ["new"]
    assert (root / "cnn" / "other").is_dir()
    checkpoint.clear()
    assert not (root / "mlp" / "new").exists() and (root / "mlp").is_dir()


@pytest.mark.parametrize(("terminal", "verbose"), [(True, 1), (False, 2)])
def test_progress_bar_on_a_terminal_one_line_per_epoch_otherwise(
    monkeypatch: pytest.MonkeyPatch, terminal: bool, verbose: int
) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: terminal)
    assert progress_verbosity() == verbose


def test_seed_generators_include_the_augmentation_of_the_trainee() -> None:
    from pipeline.augment import RandomAffine, with_augmentation
    from pipeline.config import AugmentConfig

    inputs = keras.Input((28, 28, 1))
    model = keras.Model(inputs, keras.layers.Dropout(0.3)(keras.layers.Flatten()(inputs)))
    trainee = with_augmentation(model, AugmentConfig(rotation=0.03, shift=0.1, zoom=0.1))
    affine = next(layer for layer in trainee.layers if isinstance(layer, RandomAffine))
    generators = seed_generators(trainee)
    assert len(generators) == 2 and affine.seed_generator in generators
