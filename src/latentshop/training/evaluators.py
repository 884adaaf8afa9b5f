"""Training and measuring the evaluators (:mod:`latentshop.models.evaluators`).

- :func:`train_factor_regressor` renders synthetic faces of every domain from training seeds
  (below :data:`~latentshop.data.synthetic.TEST_SEED_START`) and fits a
  :class:`~latentshop.models.evaluators.FactorRegressor`; :func:`evaluate_factor_regressor` scores
  it on held-out seeds: R² per float factor (hues: with the wrapped, circular error), accuracy for
  ``glasses`` and ``clothing_pattern``, per domain.
- :func:`train_expression_classifier` fits an
  :class:`~latentshop.models.evaluators.ExpressionClassifier` on the labelled train split of
  lfw-faces (class-weighted cross-entropy: the classes are very unbalanced);
  :func:`evaluate_expression_classifier` reports accuracy, balanced accuracy and per-class recall
  on the test split (disjoint by person).
- :func:`train_part_segmenter` renders synthetic faces (photo-heavy: the synthetic generator is
  trained on photos) with their part masks and fits a
  :class:`~latentshop.models.evaluators.PartSegmenter` by per-pixel cross-entropy;
  :func:`evaluate_part_segmenter` scores it on held-out seeds: pixel accuracy, IoU per part and
  their mean, per domain.

Evaluators are trained once, here, with fixed recipes; they are never tuned on what they later
measure (generator samples, edits).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from latentshop.data.synthetic import DOMAINS, FACTORS, TEST_SEED_START, render_batch
from latentshop.errors import ConfigError
from latentshop.models.evaluators import CIRCULAR_FACTORS, ExpressionClassifier, FactorRegressor, PartSegmenter

__all__ = [
    "EXPRESSION_ALIASES",
    "EXPRESSION_CLASSES",
    "EXPRESSION_FIT",
    "FACTOR_FIT",
    "FitOptions",
    "PART_COUNTS",
    "PART_EVAL_SEED_START",
    "PARTS_FIT",
    "evaluate_expression_classifier",
    "evaluate_factor_regressor",
    "evaluate_part_segmenter",
    "factor_scores",
    "load_expression_data",
    "part_scores",
    "render_factor_data",
    "render_part_data",
    "train_expression_classifier",
    "train_factor_regressor",
    "train_part_segmenter",
]

#: the lfw-faces expressions the classifier predicts: those present in both splits. ``fear`` (14
#: train images, none in test) and ``contempt`` (9, none in test) are too rare to learn or measure;
#: ``sad`` is the source's spelling variant of ``sadness``.
EXPRESSION_CLASSES = ("anger", "disgust", "happiness", "neutral", "sadness", "surprise")
#: folder labels of lfw-faces spelled otherwise than the classes
EXPRESSION_ALIASES = {"sad": "sadness"}
FACTOR_EVAL_SEED_START = TEST_SEED_START + 500_000  # held-out seeds for scoring the factor regressor
PART_EVAL_SEED_START = FACTOR_EVAL_SEED_START  # held-out seeds for scoring the part segmenter


@dataclass(frozen=True)
class FitOptions:
    """Optimisation of an evaluator (AdamW, cosine learning-rate decay, bfloat16 autocast)."""

    steps: int = 3000  # optimiser steps
    batch_size: int = 128  # images per step
    lr: float = 2e-3  # peak learning rate (after a 100-step warm-up)
    weight_decay: float = 1e-4  # AdamW weight decay
    bf16: bool = True  # bfloat16 autocast
    max_shift: int = 3  # random translation, pixels at 64 px
    noise: float = 0.04  # largest std of added Gaussian noise ([-1, 1] images)
    seed: int = 0  # initialisation, batch order and augmentation


#: the shipped evaluators' recipes
FACTOR_FIT = FitOptions(steps=6000, batch_size=64)
EXPRESSION_FIT = FitOptions(steps=2000, batch_size=64)
PARTS_FIT = FitOptions(steps=3000, batch_size=32)
#: training faces per domain for the part segmenter: photo-heavy, as the synthetic generator's samples are photos
PART_COUNTS: Mapping[str, int] = MappingProxyType({"photo": 16_000, "toon": 6_000, "caricature": 6_000})


def _to_float(img: torch.Tensor) -> torch.Tensor:
    return img.float().div(127.5).sub(1.0)


def _augment(x: torch.Tensor, gen: torch.Generator, o: FitOptions, *, xflip: bool, photometric: bool) -> torch.Tensor:
    """Random translation (edge padding), optional mirror and brightness/contrast, Gaussian noise."""
    return _recolour(_move(x, gen, o, xflip=xflip), gen, o, photometric=photometric)


def _move(x: torch.Tensor, gen: torch.Generator, o: FitOptions, *, xflip: bool) -> torch.Tensor:
    """The geometric half of :func:`_augment`: random translation (edge padding), optional mirror."""
    n, _, h, w = x.shape
    if o.max_shift > 0:
        s = o.max_shift
        padded = F.pad(x, (s, s, s, s), mode="replicate")
        dx = torch.randint(0, 2 * s + 1, (n,), generator=gen)
        dy = torch.randint(0, 2 * s + 1, (n,), generator=gen)
        rows = (dy[:, None] + torch.arange(h)[None]).view(n, 1, h, 1).expand(-1, x.shape[1], -1, w + 2 * s)
        x = padded.gather(2, rows)
        cols = (dx[:, None] + torch.arange(w)[None]).view(n, 1, 1, w).expand(-1, x.shape[1], h, -1)
        x = x.gather(3, cols)
    if xflip:
        flip = torch.rand(n, generator=gen) < 0.5
        x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    return x


def _recolour(x: torch.Tensor, gen: torch.Generator, o: FitOptions, *, photometric: bool) -> torch.Tensor:
    """The photometric half of :func:`_augment`: optional brightness/contrast, Gaussian noise."""
    n = x.shape[0]
    if photometric:
        gain = 1 + 0.25 * (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1)
        shift = 0.15 * (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1)
        x = (x * gain + shift).clamp(-1, 1)
    if o.noise > 0:
        x = x + torch.randn(x.shape, generator=gen) * (torch.rand(n, 1, 1, 1, generator=gen) * o.noise)
    return x


def _fit(net: torch.nn.Module, images: torch.Tensor, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
         o: FitOptions, *, device: torch.device, xflip: bool, photometric: bool,
         progress: Callable[[int, float], None] | None, label_maps: torch.Tensor | None = None) -> dict[str, Any]:
    """The shared loop: sample a batch of indices, augment, step.

    ``loss_fn(out, idx)`` takes the batch's indices; with ``label_maps`` (``uint8 (N, H, W)``, one per
    image) it takes the batch's maps instead, moved and mirrored with their images (``int64 (B, H, W)``).
    """
    gen = torch.Generator().manual_seed(o.seed)
    net.to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=o.lr, weight_decay=o.weight_decay)
    warm = min(100, o.steps // 10 + 1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, o.steps) / o.steps)))
    start, losses = time.perf_counter(), []
    for step in range(o.steps):
        idx = torch.randint(0, len(images), (o.batch_size,), generator=gen)
        if label_maps is None:
            x = _augment(_to_float(images[idx]), gen, o, xflip=xflip, photometric=photometric).to(device)
            target = idx
        else:
            both = _move(torch.cat([_to_float(images[idx]), label_maps[idx, None].float()], 1), gen, o, xflip=xflip)
            x = _recolour(both[:, :-1], gen, o, photometric=photometric).to(device)
            target = both[:, -1].round().long()  # [B, H, W]; edge padding and flips keep labels whole
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=o.bf16):
            out = net(x)
        loss = loss_fn(out.float(), target)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"evaluator training diverged at step {step} (loss {loss.item()}); lower FitOptions.lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if progress is not None:
            progress(step + 1, float(np.mean(losses[-50:])))
    net.eval()
    return {"steps": o.steps, "batch_size": o.batch_size, "seconds": round(time.perf_counter() - start, 1),
            "final_loss": float(np.mean(losses[-50:]))}


# ----------------------------------------------------------------------------------------------
# Synthetic factors


def _render_domains(counts: Mapping[str, int], *, res: int, start_seed: int,
                    workers: int) -> tuple[torch.Tensor, list[dict[str, Any]], torch.Tensor, list[str]]:
    """``counts[domain]`` faces per domain from consecutive seeds, each domain its own seeds in order.

    Returns:
        ``(images uint8 (N, 3, res, res), factor dicts, masks uint8 (N, res, res), domain per image)``.
    """
    bad = {d: n for d, n in counts.items() if isinstance(n, bool) or not isinstance(n, int) or n < 1}
    if bad or not counts:
        raise ConfigError(f"need a positive number of faces per domain, got {dict(counts)}")
    imgs, facs, masks, doms = [], [], [], []
    first = start_seed
    for domain, n in counts.items():
        images, factors, m = render_batch(range(first, first + n), res=res, domain=domain, workers=workers)
        imgs.append(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())
        masks.append(torch.from_numpy(m))
        facs += factors
        doms += [domain] * n
        first += n
    return torch.cat(imgs), facs, torch.cat(masks), doms


def render_factor_data(n_per_domain: int, *, res: int = 64, start_seed: int = 0,
                       domains: Sequence[str] = DOMAINS, workers: int = 0) -> tuple[torch.Tensor, list[dict[str, Any]], list[str]]:
    """Render ``n_per_domain`` faces per domain from consecutive seeds (each domain its own seeds).

    Returns:
        ``(images uint8 (N, 3, res, res), factor dicts, domain per image)``.
    """
    images, factors, _, doms = _render_domains({d: n_per_domain for d in domains}, res=res, start_seed=start_seed,
                                               workers=workers)
    return images, factors, doms


def train_factor_regressor(*, n_per_domain: int = 20_000, res: int = 64, options: FitOptions = FACTOR_FIT,
                           device: str | torch.device = "cpu", workers: int = 0,
                           progress: Callable[[int, float], None] | None = None,
                           net: FactorRegressor | None = None) -> tuple[FactorRegressor, dict[str, Any]]:
    """Fit a factor regressor on freshly rendered training seeds of every domain.

    Returns:
        ``(net, info)``: the trained network (eval mode) and what was done (images, steps, seconds).
    """
    if n_per_domain * len(DOMAINS) > TEST_SEED_START:
        raise ValueError("too many training images: they would reach the held-out seeds")
    torch.manual_seed(options.seed)
    net = net or FactorRegressor(res=res)
    t0 = time.perf_counter()
    images, factors, _ = render_factor_data(n_per_domain, res=res, workers=workers)
    render_s = time.perf_counter() - t0
    targets = net.encode_targets(factors)

    def loss_fn(out: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return net.loss(out, {k: v[idx] for k, v in targets.items()})[0]

    info = _fit(net, images, loss_fn, options, device=torch.device(device), xflip=False, photometric=False, progress=progress)
    info.update(images=len(images), render_seconds=round(render_s, 1), data=f"synthetic seeds 0..{n_per_domain * len(DOMAINS) - 1}, "
                f"{n_per_domain} per domain ({', '.join(DOMAINS)}), {res} px")
    return net.cpu(), info


def factor_scores(pred: dict[str, torch.Tensor], factors: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Per factor: R² for float factors (hues with the wrapped error), accuracy for the others.

    Args:
        pred: :meth:`FactorRegressor.predict` output.
        factors: the true factor dicts, in the same order.
    """
    scores: dict[str, float] = {}
    for name, fac in FACTORS.items():
        true = [f[name] for f in factors]
        if fac.kind == "float":
            t = torch.tensor(true, dtype=torch.float64)
            p = pred[name].double()
            if name in CIRCULAR_FACTORS:
                err = torch.remainder(p - t + 0.5, 1.0) - 0.5
                mean_angle = torch.atan2(torch.sin(2 * math.pi * t).mean(), torch.cos(2 * math.pi * t).mean()) / (2 * math.pi)
                spread = torch.remainder(t - mean_angle + 0.5, 1.0) - 0.5
                scores[name] = float(1 - err.pow(2).mean() / spread.pow(2).mean())
            else:
                scores[name] = float(1 - (p - t).pow(2).mean() / t.var(unbiased=False).clamp_min(1e-12))
        elif fac.kind == "bool":
            scores[name] = float(((pred[name] > 0.5) == torch.tensor(true)).double().mean())
        else:
            idx = torch.tensor([fac.choices.index(v) for v in true])
            scores[name] = float((pred[name] == idx).double().mean())
    return scores


