"""Evaluation figures of a connector on fixed batches of pairs.

Per evaluation set:
* `recon_l1`: mean absolute error of the edited expression against the target, both directions;
* `direction_cos`: mean cosine between each pair's predicted change (averaged over the window) and
  its true change;
* `centroid_acc`: nearest-centroid accuracy of the predicted changes, the centroids being the
  mean true change of each emotion pair (i->j) in a reference batch of training pairs; it says
  whether a predicted direction lands on the right emotion, not merely near it;
* `emotion_cos/<name>`: per target emotion, the cosine between the mean predicted and the mean
  true change (the figure the synthetic benchmark scores for unseen emotions).
"""

from __future__ import annotations

from collections import defaultdict

import torch
import torch.nn.functional as F

from training.config import LossConfig
from training.data import PairBatch
from training.model import TrainModel, step_losses


def _labels(batch: PairBatch) -> list[str]:
    return [f"{a}->{b}" for a, b in zip(batch.emotion_i, batch.emotion_j, strict=False)]


def _centroids(batch: PairBatch) -> dict[str, torch.Tensor]:
    change = (batch.exp_j - batch.exp_i).mean(1).float()
    groups: dict[str, list[int]] = defaultdict(list)
    for k, label in enumerate(_labels(batch)):
        groups[label].append(k)
    return {label: change[idx].mean(0) for label, idx in sorted(groups.items())}


@torch.no_grad()
def evaluate(
    model: TrainModel, sets: dict[str, PairBatch], reference: PairBatch, weights: LossConfig, device: torch.device
) -> dict[str, float]:
    was_training = model.training
    model.eval()
    centroids = _centroids(reference)
    names = list(centroids)
    table = torch.stack([centroids[n] for n in names]).to(device) if names else None
    out: dict[str, float] = {}
    for split, batch in sets.items():
        batch = batch.to(device)
        losses = step_losses(model, batch, weights)
        predicted = losses.forward_delta.float().mean(1)
        true = (batch.exp_j - batch.exp_i).float().mean(1)
        out[f"{split}/recon_l1"] = float(losses.reconstruction) / 2
        out[f"{split}/direction_cos"] = float(F.cosine_similarity(predicted, true, dim=-1).mean())
        labels = _labels(batch)
        known = [k for k, label in enumerate(labels) if label in centroids]
        if table is not None and known:
            sims = F.cosine_similarity(predicted[known, None, :], table[None], dim=-1)
            hits = sum(names[int(c)] == labels[k] for k, c in zip(known, sims.argmax(1), strict=True))
            out[f"{split}/centroid_acc"] = hits / len(known)
        by_emotion: dict[str, list[int]] = defaultdict(list)
        for k, emotion in enumerate(batch.emotion_j):
            by_emotion[emotion].append(k)
        for emotion, idx in sorted(by_emotion.items()):
            cos = F.cosine_similarity(predicted[idx].mean(0), true[idx].mean(0), dim=0)
            out[f"{split}/emotion_cos/{emotion}"] = float(cos)
    model.train(was_training)
    return out
