"""Run-time helpers: the bfloat16 probe that picks a training precision."""

from __future__ import annotations

import math

from latentshop.runtime import bf16_speedup


def test_bf16_speedup_measures_a_ratio_on_the_cpu():
    ratio = bf16_speedup("cpu", channels=16, res=8, batch=2)
    assert math.isfinite(ratio) and ratio > 0
    assert bf16_speedup("meta") == 1.0  # nothing to measure there
