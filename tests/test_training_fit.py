"""The fine-tuning loop's moving average of the weights, on a few small synthetic slices (seconds on a CPU)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from training.data import TrainingSet

torch = pytest.importorskip("torch", reason="needs torch (the train extra)")
from training.fit import Recipe, train  # noqa: E402
from training.network import checkpoint_path  # noqa: E402

SIDE = 64
ROWS = 24


@pytest.fixture(scope="module")
def few_slices() -> TrainingSet:
    """Bright blobs (haemorrhage) and plain grey discs (normal), each also in Hounsfield units."""
    generator = np.random.default_rng(7)
    y, x = np.mgrid[:SIDE, :SIDE]
    disc = ((y - SIDE / 2) ** 2 + (x - SIDE / 2) ** 2 < (SIDE / 2.5) ** 2).astype(np.float32)
    bleeding = np.arange(ROWS) % 2 == 1
    hu = np.where(disc > 0, 35.0, -1000.0) + generator.normal(0, 3, (ROWS, SIDE, SIDE))
    hu[bleeding, 20:30, 20:30] = 70.0
    labels = np.full((ROWS, 6), -1.0, dtype=np.float32)
    labels[:, 0] = bleeding
    return TrainingSet(
        pictures=(np.clip(hu / 80.0, 0.0, 1.0) * 2.0 - 1.0).astype(np.float32),
        picture_assessable=np.ones(ROWS, dtype=bool),
        hu=hu.astype(np.float32),
        has_hu=np.ones(ROWS, dtype=bool),
        labels=labels,
        groups=np.array([f"p{index // 4}" for index in range(ROWS)]),
        numbers=np.arange(ROWS) % 4 + 1,
    )


def _head(net: torch.nn.Module) -> torch.Tensor:
    return net._fc.weight.detach().clone()


def test_the_average_follows_the_trained_weights(few_slices: TrainingSet) -> None:
    recipe = Recipe(epochs=3, warmup_epochs=1, negatives_per_epoch=12, batch_size=8, weight_average=0.5)
    averaged = _head(train(few_slices, recipe, checkpoint_path()))
    plain = _head(train(few_slices, dataclasses.replace(recipe, weight_average=0.0), checkpoint_path()))
    start = _head(train(few_slices, dataclasses.replace(recipe, epochs=1), checkpoint_path()))

    assert not torch.equal(averaged, plain)  # an average, not the last step
    assert (averaged - plain).norm() < (start - plain).norm()  # of the weights after warm-up, not before


def test_warm_up_alone_returns_the_trained_network(few_slices: TrainingSet) -> None:
    recipe = Recipe(epochs=1, warmup_epochs=1, negatives_per_epoch=12, batch_size=8, weight_average=0.9)
    averaged = _head(train(few_slices, recipe, checkpoint_path()))
    plain = _head(train(few_slices, dataclasses.replace(recipe, weight_average=0.0), checkpoint_path()))

    assert torch.equal(averaged, plain)


def test_picture_only_weight_weighs_only_picture_only_slices(few_slices: TrainingSet) -> None:
    recipe = Recipe(epochs=1, warmup_epochs=1, negatives_per_epoch=12, batch_size=8, weight_average=0.0,
                    picture_only_weight=1.0)
    heavier = dataclasses.replace(recipe, picture_only_weight=3.0)
    assert torch.equal(_head(train(few_slices, recipe, checkpoint_path())),
                       _head(train(few_slices, heavier, checkpoint_path())))

    half_pictures = dataclasses.replace(few_slices, has_hu=np.arange(ROWS) % 4 < 2)
    assert not torch.equal(_head(train(half_pictures, recipe, checkpoint_path())),
                           _head(train(half_pictures, heavier, checkpoint_path())))
