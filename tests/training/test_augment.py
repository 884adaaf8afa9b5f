"""ADA: the transforms, their differentiability, and the adaptation of p."""

from __future__ import annotations

import torch

from latentshop.training.augment import AdaptiveAugment


def test_identity_at_p0_and_changes_at_p1():
    x = torch.randn(8, 3, 16, 16)
    assert torch.equal(AdaptiveAugment(p=0.0)(x), x)
    torch.manual_seed(0)
    y = AdaptiveAugment(p=1.0)(x)
    assert y.shape == x.shape and not torch.allclose(y, x)


def test_differentiable_and_grayscale():
    x = torch.randn(4, 1, 16, 16, requires_grad=True)
    AdaptiveAugment(p=1.0)(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_p_follows_the_overfitting_heuristic():
    aug = AdaptiveAugment(target=0.6, speed_kimg=1.0)
    aug.accumulate(torch.ones(64, 1))  # D is sure every real is real: overfitting
    rt = aug.adjust(100)
    assert rt == 1.0 and abs(float(aug.p) - 0.1) < 1e-6
    aug.accumulate(-torch.ones(64, 1))  # D unsure: lower p, clamped at 0
    aug.adjust(1000)
    assert float(aug.p) == 0.0
