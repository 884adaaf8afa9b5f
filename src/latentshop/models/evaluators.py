"""Evaluators: small CNNs that label images for measurement, never the thing being measured.

Two networks share one plain convolutional backbone (conv-BN-ReLU stages, each halving the
resolution, then a linear layer on the flattened 4x4 map, which keeps the spatial layout that
head yaw and light direction need); a third is fully convolutional and built from the same stages:

- :class:`FactorRegressor` predicts every factor of the synthetic faces
  (:data:`latentshop.data.synthetic.FACTORS`) from an image of any domain: float factors by
  regression on ``[0, 1]``-normalised targets, the two hues as a point on the unit circle (hue is
  periodic), ``glasses`` as a logit and ``clothing_pattern`` as class logits.
- :class:`ExpressionClassifier` predicts a facial expression class from an aligned grayscale face
  (trained on lfw-faces).
- :class:`PartSegmenter` labels every pixel with a face part
  (:data:`latentshop.data.synthetic.PART_NAMES`): a small U-Net (Ronneberger et al., 2015,
  "U-Net: Convolutional Networks for Biomedical Image Segmentation": an encoder of the backbone's
  stages, a decoder that upsamples and joins the encoder map of the same size). It is trained on
  synthetic renders, whose part masks are known, to tell where in a generator sample an edit
  changes pixels.

All three take images ``(N, C, H, W)`` in ``[-1, 1]`` of any size: they resample to their input size
(64 px by default) and convert channels themselves, so generator samples can be fed directly.
Trained weights are shipped with latentshop and loaded with
:func:`latentshop.checkpoints.evaluators.load_evaluator`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from latentshop.errors import ConfigError, ShapeError

__all__ = [
    "Backbone",
    "FactorRegressor",
    "ExpressionClassifier",
    "PartSegmenter",
    "CIRCULAR_FACTORS",
    "PART_COLOURS",
    "colour_parts",
    "prepare_input",
]

#: synthetic factors whose value is an angle (a hue in ``[0, 1)``): predicted as ``(cos, sin)``.
CIRCULAR_FACTORS = ("background_hue", "clothing_hue")


def prepare_input(img: torch.Tensor, *, res: int, channels: int) -> torch.Tensor:
    """Bring images to the evaluator's input: ``(N, channels, res, res)`` float32 in ``[-1, 1]``.

    Args:
        img: ``(N, 1 or 3, H, W)`` (or ``(1 or 3, H, W)``) in ``[-1, 1]``; square or not.
        res: side of the evaluator's input; other sizes are resampled (area filter when shrinking,
            bilinear when enlarging).
        channels: 1 (luma, ITU-R 601 weights) or 3 (grayscale is repeated).

    Example:
        >>> prepare_input(torch.zeros(2, 3, 128, 128), res=64, channels=1).shape
        torch.Size([2, 1, 64, 64])
    """
    if img.ndim == 3:
        img = img[None]
    if img.ndim != 4 or img.shape[1] not in (1, 3) or img.shape[0] == 0:
        raise ShapeError(f"expected images (N, 1 or 3, H, W), got shape {tuple(img.shape)}")
    img = img.float()
    if not torch.isfinite(img).all():
        raise ShapeError("the images hold NaN or infinite values")
    if img.shape[1] == 3 and channels == 1:
        img = (img * img.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    elif img.shape[1] == 1 and channels == 3:
        img = img.expand(-1, 3, -1, -1)
    if img.shape[-2:] != (res, res):
        shrink = img.shape[-2] >= res and img.shape[-1] >= res
        img = F.interpolate(img, size=(res, res), mode="area" if shrink else "bilinear",
                            align_corners=None if shrink else False)
    return img.contiguous()


def _conv_bn_relu(cin: int, cout: int, *, stride: int = 1) -> list[nn.Module]:
    """A 3x3 convolution (no bias: batch norm follows), batch norm and ReLU, as a list of layers."""
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _stage(cin: int, cout: int, *, stride: int) -> list[nn.Module]:
    """One stage of the backbone: a (strided) conv-BN-ReLU, then a conv-BN-ReLU at the new size."""
    return _conv_bn_relu(cin, cout, stride=stride) + _conv_bn_relu(cout, cout)


class Backbone(nn.Module):
    """Conv-BN-ReLU stages from ``res`` down to 4x4, then a linear layer on the flattened map.

    Args:
        in_channels: image channels.
        res: input side (a power of two, 16 or more).
        widths: channels of the stages, one per halving (the last is the 4x4 stage); the stem
            runs at full resolution with ``widths[0]`` channels.
        features: length of the output feature vector.
        dropout: dropout before the output layer, during training.
    """

    def __init__(self, in_channels: int, res: int, widths: Sequence[int], features: int = 256, dropout: float = 0.1):
        super().__init__()
        stages = int(math.log2(res)) - 2
        if res < 16 or 2 ** (stages + 2) != res:
            raise ShapeError(f"res must be a power of two >= 16, got {res}")
        if len(widths) != stages + 1:
            raise ShapeError(f"need {stages + 1} widths for res {res}, got {len(widths)}")
        layers = _conv_bn_relu(in_channels, widths[0])
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += _stage(cin, cout, stride=2)
        self.convs = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(widths[-1] * 16, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x).flatten(1)  # [N, C * 4 * 4]
        return F.relu(self.fc(self.dropout(x)))


class _Evaluator(nn.Module):
    """Shared plumbing: input size and channels, batched prediction; subclasses set ``init_kwargs``."""

    kind = ""

    def __init__(self, *, res: int, channels: int):
        super().__init__()
        self.res, self.channels = int(res), int(channels)

    def _predict_raw(self, img: torch.Tensor, batch: int,
                     finish: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Outputs in eval mode without gradients, ``batch`` images at a time, gathered on the CPU.

        ``finish`` maps each batch's raw output before it is gathered (so large per-pixel outputs
        are reduced batch by batch, not all at once).
        """
        if img.ndim == 3:
            img = img[None]
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                dev = next(self.parameters()).device
                outs = []
                for i in range(0, len(img), batch):
                    out = self(img[i:i + batch].to(dev)).float()
                    outs.append((finish(out) if finish is not None else out).cpu())
                return torch.cat(outs)
        finally:
            self.train(was_training)


