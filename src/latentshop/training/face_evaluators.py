"""Training and measuring the colour real-face evaluators (:mod:`latentshop.models.face_evaluators`).

Data: ``celeba-faces`` (``../shared/data/celeba-faces``: 128 px aligned colour faces, a train and a
test split disjoint by person, CelebA's 40 attributes on about a fifth of them). CelebA's licence
allows research use only: the trained evaluators ship with that notice; the images never do.

- :func:`train_attribute_classifier` fits the linear heads of an
  :class:`~latentshop.models.face_evaluators.AttributeClassifier` (trunk: the bundled ImageNet
  MobileNetV2, frozen) on the labelled train images and their mirror images, by logistic
  regression with balanced class weights; the regularisation ``C`` is chosen by person-grouped
  cross-validation. :func:`evaluate_attribute_classifier` reports per-attribute ROC AUC and balanced
  accuracy on the test split and by cross-validation on the train split (the test split has only
  149 labelled images), and which attributes are usable.
- :func:`train_identity_embedder` fine-tunes an
  :class:`~latentshop.models.face_evaluators.IdentityEmbedder` (trunk initialised from the bundled
  MobileNetV2) on the train split's persons with the ArcFace loss (additive angular margin);
  :func:`evaluate_identity_embedder` scores same- versus different-person pairs of the test split's
  persons (never trained on) by ROC AUC, beside dlib's face-recognition network on the same pairs.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from latentshop.errors import ConfigError
from latentshop.metrics.perceptual import load_mobilenet
from latentshop.models.face_evaluators import AttributeClassifier, IdentityEmbedder, to_mobilenet_input

__all__ = [
    "ATTRIBUTE_USABLE_AUC",
    "CelebAFaces",
    "IdentityFit",
    "IDENTITY_FIT",
    "evaluate_attribute_classifier",
    "evaluate_identity_embedder",
    "load_celeba_faces",
    "roc_auc",
    "train_attribute_classifier",
    "train_identity_embedder",
]

DATA_NOTICE = "trained on celeba-faces (CelebA images: non-commercial research use only)"
#: an attribute is called usable when its cross-validated AUC reaches this (and the test AUC, where measurable, too)
ATTRIBUTE_USABLE_AUC = 0.85
_C_GRID = (0.003, 0.01, 0.03, 0.1)  # logistic regression strengths tried by cross-validation


@dataclass
class CelebAFaces:
    """A split of celeba-faces in memory."""

    images: torch.Tensor  # uint8 [N, 3, H, W]
    persons: np.ndarray  # int [N]
    attributes: np.ndarray | None  # bool [N, 40] (labelled images only), or None
    attribute_names: list[str]
    files: list[str]


def load_celeba_faces(root: str | Path, *, split: str, labelled: bool = False, limit: int | None = None) -> CelebAFaces:
    """Read a split of celeba-faces (``labels.jsonl`` beside ``images/``).

    Args:
        root: the data folder.
        split: ``"train"`` or ``"test"``.
        labelled: only the images with CelebA attributes (then ``attributes`` is set).
        limit: read at most this many images (in file order), for quick runs.
    """
    root = Path(root)
    labels = root / "labels.jsonl"
    if not labels.is_file():
        raise ConfigError(f"{labels} not found: give the celeba-faces folder (../shared/data/celeba-faces in this project)")
    recs = [json.loads(line) for line in labels.read_text().splitlines() if line.strip()]
    recs = [r for r in recs if r.get("split") == split and (not labelled or r.get("attributes"))]
    if limit is not None:
        recs = recs[:limit]
    if not recs:
        raise ConfigError(f"no {'labelled ' if labelled else ''}images of split {split!r} in {labels}")
    names = sorted(next(r["attributes"] for r in recs if r.get("attributes"))) if labelled else []
    images = np.stack([np.asarray(Image.open(root / r["file"]).convert("RGB")) for r in recs])
    attrs = np.array([[bool(r["attributes"][n]) for n in names] for r in recs]) if labelled else None
    return CelebAFaces(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), np.array([int(r["person"]) for r in recs]),
                       attrs, names, [r["file"] for r in recs])


def _to_float(img: torch.Tensor) -> torch.Tensor:
    return img.float().div(127.5).sub(1.0)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC (NaN when one class is absent)."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        return float("nan")
    return float(roc_auc_score(labels, scores))


def _balanced_accuracy(labels: np.ndarray, pred: np.ndarray) -> float:
    labels, pred = np.asarray(labels).astype(bool), np.asarray(pred).astype(bool)
    if labels.all() or not labels.any():
        return float("nan")
    return float(((pred[labels]).mean() + (~pred[~labels]).mean()) / 2)


# ----------------------------------------------------------------------------------------------
# Attributes


@torch.no_grad()
def _pooled(net: AttributeClassifier, images: torch.Tensor, *, batch: int = 64,
            progress: Callable[[int], None] | None = None) -> np.ndarray:
    out = []
    for i in range(0, images.shape[0], batch):
        out.append(net.pooled_features(_to_float(images[i:i + batch])).double().cpu().numpy())
        if progress is not None:
            progress(min(i + batch, images.shape[0]))
    return np.concatenate(out)


def _fit_heads(x: np.ndarray, y: np.ndarray, C: float, *, iterations: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Standardise ``x`` and fit a balanced L2 logistic regression per column of ``y``: (mean, std, W [A, F], b [A]).

    Every attribute's objective is scikit-learn's ``LogisticRegression(C=C, class_weight="balanced")``
    (``C`` times the class-weighted log loss plus half the squared weights, bias unpenalised); all
    attributes are fitted at once by full-batch L-BFGS in float64, which is much faster than one
    solver per attribute.
    """
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = torch.from_numpy((x - mean) / std)
    t = torch.from_numpy(np.asarray(y, dtype=np.float64))
    n, a = t.shape
    pos = t.sum(0)
    # balanced class weights n / (2 n_class); a constant label gets weight on its only class
    w_pos = torch.where(pos > 0, n / (2 * pos.clamp_min(1)), torch.zeros_like(pos))
    w_neg = torch.where(pos < n, n / (2 * (n - pos).clamp_min(1)), torch.zeros_like(pos))
    weight = t * w_pos + (1 - t) * w_neg
    W = torch.zeros(a, z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(a, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1, max_iter=iterations, history_size=20, tolerance_grad=1e-9,
                            tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = z @ W.T + b
        loss = C * (weight * F.binary_cross_entropy_with_logits(logits, t, reduction="none")).sum() + 0.5 * W.square().sum()
        loss = loss / n  # scaled for the solver's tolerances; the minimiser is unchanged
        loss.backward()
        return loss

    opt.step(closure)
    W_, b_ = W.detach().numpy(), b.detach().numpy().copy()
    constant = (pos == 0) | (pos == n)
    b_[constant.numpy()] = np.where(pos[constant].numpy() > 0, 8.0, -8.0)
    return mean, std, W_, b_


def _head_scores(x: np.ndarray, fit: tuple[np.ndarray, ...]) -> np.ndarray:
    mean, std, W, b = fit
    return ((x - mean) / std) @ W.T + b


def _cross_validate(x: np.ndarray, y: np.ndarray, groups: np.ndarray, C: float, *, folds: int = 5,
                    pairs: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Person-grouped ``folds``-fold cross-validated logits ``[N, A]`` for the rows of ``x``.

    ``x`` holds ``pairs`` rows per image (the image and its mirror, interleaved); the folds keep
    them together and a held-out image's score is the mean over its rows.
    """
    from sklearn.model_selection import GroupKFold

    n = x.shape[0] // pairs
    scores = np.zeros((n, y.shape[1]))
    img_groups = groups[::pairs]
    for tr, te in GroupKFold(n_splits=folds).split(np.zeros(n), groups=img_groups):
        rows_tr = (tr[:, None] * pairs + np.arange(pairs)).ravel()
        fit = _fit_heads(x[rows_tr], y[rows_tr], C)
        for k in range(pairs):
            scores[te] += _head_scores(x[te * pairs + k], fit) / pairs
    return scores, y[::pairs]


def train_attribute_classifier(root: str | Path, *, C: float | None = None, size: int = 160,
                               progress: Callable[[str, int, int], None] | None = None,
                               limit: int | None = None) -> tuple[AttributeClassifier, dict[str, Any]]:
    """Fit an :class:`AttributeClassifier` on celeba-faces' labelled train images (and their mirrors).

    Args:
        root: the celeba-faces folder.
        C: the logistic regression's inverse regularisation; ``None`` picks the best mean
            cross-validated AUC of a small grid.
        size: the trunk's input size.
        progress: called with ``(stage, done, total)``.
        limit: use at most this many labelled images (quick runs).

    Returns:
        ``(classifier, info)``; ``info["cross_validation"]`` holds the per-attribute cross-validated
        AUC and balanced accuracy (5 folds grouped by person) that :func:`evaluate_attribute_classifier`
        reports beside the test split's.
    """
    start = time.perf_counter()
    data = load_celeba_faces(root, split="train", labelled=True, limit=limit)
    net = AttributeClassifier(attributes=data.attribute_names, size=size)
    net.trunk.load_state_dict(load_mobilenet().state_dict(), strict=False)
    both = torch.stack([data.images, data.images.flip(3)], dim=1).flatten(0, 1)  # image, mirror, image, mirror, ...
    x = _pooled(net, both, progress=None if progress is None else (lambda d: progress("features", d, both.shape[0])))
    y = np.repeat(data.attributes, 2, axis=0)
    groups = np.repeat(data.persons, 2)
    grid = _C_GRID if C is None else (C,)
    cv: dict[float, tuple[np.ndarray, np.ndarray]] = {}
    for i, c in enumerate(grid):
        cv[c] = _cross_validate(x, y, groups, c)
        if progress is not None:
            progress("cross-validation", i + 1, len(grid))
    mean_auc = {c: np.nanmean([roc_auc(lab[:, j], s[:, j]) for j in range(y.shape[1])]) for c, (s, lab) in cv.items()}
    best = max(mean_auc, key=mean_auc.get)
    scores, labels = cv[best]
    mean, std, W, b = _fit_heads(x, y, best)
    with torch.no_grad():
        net.feature_mean.copy_(torch.from_numpy(mean))
        net.feature_std.copy_(torch.from_numpy(std))
        net.head.weight.copy_(torch.from_numpy(W))
        net.head.bias.copy_(torch.from_numpy(b))
    cross = {name: {"auc": roc_auc(labels[:, j], scores[:, j]),
                    "balanced_accuracy": _balanced_accuracy(labels[:, j], scores[:, j] > 0),
                    "positive_rate": float(labels[:, j].mean())}
             for j, name in enumerate(data.attribute_names)}
    info = {"data": DATA_NOTICE, "images": int(data.images.shape[0]), "persons": int(len(set(data.persons.tolist()))),
            "C": best, "C_grid_mean_auc": {str(c): float(v) for c, v in mean_auc.items()},
            "cross_validation": cross, "seconds": time.perf_counter() - start,
            "recipe": "frozen ImageNet MobileNetV2 trunk; blocks.12 pooled 4x4 + blocks.16 pooled 2x2; "
                      "balanced logistic regression per attribute on the labelled train images and their mirrors"}
    return net.eval(), info


def evaluate_attribute_classifier(net: AttributeClassifier, root: str | Path, *, split: str = "test",
                                  cross_validation: dict[str, Any] | None = None) -> dict[str, Any]:
    """Per-attribute ROC AUC and balanced accuracy on a split, and the usable attributes.

    ``cross_validation`` (from the training info) joins the verdict: an attribute is usable when
    its cross-validated AUC is at least :data:`ATTRIBUTE_USABLE_AUC` and its test AUC (where the
    split has both classes) is too.
    """
    data = load_celeba_faces(root, split=split, labelled=True)
    missing = [a for a in net.attributes if a not in data.attribute_names]
    if missing:
        raise ConfigError(f"the data lacks the classifier's attributes {missing}")
    probs = net.predict_proba(_to_float(data.images)).numpy()
    per: dict[str, dict[str, float]] = {}
    for i, name in enumerate(net.attributes):
        lab = data.attributes[:, data.attribute_names.index(name)]
        per[name] = {"auc": roc_auc(lab, probs[:, i]), "balanced_accuracy": _balanced_accuracy(lab, probs[:, i] > 0.5),
                     "positives": int(lab.sum())}
    usable = []
    for name in net.attributes:
        test_auc = per[name]["auc"]
        cv_auc = (cross_validation or {}).get(name, {}).get("auc", test_auc)
        if cv_auc >= ATTRIBUTE_USABLE_AUC and (math.isnan(test_auc) or test_auc >= ATTRIBUTE_USABLE_AUC):
            usable.append(name)
    aucs = [v["auc"] for v in per.values() if not math.isnan(v["auc"])]
    return {"split": split, "images": int(data.images.shape[0]), "attributes": per, "mean_auc": float(np.mean(aucs)),
            "usable": usable, "usable_rule": f"cross-validated AUC >= {ATTRIBUTE_USABLE_AUC} and test AUC >= "
                                              f"{ATTRIBUTE_USABLE_AUC} where the test split has both classes"}


# ----------------------------------------------------------------------------------------------
# Identity


@dataclass(frozen=True)
class IdentityFit:
    """The identity embedder's recipe (AdamW, cosine decay after a warm-up, ArcFace loss)."""

    steps: int = 4000  # optimiser steps (about 6 passes over the images and their mirrors)
    batch_size: int = 64  # images per step
    lr: float = 1e-3  # peak learning rate of the new layers and the margin head
    trunk_lr: float = 2e-4  # peak learning rate of the pretrained trunk
    weight_decay: float = 5e-4
    warmup: int = 200  # linear warm-up steps
    scale: float = 32.0  # ArcFace's s
    margin: float = 0.4  # ArcFace's additive angular margin m (radians)
    dim: int = 256  # embedding width
    max_shift: int = 1  # random translation of the frozen blocks' feature maps, cells (8 px at 128 px)
    frozen_blocks: int = 6  # trunk blocks 0 .. frozen_blocks - 1 (and the stem) stay frozen
    seed: int = 0


IDENTITY_FIT = IdentityFit()


def _arcface_logits(emb: torch.Tensor, centres: torch.Tensor, labels: torch.Tensor, s: float, m: float) -> torch.Tensor:
    """ArcFace: cos(theta + m) for the true class, cos(theta) for the others, times s.

    Past theta = pi - m the margin would make the logit grow again; there it uses the usual
    linear continuation ``cos(theta) - m sin(m)``.
    """
    cos = emb @ F.normalize(centres, dim=1).T
    true = cos.gather(1, labels[:, None]).clamp(-1 + 1e-6, 1 - 1e-6)
    sin = (1 - true.square()).sqrt()
    with_margin = true * math.cos(m) - sin * math.sin(m)
    with_margin = torch.where(true > math.cos(math.pi - m), with_margin, true - m * math.sin(m))
    return s * cos.scatter(1, labels[:, None], with_margin)


def _shift_features(x: torch.Tensor, gen: torch.Generator, shift: int) -> torch.Tensor:
    """Translate feature maps by up to ``shift`` cells (replicate padding), per sample."""
    if shift <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (shift,) * 4, mode="replicate")
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=gen).tolist()
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=gen).tolist()
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


