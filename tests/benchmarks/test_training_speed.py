"""``benchmarks/training_speed.py``: quick mode on a tiny model writes complete results, and the
analytic convolution FLOP count matches the convolutions autograd actually runs."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from latentshop.training.presets import architecture, get_preset

REPO = Path(__file__).resolve().parents[2]


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("training_speed", REPO / "benchmarks" / "training_speed.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load_benchmark()


def tiny_case(bench, name="tiny16", batch_size=4):
    G_kwargs, D_kwargs = architecture(16, 3, z_dim=8, mapping_layers=2, channel_base=128, channel_max=16)
    options = replace(get_preset("synthetic").options, batch_size=batch_size)
    return bench.TrainingCase(name, G_kwargs, D_kwargs, options)


def test_training_speed_quick(bench, tmp_path):
    cases = [tiny_case(bench), replace(tiny_case(bench, "tiny16-ada"), options=replace(tiny_case(bench).options, ada=True))]
    argv = ["--quick", "--rounds", "1", "--steps", "2", "--warmup", "1", "--batch", "4", "--out-dir", str(tmp_path)]
    out = bench.main(argv, cases=cases)

    data = json.loads((tmp_path / "training_speed.json").read_text())
    assert data == json.loads(json.dumps(out))
    for key in ("cpu", "cores", "torch", "torch_threads", "date"):
        assert key in data["machine"]
    assert data["machine"]["quick"] is True
    for dtype in ("float32", "bfloat16"):
        assert data["peak"][dtype]["gflops"] > 0
    assert data["compile"]["first_compile_s"] >= 0
    assert len(data["results"]) == 8  # 2 cases x 2 paths x 2 dtypes
    for row in data["results"]:
        for key in ("preset", "impl", "dtype", "batch", "images_per_s", "achieved_gflops", "conv_gflop_per_image",
                    "fraction_of_peak", "fraction_of_fp32_peak", "fraction_of_bf16_peak", "phase_time_s", "cycle_step_time_s"):
            assert key in row, key
        assert row["batch"] == 4
        assert row["images_per_s"] > 0 and row["achieved_gflops"] > 0 and row["fraction_of_peak"] > 0
        # the window opens at a step where every phase runs, so every phase has a time
        assert all(row["phase_time_s"][ph] > 0 for ph in ("Gmain", "Greg", "Dmain", "Dreg"))
        weights = row["phase_weights"]
        assert weights["Gmain"] == 1 and weights["Greg"] == 0.25 and weights["Dreg"] == 1 / 16
        composed = sum(row["phase_time_s"][ph] * w for ph, w in weights.items()) + row["phase_time_s"]["other"]
        assert row["cycle_step_time_s"] == pytest.approx(composed)
        assert row["images_per_s"] == pytest.approx(row["batch"] / row["cycle_step_time_s"])
        if row["impl"] == "fast":
            assert row["speedup_vs_reference"] > 0
        else:
            assert "speedup_vs_reference" not in row
    table = (tmp_path / "training_speed.md").read_text()
    assert "| tiny16 | fast | bfloat16 | 4 |" in table and "| tiny16-ada | reference | float32 | 4 |" in table
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_flops_scale_with_batch(bench):
    G_kwargs, D_kwargs = architecture(16, 3, z_dim=8, mapping_layers=2, channel_base=128, channel_max=16)
    from latentshop.models.stylegan2 import Discriminator, Generator

    f_g, f_d = bench.forward_flops_per_image(Generator(**G_kwargs), Discriminator(**D_kwargs))
    assert f_g > 0 and f_d > 0
    options = tiny_case(bench).options
    for phases in (["Gmain", "Dmain"], ["Gmain", "Greg", "Dmain", "Dreg"]):
        small = bench.step_flops(phases, replace(options, batch_size=4), f_g, f_d)
        large = bench.step_flops(phases, replace(options, batch_size=8), f_g, f_d)
        assert large == 2 * small > 0
    shape = bench.ConvShape("x", 4, 8, 3, 8, 8, "same")
    assert shape.flops(6) == 3 * shape.flops(2) == 3 * 2 * 2 * 4 * 8 * 9 * 64
    # A whole 16-step cycle at the presets' intervals: 4.75 F_G + 8.375 F_D per image.
    cycle = bench._cycle_phases(options)
    assert len(cycle) == 16
    per_image = sum(bench.step_flops(p, options, f_g, f_d) for p in cycle) / 16 / options.batch_size
    assert per_image == pytest.approx(4.75 * f_g + 8.375 * f_d)


class _ConvFlops(TorchDispatchMode):
    """Counts the FLOPs of the (ungrouped) convolutions dispatched to aten, forward and backward."""

    def __init__(self):
        super().__init__()
        self.flops = Counter()

    @staticmethod
    def _conv(x_shape, w_shape, out_shape, transposed):
        pixels = math.prod((x_shape if transposed else out_shape)[2:])
        return 2 * x_shape[0] * pixels * math.prod(w_shape)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        packet = func._overloadpacket
        if packet is torch.ops.aten.convolution and args[8] == 1:  # groups > 1: the FIR filters, not counted
            self.flops["forward"] += self._conv(args[0].shape, args[1].shape, out.shape, args[6])
        elif packet is torch.ops.aten.convolution_backward and args[9] == 1:
            grad, x, w, transposed, mask = args[0], args[1], args[2], args[7], args[10]
            fwd = self._conv(x.shape, w.shape, grad.shape, transposed)
            self.flops["backward"] += fwd * (int(mask[0]) + int(mask[1]))
        return out


@pytest.mark.parametrize("impl", ["reference", "fast"])
def test_flop_rule_matches_dispatched_convolutions(bench, impl):
    trainer = bench.build_trainer(tiny_case(bench), "float32", bench.BenchmarkSettings(dataset_size=8), impl)
    f_g, f_d = bench.forward_flops_per_image(trainer.G, trainer.D)
    for step in range(2):  # step 0 runs all four phases, step 1 only Gmain and Dmain
        with _ConvFlops() as counter:
            logs = trainer.train_step()
        phases = [phase for phase, key in bench.PHASE_LOG_KEYS.items() if key in logs]
        assert len(phases) == (4 if step == 0 else 2)
        counted = counter.flops["forward"] + counter.flops["backward"]
        # The rule also counts fromRGB's skipped input gradients (3 input channels): a small excess.
        assert bench.step_flops(phases, trainer.options, f_g, f_d) == pytest.approx(counted, rel=0.02)


def test_profile_split_covers_the_step(bench):
    trainer = bench.build_trainer(tiny_case(bench), "float32", bench.BenchmarkSettings(dataset_size=8), "fast")
    trainer.train_step()
    prof = bench.profile_step(trainer)
    assert all(prof["phases_s"][ph] > 0 for ph in ("Gmain", "Greg", "Dmain", "Dreg"))
    assert prof["categories_s"]["convolution forward"] > 0 and prof["categories_s"]["convolution backward"] > 0
    assert sum(prof["categories_s"].values()) > 0
