"""Fine-tuning the pretrained network on the training set, deterministically."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from training.augment import Augmentation, augment, random_window
from training.data import UNKNOWN, TrainingSet
from training.network import HaemorrhageNet, pretrained_network

log = logging.getLogger(__name__)

THREADS = 2


@dataclass(frozen=True)
class Recipe:
    """How one model is trained. The first `warmup_epochs` train only the blocks after `frozen_blocks_warmup`
    and the classifier; the stem stays ImageNet's throughout.

    Each epoch sees every haemorrhage slice, every picture-only slice, and `negatives_per_epoch` other normal
    slices drawn afresh (a scan is mostly normal slices, many of them alike); each scanner slice comes either as
    its exported picture or as its Hounsfield units through a random window (`hu_share` of the time).
    """

    epochs: int = 12
    warmup_epochs: int = 1
    frozen_blocks_warmup: int = 16  # MBConv blocks left as pretrained during warm-up (all: only the head learns)
    frozen_blocks: int = 0  # and afterwards: every block adapts to CT's grey levels and textures
    negatives_per_epoch: int = 600
    every_picture_slice: bool = True  # picture-only slices are all seen each epoch, not drawn with the normals
    hu_share: float = 0.5
    type_loss_weight: float = 0.5
    picture_only_weight: float = 3.0  # haemorrhage-loss weight of a picture-only collection's slices
    batch_size: int = 32
    learning_rate: float = 5e-4
    weight_decay: float = 1e-4
    dropout: float = 0.2
    weight_average: float = 0.99  # decay of a moving average of the weights after warm-up (0: none)
    augmentation: Augmentation = field(default_factory=Augmentation)
    seed: int = 2026

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_deterministic(seed: int) -> None:
    """Same seed, same threads, same model: every source of randomness fixed."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)


def _freeze(net: HaemorrhageNet, blocks: int) -> None:
    """Stop training the stem and the first `blocks` blocks, batch-norm statistics included."""
    frozen = [net._conv_stem, net._bn0, *net._blocks[:blocks]]
    for module in net.modules():
        for parameter in module.parameters(recurse=False):
            parameter.requires_grad = True
    net.train()
    for module in frozen:
        module.eval()
        for parameter in module.parameters():
            parameter.requires_grad = False


def _epoch_rows(data: TrainingSet, recipe: Recipe, generator: torch.Generator) -> torch.Tensor:
    """Rows seen in one epoch: every row `_always_seen`, a fresh draw of normal scanner slices, shuffled."""
    always = _always_seen(data, recipe)
    negative = torch.from_numpy(np.flatnonzero(~always))
    drawn = negative[torch.randperm(len(negative), generator=generator)[: recipe.negatives_per_epoch]]
    rows = torch.cat([torch.from_numpy(np.flatnonzero(always)), drawn])
    return rows[torch.randperm(len(rows), generator=generator)]


def _always_seen(data: TrainingSet, recipe: Recipe) -> np.ndarray:
    """Every haemorrhage slice, and (`every_picture_slice`) every slice of a picture-only collection: its few
    normal slices look unlike scanner slices, and drawn among the many normal scanner slices they would hardly
    be seen."""
    haemorrhage = data.labels[:, 0] == 1
    return haemorrhage | ~data.has_hu if recipe.every_picture_slice else haemorrhage


def _batches(rows: torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    """Batches of rows; a last batch of one is folded into the previous (batch norm needs two)."""
    starts = list(range(0, len(rows), size))
    if len(starts) > 1 and len(rows) - starts[-1] < 2:
        starts.pop()
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else len(rows)
        yield rows[start:end]


def _grey(data: TrainingSet, rows: torch.Tensor, recipe: Recipe, generator: torch.Generator) -> torch.Tensor:
    """Grey slices (N, S, S) in [0, 1]: the exported picture, or the units through a random window."""
    pictures = (torch.from_numpy(data.pictures[rows.numpy()]) + 1.0) / 2.0
    windowed = random_window(torch.from_numpy(data.hu[rows.numpy()]), generator, recipe.augmentation)
    drawn = torch.rand(len(rows), generator=generator) < recipe.hu_share
    use_hu = torch.from_numpy(data.has_hu[rows.numpy()]) & drawn
    return torch.where(use_hu.view(-1, 1, 1), windowed, pictures)


def _loss(logits: torch.Tensor, labels: torch.Tensor, picture_only: torch.Tensor, recipe: Recipe) -> torch.Tensor:
    """Haemorrhage cross-entropy (a picture-only slice weighing `picture_only_weight`) plus the weighted
    cross-entropy of each type where the type is known."""
    weights = torch.where(picture_only, recipe.picture_only_weight, 1.0)
    haemorrhage = functional.binary_cross_entropy_with_logits(logits[:, 0], labels[:, 0], weight=weights)
    known = labels[:, 1:] != UNKNOWN
    if not known.any():
        return haemorrhage
    types = functional.binary_cross_entropy_with_logits(logits[:, 1:][known], labels[:, 1:][known])
    return haemorrhage + recipe.type_loss_weight * types


def train(data: TrainingSet, recipe: Recipe, weights: Path, name: str = "model") -> HaemorrhageNet:
    """A network fine-tuned from the ImageNet `weights` on `data` with `recipe`."""
    make_deterministic(recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)
    # Channels-last runs the depthwise convolutions of this network about 1.6 times faster on CPU.
    net = pretrained_network(weights, outputs=data.labels.shape[1], dropout=recipe.dropout)
    net = net.to(memory_format=torch.channels_last)
    labels = torch.from_numpy(data.labels)
    picture_only = torch.from_numpy(~data.has_hu)
    optimizer = torch.optim.AdamW(net.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    always = _always_seen(data, recipe)
    per_epoch = int(always.sum()) + min(recipe.negatives_per_epoch, int((~always).sum()))
    steps_per_epoch = len(list(_batches(torch.arange(per_epoch), recipe.batch_size)))
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=recipe.learning_rate, total_steps=recipe.epochs * steps_per_epoch, pct_start=0.15
    )
    averaged = None
    if recipe.weight_average:
        averaged = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(recipe.weight_average), use_buffers=True)
    for epoch in range(recipe.epochs):
        _freeze(net, recipe.frozen_blocks_warmup if epoch < recipe.warmup_epochs else recipe.frozen_blocks)
        total, seen = 0.0, 0
        for rows in _batches(_epoch_rows(data, recipe, generator), recipe.batch_size):
            with torch.no_grad():
                images = augment(_grey(data, rows, recipe, generator), generator, recipe.augmentation)
                images = images.contiguous(memory_format=torch.channels_last)
            loss = _loss(net(images), labels[rows], picture_only[rows], recipe)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            if averaged is not None and epoch >= recipe.warmup_epochs:
                averaged.update_parameters(net)
            total += loss.item() * len(rows)
            seen += len(rows)
        log.info("%s epoch %d/%d: training loss %.3f", name, epoch + 1, recipe.epochs, total / max(seen, 1))
    if averaged is not None and averaged.n_averaged > 0:  # a run of warm-up epochs only has nothing to average
        net = averaged.module
    return net.to(memory_format=torch.contiguous_format).eval()