class _VectorEvaluator(_Evaluator):
    """The backbone and a linear head: one output vector per image."""

    def __init__(self, *, res: int, channels: int, widths: Sequence[int], features: int, outputs: int):
        super().__init__(res=res, channels=channels)
        self.backbone = Backbone(channels, res, widths, features)
        self.head = nn.Linear(features, outputs)
        nn.init.zeros_(self.head.weight)  # start from constant predictions: a calm first step for every loss
        nn.init.zeros_(self.head.bias)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """Raw outputs ``(N, outputs)`` for images ``(N, C, H, W)`` in ``[-1, 1]``."""
        x = prepare_input(img, res=self.res, channels=self.channels)
        return self.head(self.backbone(x))


class FactorRegressor(_VectorEvaluator):
    """Predicts every factor of the synthetic faces from an image.

    Args:
        factors: the factor table (name -> :class:`~latentshop.data.synthetic.Factor`); default
            :data:`latentshop.data.synthetic.FACTORS`.
        res: input side.
        channels: input channels (3: the synthetic faces are in colour).
        widths: backbone stage widths.
        features: backbone feature length.

    Example:
        >>> net = FactorRegressor(res=16, widths=(8, 8, 8))
        >>> out = net.predict(torch.zeros(2, 3, 32, 32))
        >>> sorted(out)[:3], out["smile"].shape, out["clothing_pattern"].dtype
        (['age', 'background_hue', 'beard'], torch.Size([2]), torch.int64)
    """

    kind = "factor-regressor"

    def __init__(self, *, res: int = 64, channels: int = 3, widths: Sequence[int] = (16, 32, 64, 128, 256),
                 features: int = 256, factors: dict[str, Any] | None = None):
        from latentshop.synthetic_factors import FACTORS

        self.factors = dict(factors or FACTORS)
        layout: list[tuple[str, str, int]] = []  # (name, kind, width) of each output slice
        for name, fac in self.factors.items():
            if fac.kind == "float":
                layout.append((name, "circular" if name in CIRCULAR_FACTORS else "float", 2 if name in CIRCULAR_FACTORS else 1))
            elif fac.kind == "bool":
                layout.append((name, "bool", 1))
            else:
                layout.append((name, "choice", len(fac.choices)))
        super().__init__(res=res, channels=channels, widths=widths, features=features,
                         outputs=sum(w for _, _, w in layout))
        self.layout = layout
        self.init_kwargs = {"res": self.res, "channels": self.channels, "widths": list(widths), "features": features}

    def split(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw output ``(N, outputs)`` as ``{factor: (N,) or (N, k) slice}``."""
        parts, i = {}, 0
        for name, kind, width in self.layout:
            parts[name] = out[:, i] if kind in ("float", "bool") else out[:, i:i + width]
            i += width
        return parts

    def encode_targets(self, factors: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Training targets from factor dicts: floats normalised to ``[0, 1]``, hues as ``(cos, sin)``,
        ``glasses`` as 0/1, ``clothing_pattern`` as a class index."""
        out: dict[str, torch.Tensor] = {}
        for name, kind, _ in self.layout:
            fac = self.factors[name]
            vals = [f[name] for f in factors]
            if kind == "float":
                out[name] = (torch.tensor(vals, dtype=torch.float32) - fac.low) / (fac.high - fac.low)
            elif kind == "circular":
                a = 2 * math.pi * torch.tensor(vals, dtype=torch.float32)
                out[name] = torch.stack([a.cos(), a.sin()], 1)
            elif kind == "bool":
                out[name] = torch.tensor([float(bool(v)) for v in vals])
            else:
                out[name] = torch.tensor([fac.choices.index(v) for v in vals], dtype=torch.long)
        return out

    def loss(self, out: torch.Tensor, targets: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Sum over factors of MSE (floats, hue vectors), BCE (glasses) and cross-entropy (pattern)."""
        parts = self.split(out.float())
        losses: dict[str, torch.Tensor] = {}
        for name, kind, _ in self.layout:
            p, t = parts[name], targets[name].to(out.device)
            if kind == "float":
                losses[name] = F.mse_loss(p, t) * 12  # variance of a uniform [0, 1] is 1/12: this is 1 - R²
            elif kind == "circular":
                losses[name] = F.mse_loss(p, t) * 2
            elif kind == "bool":
                losses[name] = F.binary_cross_entropy_with_logits(p, t)
            else:
                losses[name] = F.cross_entropy(p, t)
        total = torch.stack(list(losses.values())).sum()
        return total, {k: float(v.detach()) for k, v in losses.items()}

    def decode(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw outputs to factor values: floats in their range, hues in ``[0, 1)``, ``glasses`` as a
        probability, ``clothing_pattern`` as a class index (``<name>_probs`` holds the probabilities)."""
        parts = self.split(out.float())
        values: dict[str, torch.Tensor] = {}
        for name, kind, _ in self.layout:
            fac, p = self.factors[name], parts[name]
            if kind == "float":
                values[name] = fac.low + p.clamp(0, 1) * (fac.high - fac.low)
            elif kind == "circular":
                values[name] = torch.atan2(p[:, 1], p[:, 0]).div(2 * math.pi).remainder(1.0)
            elif kind == "bool":
                values[name] = torch.sigmoid(p)
            else:
                values[name + "_probs"] = p.softmax(1)
                values[name] = p.argmax(1)
        return values

    def predict(self, img: torch.Tensor, *, batch: int = 256) -> dict[str, torch.Tensor]:
        """Factor values for images ``(N, C, H, W)`` in ``[-1, 1]`` (eval mode, no gradients), on the CPU.

        Returns:
            ``{factor: (N,)}`` as in :meth:`decode`.
        """
        return self.decode(self._predict_raw(img, batch))


class ExpressionClassifier(_VectorEvaluator):
    """Classifies the expression of an aligned face.

    Args:
        classes: the class names, in logit order.
        res: input side.
        channels: input channels (1: lfw-faces are grayscale; colour input is converted to luma).
        widths: backbone stage widths.
        features: backbone feature length.

    Example:
        >>> net = ExpressionClassifier(classes=["happiness", "neutral"], res=16, widths=(8, 8, 8))
        >>> net.predict_proba(torch.zeros(3, 1, 64, 64)).shape
        torch.Size([3, 2])
    """

    kind = "expression-classifier"

    def __init__(self, *, classes: Sequence[str], res: int = 64, channels: int = 1,
                 widths: Sequence[int] = (16, 32, 64, 128, 256), features: int = 256):
        if len(classes) < 2 or len(set(classes)) != len(classes):
            raise ShapeError(f"need at least two distinct classes, got {list(classes)}")
        super().__init__(res=res, channels=channels, widths=widths, features=features, outputs=len(classes))
        self.classes = [str(c) for c in classes]
        self.init_kwargs = {"classes": self.classes, "res": self.res, "channels": self.channels,
                            "widths": list(widths), "features": features}

    def predict_proba(self, img: torch.Tensor, *, batch: int = 256) -> torch.Tensor:
        """Class probabilities ``(N, len(classes))`` for images ``(N, C, H, W)`` in ``[-1, 1]``."""
        return self._predict_raw(img, batch).softmax(1)

    def predict(self, img: torch.Tensor, *, batch: int = 256) -> list[str]:
        """The most likely class name per image."""
        return [self.classes[i] for i in self.predict_proba(img, batch=batch).argmax(1).tolist()]


#: colours (RGB) of the part label maps, in :data:`latentshop.data.synthetic.PART_NAMES` order;
#: labels past the end reuse them from the start.
PART_COLOURS: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),  # background
    (230, 180, 140),  # skin
    (130, 70, 30),  # hair
    (40, 120, 255),  # eyes
    (255, 215, 0),  # brows
    (220, 30, 60),  # mouth
    (0, 220, 220),  # glasses
    (140, 50, 170),  # beard
    (60, 180, 75),  # clothing
)


