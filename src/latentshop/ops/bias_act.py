"""Fused bias + activation + gain + clamp, as in NVIDIA's StyleGAN2-ADA ``bias_act``.

The order of operations is the reference one: add the bias, apply the activation, multiply
by the gain, then clamp to ``[-clamp, clamp]``. Each activation has a default gain chosen to
keep the signal's second moment (``sqrt(2)`` for ReLU and leaky ReLU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from latentshop.errors import ConfigError

__all__ = ["ACTIVATIONS", "Activation", "bias_act"]


@dataclass(frozen=True)
class Activation:
    """One activation function and its defaults."""

    func: Callable[[torch.Tensor, float], torch.Tensor]
    def_alpha: float  # slope parameter for leaky ReLU / ELU-like functions
    def_gain: float  # gain that preserves the second moment of a unit Gaussian


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(lambda x, a: x, 0.0, 1.0),
    "relu": Activation(lambda x, a: F.relu(x), 0.0, math.sqrt(2)),
    "lrelu": Activation(lambda x, a: F.leaky_relu(x, a), 0.2, math.sqrt(2)),
    "tanh": Activation(lambda x, a: torch.tanh(x), 0.0, 1.0),
    "sigmoid": Activation(lambda x, a: torch.sigmoid(x), 0.0, 1.0),
    "elu": Activation(lambda x, a: F.elu(x), 0.0, 1.0),
    "selu": Activation(lambda x, a: F.selu(x), 0.0, 1.0),
    "softplus": Activation(lambda x, a: F.softplus(x), 0.0, 1.0),
    "swish": Activation(lambda x, a: torch.sigmoid(x) * x, 0.0, math.sqrt(2)),
}


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    *,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """Add a bias along ``dim``, apply ``act``, scale by ``gain`` and clamp.

    Args:
        x: input of any shape, any float dtype.
        b: bias ``[x.shape[dim]]`` or ``None``.
        dim: the channel dimension the bias runs along.
        act: a name in :data:`ACTIVATIONS`.
        alpha: activation slope (default: the activation's own, 0.2 for ``lrelu``).
        gain: output scale (default: the activation's own, ``sqrt(2)`` for ``lrelu``).
        clamp: clamp the output to ``[-clamp, clamp]``; ``None`` disables it.

    Returns:
        A tensor shaped like ``x``.

    Example:
        >>> bias_act(torch.tensor([[-1.0, 1.0]]), torch.tensor([0.0, 1.0]), act="relu", gain=1.0)
        tensor([[0., 2.]])
    """
    if act not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {act!r}; choose one of {sorted(ACTIVATIONS)}")
    spec = ACTIVATIONS[act]
    alpha = spec.def_alpha if alpha is None else float(alpha)
    gain = spec.def_gain if gain is None else float(gain)
    if b is not None:
        shape = [-1 if i == dim % x.ndim else 1 for i in range(x.ndim)]
        x = x + b.to(x.dtype).reshape(shape)
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x