@torch.no_grad()
def _early_features(net: IdentityEmbedder, images: torch.Tensor, block: int, *, batch: int = 128) -> torch.Tensor:
    """The frozen trunk's output before ``block`` for every image and its mirror: bfloat16 ``[2N, C, h, w]``."""
    layer = f"blocks.{block - 1}"
    out = []
    for i in range(0, images.shape[0], batch):
        x = _to_float(images[i:i + batch])
        f = net.trunk.features(to_mobilenet_input(torch.cat([x, x.flip(3)]), net.size), [layer])[layer]
        plain, mirrored = f.chunk(2)
        out.append(torch.stack([plain, mirrored], dim=1).flatten(0, 1).to(torch.bfloat16))  # image k: rows 2k, 2k + 1
    return torch.cat(out)


def train_identity_embedder(root: str | Path, *, options: IdentityFit = IDENTITY_FIT, device: str | torch.device = "cpu",
                            progress: Callable[[int, float], None] | None = None, limit: int | None = None,
                            net: IdentityEmbedder | None = None) -> tuple[IdentityEmbedder, dict[str, Any]]:
    """Fine-tune an :class:`IdentityEmbedder` on celeba-faces' train split with the ArcFace loss.

    The trunk's blocks before ``options.frozen_blocks`` stay as ImageNet trained them: their output
    for every image and its mirror is computed once, and training runs the later blocks and the
    embedding on it, with random translation of those feature maps by up to ``options.max_shift``
    cells (8 px at 128 px) as augmentation. That makes a step several times cheaper on a CPU.

    Args:
        root: the celeba-faces folder.
        options: the recipe.
        device: where to train.
        progress: called with ``(step, loss)`` after each step.
        limit: use at most this many train images (quick runs).
        net: start from this network instead of the ImageNet trunk.
    """
    start = time.perf_counter()
    o = options
    device = torch.device(device)
    torch.manual_seed(o.seed)
    gen = torch.Generator().manual_seed(o.seed)
    data = load_celeba_faces(root, split="train", limit=limit)
    persons, labels = np.unique(data.persons, return_inverse=True)
    labels = torch.from_numpy(labels).long().repeat_interleave(2)  # every image and its mirror
    if net is None:
        net = IdentityEmbedder(dim=o.dim)
        net.trunk.load_state_dict(load_mobilenet().state_dict(), strict=False)
    net = net.to(device).eval()
    feats = _early_features(net, data.images, o.frozen_blocks).to(device)
    early = [net.trunk.stem, *net.trunk.blocks[:o.frozen_blocks]]
    for module in early:
        module.requires_grad_(False)
    net.train()
    for module in early:
        module.eval()
    late = [p for p in net.trunk.blocks[o.frozen_blocks:].parameters()]
    centres = torch.nn.Parameter(torch.randn(len(persons), o.dim, device=device) * 0.01)
    new = [p for n, p in net.named_parameters() if not n.startswith("trunk.")] + [centres]
    opt = torch.optim.AdamW([{"params": late, "lr": o.trunk_lr}, {"params": new, "lr": o.lr}], weight_decay=o.weight_decay)
    peaks = [o.trunk_lr, o.lr]
    losses, correct = [], []
    for step in range(o.steps):
        ramp = min(1.0, (step + 1) / max(o.warmup, 1))
        decay = 0.5 * (1 + math.cos(math.pi * step / o.steps))
        for group, peak in zip(opt.param_groups, peaks):
            group["lr"] = peak * ramp * decay
        idx = torch.randint(0, feats.shape[0], (o.batch_size,), generator=gen)
        x = _shift_features(feats[idx].float(), gen, o.max_shift)
        y = labels[idx].to(device)
        logits = _arcface_logits(net.head_from(x, o.frozen_blocks), centres, y, o.scale, o.margin)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        correct.append(float((logits.detach().argmax(1) == y).float().mean()))
        if progress is not None:
            progress(step + 1, losses[-1])
    info = {"data": DATA_NOTICE, "images": int(data.images.shape[0]), "persons": int(len(persons)), "options": asdict(o),
            "final_loss": float(np.mean(losses[-100:])), "final_train_accuracy": float(np.mean(correct[-100:])),
            "seconds": time.perf_counter() - start,
            "recipe": f"ImageNet MobileNetV2 trunk, blocks {o.frozen_blocks}-16 fine-tuned with the ArcFace loss over "
                      "the train split's persons (images and mirrors)"}
    return net.cpu().eval().requires_grad_(False), info