def colour_parts(labels: torch.Tensor) -> torch.Tensor:
    """Part label maps as colour images, one :data:`PART_COLOURS` entry per label.

    Args:
        labels: integer labels ``(N, H, W)`` or ``(H, W)``, as :meth:`PartSegmenter.predict` gives.

    Returns:
        ``uint8`` images ``(N, H, W, 3)`` or ``(H, W, 3)``.

    Example:
        >>> colour_parts(torch.tensor([[0, 5]])).tolist()
        [[[0, 0, 0], [220, 30, 60]]]
    """
    if labels.is_floating_point() or labels.is_complex() or labels.ndim not in (2, 3):
        raise ShapeError(f"expected integer labels (N, H, W) or (H, W), got {labels.dtype} {tuple(labels.shape)}")
    if labels.numel() and int(labels.min()) < 0:
        raise ShapeError(f"labels must be non-negative part indices, got a minimum of {int(labels.min())}")
    palette = torch.tensor(PART_COLOURS, dtype=torch.uint8)
    return palette[labels.long().cpu() % len(palette)]


class PartSegmenter(_Evaluator):
    """Labels every pixel of a face image with a part: a small U-Net.

    The encoder is the backbone's stages: a stage at full resolution, then one stride-2 stage per
    further width. The decoder walks back up: it upsamples bilinearly, concatenates the encoder map
    of the same size and runs a stage at that size; a 1x1 convolution at full resolution gives one
    logit per part.

    Args:
        parts: the part names, in logit order; default :data:`latentshop.data.synthetic.PART_NAMES`,
            whose indices are the label values of the synthetic renders' masks.
        res: input side; a multiple of ``2 ** (len(widths) - 1)`` with at least 2 px at the deepest
            level.
        channels: input channels (3: the synthetic faces are in colour).
        widths: stage widths, from full resolution down (each further one halves the resolution).

    Example:
        >>> net = PartSegmenter(res=16, widths=(4, 8))
        >>> img = torch.zeros(2, 3, 40, 40)
        >>> net(img).shape, net.predict(img).shape
        (torch.Size([2, 9, 16, 16]), torch.Size([2, 40, 40]))
        >>> net.part_masks(img, ["eyes", "brows"]).shape
        torch.Size([2, 1, 40, 40])
    """

    kind = "part-segmenter"

    def __init__(self, *, parts: Sequence[str] | None = None, res: int = 64, channels: int = 3,
                 widths: Sequence[int] = (16, 32, 64, 96)):
        from latentshop.synthetic_factors import PART_NAMES

        names = [str(p) for p in (PART_NAMES if parts is None else parts)]
        if len(names) < 2 or len(set(names)) != len(names):
            raise ShapeError(f"need at least two distinct part names, got {names}")
        widths = [int(w) for w in widths]
        if not widths or min(widths) < 1:
            raise ShapeError(f"need one or more positive widths, got {widths}")
        step = 2 ** (len(widths) - 1)  # total downsampling of the encoder
        if res % step or res // step < 2:
            raise ShapeError(f"res must be a multiple of {step} and at least {2 * step} for {len(widths)} widths, "
                             f"got {res}; use fewer widths or a larger res")
        super().__init__(res=res, channels=channels)
        self.parts = names
        self.encoder = nn.ModuleList(
            [nn.Sequential(*_stage(channels, widths[0], stride=1))]
            + [nn.Sequential(*_stage(cin, cout, stride=2)) for cin, cout in zip(widths[:-1], widths[1:])])
        # decoder[k] joins level k + 1 (upsampled) with the encoder map of level k
        self.decoder = nn.ModuleList(
            [nn.Sequential(*_stage(deep + skip, skip, stride=1)) for skip, deep in zip(widths[:-1], widths[1:])])
        self.head = nn.Conv2d(widths[0], len(names), 1)
        nn.init.zeros_(self.head.weight)  # start from uniform probabilities, as the other evaluators do
        nn.init.zeros_(self.head.bias)
        self.init_kwargs = {"parts": self.parts, "res": self.res, "channels": self.channels, "widths": widths}

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, len(parts), res, res)`` for images ``(N, C, H, W)`` in ``[-1, 1]``."""
        x = prepare_input(img, res=self.res, channels=self.channels)
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        x = skips.pop()
        for stage in reversed(self.decoder):
            skip = skips.pop()
            up = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = stage(torch.cat([up, skip], 1))  # [N, deep + skip, h, w]
        return self.head(x)

    @staticmethod
    def _at_size(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if tuple(logits.shape[-2:]) == size:
            return logits
        # antialiased when shrinking, plain bilinear when enlarging
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False, antialias=True)

    def predict_proba(self, img: torch.Tensor, *, batch: int = 64) -> torch.Tensor:
        """Part probabilities ``(N, len(parts), H, W)`` at the input's size, on the CPU.

        Args:
            img: ``(N, C, H, W)`` in ``[-1, 1]``, any size (logits are resampled back to ``H x W``).
            batch: images per forward pass.
        """
        size = tuple(img.shape[-2:])
        return self._predict_raw(img, batch, lambda out: self._at_size(out, size).softmax(1))

    def predict(self, img: torch.Tensor, *, batch: int = 64) -> torch.Tensor:
        """The most likely part per pixel: ``int64`` labels ``(N, H, W)`` indexing :attr:`parts`."""
        size = tuple(img.shape[-2:])
        return self._predict_raw(img, batch, lambda out: self._at_size(out, size).argmax(1))

    def part_masks(self, img: torch.Tensor, parts: Sequence[str], *, batch: int = 64) -> torch.Tensor:
        """Where the named parts are: the union of their predicted regions.

        Args:
            img: ``(N, C, H, W)`` in ``[-1, 1]``.
            parts: part names (a single name is taken as a list of one; an empty list gives empty masks).
            batch: images per forward pass.

        Returns:
            ``(N, 1, H, W)`` float32 masks, 1 inside the union and 0 elsewhere.
        """
        names = [parts] if isinstance(parts, str) else list(parts)
        unknown = [p for p in names if p not in self.parts]
        if unknown:
            raise ConfigError(f"unknown part name(s) {unknown}; this segmenter knows {self.parts}")
        idx = torch.tensor([self.parts.index(p) for p in names], dtype=torch.long)
        return torch.isin(self.predict(img, batch=batch), idx).unsqueeze(1).float()
