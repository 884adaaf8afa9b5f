"""Evaluators: small CNNs that label images for measurement, never the thing being measured.

Two networks share one plain convolutional backbone (conv-BN-ReLU stages, each halving the
resolution, then a linear layer on the flattened 4x4 map, which keeps the spatial layout that
head yaw and light direction need):

- :class:`FactorRegressor` predicts every factor of the synthetic faces
  (:data:`latentshop.data.synthetic.FACTORS`) from an image of any domain: float factors by
  regression on ``[0, 1]``-normalised targets, the two hues as a point on the unit circle (hue is
  periodic), ``glasses`` as a logit and ``clothing_pattern`` as class logits.
- :class:`ExpressionClassifier` predicts a facial expression class from an aligned grayscale face
  (trained on lfw-faces).

Both take images ``(N, C, H, W)`` in ``[-1, 1]`` of any size: they resample to their input size
(64 px by default) and convert channels themselves, so generator samples can be fed directly.
Trained weights are shipped with latentshop and loaded with
:func:`latentshop.checkpoints.evaluators.load_evaluator`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from latentshop.errors import ShapeError

__all__ = ["Backbone", "FactorRegressor", "ExpressionClassifier", "CIRCULAR_FACTORS", "prepare_input"]

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
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
                                   nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                       nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        self.convs = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(widths[-1] * 16, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x).flatten(1)  # [N, C * 4 * 4]
        return F.relu(self.fc(self.dropout(x)))


class _Evaluator(nn.Module):
    """Shared plumbing: input preparation, the backbone, ``init_kwargs`` for saving."""

    kind = ""

    def __init__(self, *, res: int, channels: int, widths: Sequence[int], features: int, outputs: int):
        super().__init__()
        self.res, self.channels = int(res), int(channels)
        self.backbone = Backbone(channels, res, widths, features)
        self.head = nn.Linear(features, outputs)
        nn.init.zeros_(self.head.weight)  # start from constant predictions: a calm first step for every loss
        nn.init.zeros_(self.head.bias)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """Raw outputs ``(N, outputs)`` for images ``(N, C, H, W)`` in ``[-1, 1]``."""
        x = prepare_input(img, res=self.res, channels=self.channels)
        return self.head(self.backbone(x))

    def _predict_raw(self, img: torch.Tensor, batch: int) -> torch.Tensor:
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                dev = next(self.parameters()).device
                return torch.cat([self(img[i:i + batch].to(dev)).float().cpu() for i in range(0, len(img), batch)])
        finally:
            self.train(was_training)


class FactorRegressor(_Evaluator):
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
        from latentshop.data.synthetic import FACTORS

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


class ExpressionClassifier(_Evaluator):
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