def _pair_labels(persons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper-triangle index pairs and whether each pair is the same person."""
    i, j = np.triu_indices(len(persons), k=1)
    return np.stack([i, j]), persons[i] == persons[j]


def evaluate_identity_embedder(net: IdentityEmbedder, root: str | Path, *, split: str = "test", dlib: bool = True,
                               limit: int | None = None) -> dict[str, Any]:
    """Same- versus different-person ROC AUC over every pair of a split (persons never trained on).

    With ``dlib``, dlib's face-recognition ResNet (128-D descriptors, the project's identity
    metric) is scored on the same pairs, and the two similarities' correlation is given.
    """
    data = load_celeba_faces(root, split=split, limit=limit)
    emb = net.embed_images(_to_float(data.images)).double().numpy()
    (i, j), same = _pair_labels(data.persons)
    ours = (emb[i] * emb[j]).sum(1)
    out: dict[str, Any] = {"split": split, "images": int(len(data.persons)), "persons": int(len(set(data.persons.tolist()))),
                           "pairs": int(len(same)), "same_pairs": int(same.sum()),
                           "auc": roc_auc(same, ours), "same_mean": float(ours[same].mean()),
                           "different_mean": float(ours[~same].mean())}
    if dlib:
        from latentshop.metrics.identity import face_embeddings

        arr = data.images.permute(0, 2, 3, 1).numpy()
        ref = face_embeddings(list(arr), aligned=True).astype(np.float64)
        ok = np.isfinite(ref).all(1)
        unit = ref / np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-12)
        theirs = (unit[i] * unit[j]).sum(1)  # cosine, as metrics.identity compares descriptors
        both = ok[i] & ok[j]
        out["dlib"] = {"auc": roc_auc(same[both], theirs[both]), "pairs": int(both.sum()),
                       "images_without_descriptor": int((~ok).sum())}
        out["auc_same_pairs_as_dlib"] = roc_auc(same[both], ours[both])
        out["correlation_with_dlib"] = float(np.corrcoef(ours[both], theirs[both])[0, 1])
    return out