def evaluate_factor_regressor(net: FactorRegressor, *, n_per_domain: int = 1000, res: int = 64,
                              workers: int = 0) -> dict[str, dict[str, float]]:
    """Scores on held-out seeds (from :data:`FACTOR_EVAL_SEED_START`), per domain and over all.

    Returns:
        ``{domain or "all": {factor: R² or accuracy}}``.
    """
    images, factors, domains = render_factor_data(n_per_domain, res=res, start_seed=FACTOR_EVAL_SEED_START, workers=workers)
    pred = net.predict(_to_float(images))
    out: dict[str, dict[str, float]] = {}
    for domain in DOMAINS:
        sel = [i for i, d in enumerate(domains) if d == domain]
        out[domain] = factor_scores({k: v[sel] for k, v in pred.items()}, [factors[i] for i in sel])
    out["all"] = factor_scores(pred, factors)
    return out


# ----------------------------------------------------------------------------------------------
# Real-face expressions


def load_expression_data(root: str, *, split: str, res: int = 64, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """lfw-faces images of one split with an expression in :data:`EXPRESSION_CLASSES`.

    Returns:
        ``(images uint8 (N, 1, res, res), class indices (N,))``.
    """
    from latentshop.data.dataset import ImageFolderDataset

    ds = ImageFolderDataset(root, res=res, channels=1, split=split, limit=limit)
    imgs, ys = [], []
    for i in range(len(ds)):
        expr = ds.get_details(i)["labels"].get("expression")
        expr = EXPRESSION_ALIASES.get(expr, expr)
        if expr in EXPRESSION_CLASSES:
            imgs.append(ds[i][0])
            ys.append(EXPRESSION_CLASSES.index(expr))
    return torch.stack(imgs), torch.tensor(ys)


def train_expression_classifier(root: str, *, res: int = 64, options: FitOptions = EXPRESSION_FIT,
                                device: str | torch.device = "cpu", limit: int | None = None,
                                progress: Callable[[int, float], None] | None = None,
                                net: ExpressionClassifier | None = None) -> tuple[ExpressionClassifier, dict[str, Any]]:
    """Fit an expression classifier on the train split of lfw-faces (``root``).

    The loss weights class ``c`` by ``(N / (K n_c)) ** 0.5``: rare expressions count more, without
    letting 9-image classes dominate.
    """
    torch.manual_seed(options.seed)
    images, ys = load_expression_data(root, split="train", res=res, limit=limit)
    counts = torch.bincount(ys, minlength=len(EXPRESSION_CLASSES)).double()
    weight = (len(ys) / (len(EXPRESSION_CLASSES) * counts.clamp_min(1))).sqrt().float()
    net = net or ExpressionClassifier(classes=EXPRESSION_CLASSES, res=res)
    if list(net.classes) != list(EXPRESSION_CLASSES):
        raise ValueError(f"the classifier's classes must be {EXPRESSION_CLASSES}")

    def loss_fn(out: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, ys[idx].to(out.device), weight=weight.to(out.device), label_smoothing=0.05)

    info = _fit(net, images, loss_fn, options, device=torch.device(device), xflip=True, photometric=True, progress=progress)
    info.update(images=len(ys), class_counts={c: int(n) for c, n in zip(EXPRESSION_CLASSES, counts.tolist())},
                data=f"lfw-faces train split, {res} px grayscale")
    return net.cpu(), info


def evaluate_expression_classifier(net: ExpressionClassifier, root: str, *, split: str = "test", res: int = 64) -> dict[str, Any]:
    """Accuracy, balanced accuracy (mean per-class recall) and per-class recall on a split."""
    images, ys = load_expression_data(root, split=split, res=res)
    pred = net.predict_proba(_to_float(images)).argmax(1)
    recall = {}
    for k, c in enumerate(net.classes):
        sel = ys == k
        if sel.any():
            recall[c] = float((pred[sel] == k).double().mean())
    support = {c: int((ys == k).sum()) for k, c in enumerate(net.classes)}
    confusion = torch.zeros(len(net.classes), len(net.classes), dtype=torch.long)
    confusion.index_put_((ys, pred), torch.ones_like(ys), accumulate=True)
    return {"accuracy": float((pred == ys).double().mean()), "balanced_accuracy": float(np.mean(list(recall.values()))),
            "recall": recall, "support": support, "confusion": confusion.tolist(), "images": len(ys)}


# ----------------------------------------------------------------------------------------------
# Synthetic face parts


def render_part_data(counts: Mapping[str, int] = PART_COUNTS, *, res: int = 64, start_seed: int = 0,
                     workers: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Render ``counts[domain]`` faces per domain with their part masks, from consecutive seeds.

    The domains take their seeds one after another, in the order of ``counts``.

    Returns:
        ``(images uint8 (N, 3, res, res), masks uint8 (N, res, res) indexing PART_NAMES, domain per image)``.

    Example:
        >>> images, masks, domains = render_part_data({"photo": 2, "toon": 1}, res=32)
        >>> images.shape, masks.shape, domains
        (torch.Size([3, 3, 32, 32]), torch.Size([3, 32, 32]), ['photo', 'photo', 'toon'])
    """
    images, _, masks, domains = _render_domains(counts, res=res, start_seed=start_seed, workers=workers)
    return images, masks, domains


def _part_shares(masks: torch.Tensor, n_parts: int) -> torch.Tensor:
    """Share of the pixels of each label, counted a chunk at a time (the maps are large)."""
    counts = torch.zeros(n_parts, dtype=torch.float64)
    for i in range(0, len(masks), 1024):
        counts += torch.bincount(masks[i:i + 1024].flatten().long(), minlength=n_parts)[:n_parts].double()
    return counts / counts.sum().clamp_min(1)


def _check_parts(net: PartSegmenter) -> None:
    from latentshop.data.synthetic import PART_NAMES

    if list(net.parts) != list(PART_NAMES):
        raise ConfigError(f"the segmenter's parts must be the renderer's {list(PART_NAMES)} (the masks' labels), "
                          f"got {net.parts}")


def train_part_segmenter(*, counts: Mapping[str, int] = PART_COUNTS, res: int = 64, options: FitOptions = PARTS_FIT,
                         weight_power: float = 0.25, device: str | torch.device = "cpu", workers: int = 0,
                         progress: Callable[[int, float], None] | None = None,
                         net: PartSegmenter | None = None) -> tuple[PartSegmenter, dict[str, Any]]:
    """Fit a part segmenter on freshly rendered training seeds and their part masks.

    The loss is per-pixel cross-entropy with part ``k`` weighted by ``(1 / share_k) ** weight_power``
    (normalised to a mean weight of 1 per pixel): small parts (eyes, brows, mouth) count a little
    more without swamping the probabilities' calibration. Images and masks are moved and mirrored
    together; brightness, contrast and noise change the images only.

    Args:
        counts: training faces per domain (seeds from 0, below the held-out seeds).
        res: render and input side.
        options: the optimisation recipe.
        weight_power: 0 for plain cross-entropy; 0.5 for square-root inverse-frequency weights.
        device: where to train.
        workers: render worker processes (0: this process).
        progress: called with ``(step, recent mean loss)`` after every step.
        net: a network to train (default: ``PartSegmenter(res=res)``).

    Returns:
        ``(net, info)``: the trained network (eval mode, on the CPU) and what was done.
    """
    if sum(counts.values()) > TEST_SEED_START:
        raise ConfigError(f"{sum(counts.values())} training faces would reach the held-out seeds "
                          f"(from {TEST_SEED_START}); render fewer")
    if not 0 <= weight_power <= 1:
        raise ConfigError(f"weight_power must be in [0, 1], got {weight_power}")
    torch.manual_seed(options.seed)
    net = net or PartSegmenter(res=res)
    _check_parts(net)
    if net.res != res:
        raise ConfigError(f"the segmenter's res ({net.res}) must match the render res ({res})")
    t0 = time.perf_counter()
    images, masks, _ = render_part_data(counts, res=res, workers=workers)
    render_s = time.perf_counter() - t0
    share = _part_shares(masks, len(net.parts))
    weight = share.clamp_min(1e-4).pow(-weight_power)
    weight = (weight / (weight * share).sum()).float()  # mean weight per pixel: 1

    def loss_fn(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, target.to(out.device), weight=weight.to(out.device))

    info = _fit(net, images, loss_fn, options, device=torch.device(device), xflip=True, photometric=True,
                progress=progress, label_maps=masks)
    seeds = sum(counts.values())
    info.update(images=len(images), render_seconds=round(render_s, 1), weight_power=weight_power,
                part_share={p: round(float(s), 5) for p, s in zip(net.parts, share)},
                part_weight={p: round(float(w), 4) for p, w in zip(net.parts, weight)},
                data=f"synthetic seeds 0..{seeds - 1} ({', '.join(f'{n} {d}' for d, n in counts.items())}) "
                     f"with their part masks, {res} px")
    return net.cpu(), info


def part_scores(pred: torch.Tensor, true: torch.Tensor, parts: Sequence[str]) -> dict[str, Any]:
    """Pixel accuracy, IoU per part and mean IoU, counted over every pixel of every image at once.

    A part's IoU is ``|predicted ∩ true| / |predicted ∪ true|``; parts in neither map are left out
    of ``iou`` and of ``mean_iou``.

    Args:
        pred: predicted labels ``(N, H, W)`` indexing ``parts``.
        true: true labels, the same shape.
        parts: the part names.

    Example:
        >>> s = part_scores(torch.tensor([[[0, 1, 1, 1]]]), torch.tensor([[[0, 0, 1, 1]]]), ["a", "b", "c"])
        >>> s["pixel_accuracy"], s["iou"], round(s["mean_iou"], 4)
        (0.75, {'a': 0.5, 'b': 0.6666666666666666}, 0.5833)
    """
    from latentshop.errors import ShapeError

    if pred.shape != true.shape:
        raise ShapeError(f"predicted labels {tuple(pred.shape)} and true labels {tuple(true.shape)} differ in shape")
    k = len(parts)
    pred, true = pred.long().flatten(), true.long().flatten()
    for name, t in (("predicted", pred), ("true", true)):
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= k):
            raise ShapeError(f"{name} labels must lie in 0..{k - 1} (one per part), got {int(t.min())}..{int(t.max())}")
    confusion = torch.bincount(true * k + pred, minlength=k * k).view(k, k).double()  # rows: true, cols: predicted
    hit = confusion.diagonal()
    union = confusion.sum(0) + confusion.sum(1) - hit
    iou = {p: float(hit[i] / union[i]) for i, p in enumerate(parts) if union[i] > 0}
    return {"pixel_accuracy": float(hit.sum() / confusion.sum().clamp_min(1)),
            "mean_iou": float(np.mean(list(iou.values()))) if iou else float("nan"), "iou": iou}


def evaluate_part_segmenter(net: PartSegmenter, *, n_per_domain: int = 1000, res: int = 64,
                            workers: int = 0) -> dict[str, dict[str, Any]]:
    """Scores on held-out seeds (from :data:`PART_EVAL_SEED_START`), per domain and over all.

    Returns:
        ``{domain or "all": part_scores(...)}``.
    """
    _check_parts(net)
    images, masks, domains = render_part_data({d: n_per_domain for d in DOMAINS}, res=res,
                                              start_seed=PART_EVAL_SEED_START, workers=workers)
    pred = net.predict(_to_float(images))
    out: dict[str, dict[str, Any]] = {}
    for domain in DOMAINS:
        sel = torch.tensor([d == domain for d in domains])
        out[domain] = part_scores(pred[sel], masks[sel], net.parts)
    out["all"] = part_scores(pred, masks, net.parts)
    return out
