"""StyleGAN2 training throughput on the CPU, float32 against bfloat16, and against the convolution peak.

For each training preset (``latentshop.training.presets``: ``default`` and ``synthetic``, their
architecture from :func:`~latentshop.training.presets.architecture` and their
:class:`~latentshop.training.loop.TrainOptions`) and each dtype (float32, and bfloat16 through
``TrainOptions.bf16``, i.e. CPU autocast), this script builds a :class:`~latentshop.training.loop.Trainer`
on an in-memory dataset of random uint8 images of the preset's resolution and channels (no files
are read and no synthetic faces are rendered: it measures the training step, not data loading),
runs a few untimed warm-up steps, then times windows of ``Trainer.train_step()`` calls and reports

* images/s = real images shown (batch size x steps) / window time, median over rounds (min, max);
* the bfloat16 / float32 ratio of the medians, per preset;
* achieved GFLOP/s = the window's nominal convolution FLOPs (below) / window time (median over rounds);
* the fraction of the machine's measured convolution peak, in float32 and in bfloat16.

Lazy regularisation makes steps unequal: path-length regularisation (``Greg``) runs every
``g_reg_interval`` = 4 steps, R1 (``Dreg``) every ``d_reg_interval`` = 16 steps. The default window
is 16 steps, one whole cycle, so it holds exactly the long-run mix (4 ``Greg``, 1 ``Dreg``); the
phases that actually ran are read from each step's logged losses and FLOPs are counted per step,
so a shorter window (``--quick``) is still counted exactly, it is just not representative of a
long run (the results say ``whole_cycles: false``).

Convolution FLOP counting (nominal: one multiply-add = 2 FLOPs per weight per output pixel, per
*input* pixel for the stride-2 transposed upsampling convolution ``conv0`` of the generator):

* ``F_G`` = forward FLOPs per image of every convolution of ``G.synthesis`` (``conv0``, ``conv1``,
  ``torgb``); ``F_D`` = forward FLOPs per image of every convolution of ``D`` (``fromrgb``,
  ``conv0``, the stride-2 ``conv1`` at the output resolution, the 1x1 ``skip`` at the output
  resolution since it runs after decimation, the epilogue ``conv``);
* a backward pass through a convolution costs 1x its forward FLOPs for the input gradient and 1x for
  the weight gradient, the latter only where the weights are trained in that phase;
* a gradient penalty (R1, path length) costs 6x forward: forward 1, input-gradient pass with
  ``create_graph`` 1, then the backward through the forward graph 2 and through the gradient graph 2;
* per phase, per image of that phase's batch (``B``; path length uses ``B // pl_batch_shrink``):

  ======  ========================================================  =====  =====
  phase   what runs                                                  x F_G  x F_D
  ======  ========================================================  =====  =====
  Gmain   G fwd + bwd (2); D fwd + input-gradient bwd (D frozen)       3      2
  Greg    path-length penalty through G (B // 2 images)               6      0
  Dmain   G fwd (no grad); D fwd + bwd on fakes and on reals          1      6
  Dreg    R1 penalty through D                                         0      6
  ======  ========================================================  =====  =====

  so with the presets' intervals a whole 16-step cycle costs ``4.75 F_G + 8.375 F_D`` per image.
  The input gradient of the layer that reads a non-differentiated image (``fromrgb``: 1x1 from 1-3
  channels, < 0.5 % of ``F_D``) is counted although autograd skips it. Not counted: dense layers
  (mapping network, affines, D's ``fc``/``out``: < 1 % of the FLOPs at these widths), FIR
  filtering, modulation, bias/activation, minibatch std, augmentation, Adam and the ``G_ema`` update:
  they are the overhead that the fraction of the peak exposes. Checked against the convolutions that
  autograd actually dispatches (``aten.convolution`` and ``aten.convolution_backward``, counted
  by their output masks): within 0.3 % per step at the presets' sizes (the test checks a tiny model).

The peak: for every distinct convolution shape of the benchmarked G and D at the training batch,
a plain ``F.conv2d`` (``F.conv_transpose2d`` with stride 2, padding 1, output padding 1 for the
upsampling layers; stride 2 without padding on a ``2 H_out + 1`` input for D's downsampling 3x3)
in float32 and in bfloat16 tensors, contiguous and channels-last, forward only; peak GFLOP/s of a
dtype = the best shape and layout (median over rounds). ``layer_mix_limit_gflops`` is the
generator_speed-style limit for the same work: the case's forward FLOPs / the summed median times
of its layers, at each layer's faster layout.

Timing runs in interleaved rounds (each round times one window of every case, then every peak
convolution, the case order reversed every other round), so a busy machine slows all alike.

Run:
    python benchmarks/training_speed.py            # full run (about 6-10 minutes on 2 cores)
    python benchmarks/training_speed.py --quick    # smoke test: batch 8, 2-step windows (under a minute)

Writes ``benchmarks/results/training_speed.json`` and ``benchmarks/results/training_speed.md``
(``--out-dir`` elsewhere).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from latentshop.models.layers import Conv2dLayer
from latentshop.models.stylegan2 import Discriminator, Generator
from latentshop.training.loop import TrainOptions, Trainer
from latentshop.training.presets import architecture, get_preset

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
NAME = "training_speed"

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}

# Multiples of (F_G, F_D) per image of the phase's batch (see the module docstring).
PHASE_FLOPS: dict[str, tuple[int, int]] = {"Gmain": (3, 2), "Greg": (6, 0), "Dmain": (1, 6), "Dreg": (0, 6)}
# Trainer.train_step() logs one of these per phase it ran.
PHASE_LOG_KEYS = {"Gmain": "loss_G", "Greg": "loss_Gpl", "Dmain": "loss_D", "Dreg": "loss_Dr1"}


@dataclass(frozen=True)
class TrainingCase:
    """One model recipe to train: G and D constructor arguments and the optimisation settings."""

    name: str  # label in the tables (the preset name)
    G_kwargs: dict[str, Any]  # Generator(**G_kwargs)
    D_kwargs: dict[str, Any]  # Discriminator(**D_kwargs)
    options: TrainOptions  # its bf16 field is set per dtype by the benchmark


@dataclass(frozen=True)
class BenchmarkSettings:
    """How much to measure."""

    dtypes: tuple[str, ...] = ("float32", "bfloat16")  # keys of DTYPES
    rounds: int = 3  # interleaved timing rounds (median reported)
    steps_per_round: int = 16  # train_step() calls per timed window (16 = one lazy-regularisation cycle)
    warmup_steps: int = 2  # untimed steps per trainer first (step 0 runs every phase)
    dataset_size: int = 256  # random uint8 images held in memory
    ada_p: float | None = None  # fix ADA's augmentation probability (None: starts at 0, as a fresh run)
    seed: int = 0  # weights, data order and latents
    quick: bool = False  # recorded in the results


def preset_case(name: str, *, batch_size: int | None = None) -> TrainingCase:
    """The benchmark case of a training preset, as ``latentshop train --preset NAME`` builds it."""
    p = get_preset(name)
    G_kwargs, D_kwargs = architecture(p.res, p.channels, z_dim=p.z_dim, mapping_layers=p.mapping_layers,
                                      channel_base=p.channel_base, channel_max=p.channel_max, c_dim=0)
    options = p.options if batch_size is None else replace(p.options, batch_size=batch_size)
    return TrainingCase(p.name, G_kwargs, D_kwargs, options)


def default_cases(batch_size: int | None = None) -> list[TrainingCase]:
    return [preset_case(name, batch_size=batch_size) for name in ("default", "synthetic")]


class RandomImages(torch.utils.data.Dataset):
    """``n`` random uint8 images ``[C, H, W]`` with empty labels, held in memory (like the real datasets' items)."""

    def __init__(self, n: int, *, res: int, channels: int, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        self.images = torch.randint(0, 256, [n, channels, res, res], generator=gen, dtype=torch.uint8)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], torch.zeros([0])


# -- convolution shapes and FLOPs --------------------------------------------------------------


@dataclass(frozen=True)
class ConvShape:
    """One convolution of G or D, as the training step executes it."""

    name: str  # "G.b8.conv0", "D.b64.skip"
    in_channels: int
    out_channels: int
    kernel: int
    in_resolution: int  # of the convolution's own input (after decimation for D's 1x1 skip)
    out_resolution: int
    kind: str  # "same" (stride 1, padding k//2), "up" (stride-2 transposed), "down" (stride 2, no padding)

    def flops(self, batch: int) -> int:
        """Nominal forward FLOPs: 2 per weight per output pixel (per input pixel for ``up``)."""
        res = self.in_resolution if self.kind == "up" else self.out_resolution
        return 2 * batch * self.in_channels * self.out_channels * self.kernel**2 * res * res

    def key(self) -> tuple[Any, ...]:
        return (self.kind, self.in_channels, self.out_channels, self.kernel, self.in_resolution, self.out_resolution)


def generator_conv_shapes(G: Generator) -> list[ConvShape]:
    shapes = []
    for res, block in G.synthesis.blocks():
        for name in block.layer_names():
            layer = getattr(block, name)
            out_channels, in_channels, kernel, _ = layer.weight.shape
            up = getattr(layer, "up", 1)
            kind = "up" if up > 1 else "same"
            shapes.append(ConvShape(f"G.b{res}.{name}", in_channels, out_channels, kernel, res // up, res, kind))
    return shapes


def discriminator_conv_shapes(D: Discriminator) -> list[ConvShape]:
    shapes = []
    for res in [*D.block_resolutions, 4]:
        block = getattr(D, f"b{res}")
        for name, layer in block.named_children():
            if not isinstance(layer, Conv2dLayer):
                continue
            out_channels, in_channels, kernel, _ = layer.weight.shape
            if layer.up > 1:
                raise NotImplementedError(f"D.b{res}.{name}: upsampling convolutions in D are not counted")
            out_res = res // layer.down
            if layer.down > 1 and kernel > 1:  # FIR-filtered input of 2 H_out + k - 2 pixels, stride 2
                shape = ConvShape(f"D.b{res}.{name}", in_channels, out_channels, kernel, 2 * (out_res - 1) + kernel, out_res, "down")
            else:  # stride 1 (a 1x1 downsampling conv runs after decimation, at the output resolution)
                shape = ConvShape(f"D.b{res}.{name}", in_channels, out_channels, kernel, out_res, out_res, "same")
            shapes.append(shape)
    return shapes


def forward_flops_per_image(G: Generator, D: Discriminator) -> tuple[int, int]:
    """``(F_G, F_D)``: forward convolution FLOPs of one image through G's synthesis and through D."""
    return (sum(s.flops(1) for s in generator_conv_shapes(G)), sum(s.flops(1) for s in discriminator_conv_shapes(D)))


def phase_batch(phase: str, options: TrainOptions) -> int:
    """Images a phase processes in one step."""
    if phase == "Greg":
        return max(options.batch_size // options.loss.pl_batch_shrink, 1)
    return options.batch_size


def step_flops(phases: Sequence[str], options: TrainOptions, f_g: int, f_d: int) -> int:
    """Nominal convolution FLOPs of one training step that ran ``phases`` (see the module docstring)."""
    total = 0
    for phase in phases:
        g, d = PHASE_FLOPS[phase]
        total += phase_batch(phase, options) * (g * f_g + d * f_d)
    return total


def regularisation_cycle(options: TrainOptions) -> int:
    """Steps after which the phase mix repeats."""
    g = options.g_reg_interval if options.g_reg_interval and options.loss.pl_weight != 0 else 1
    d = options.d_reg_interval or 1
    return math.lcm(g, d)


# -- the machine's convolution peak ------------------------------------------------------------


def _plain_conv(shape: ConvShape, batch: int, dtype: torch.dtype, memory_format: torch.memory_format) -> Callable[[], torch.Tensor]:
    """A plain shared-weight convolution of ``shape`` in ``dtype`` and ``memory_format``."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, shape.in_channels, shape.in_resolution, shape.in_resolution, generator=gen)
    x = x.to(dtype).contiguous(memory_format=memory_format)
    k = shape.kernel
    if shape.kind == "up":
        w = torch.randn(shape.in_channels, shape.out_channels, k, k, generator=gen).to(dtype)
        w = w.contiguous(memory_format=memory_format)
        return lambda: F.conv_transpose2d(x, w, stride=2, padding=k // 2, output_padding=1)
    w = torch.randn(shape.out_channels, shape.in_channels, k, k, generator=gen).to(dtype)
    w = w.contiguous(memory_format=memory_format)
    if shape.kind == "down":
        return lambda: F.conv2d(x, w, stride=2)
    return lambda: F.conv2d(x, w, padding=k // 2)


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _stats(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


# -- the benchmark -----------------------------------------------------------------------------


def build_trainer(case: TrainingCase, dtype: str, settings: BenchmarkSettings) -> Trainer:
    """A trainer of ``case`` in ``dtype`` on random in-memory images (same weights for every dtype)."""
    G_kwargs, D_kwargs = case.G_kwargs, case.D_kwargs
    torch.manual_seed(settings.seed)
    G, D = Generator(**G_kwargs), Discriminator(**D_kwargs)
    dataset = RandomImages(settings.dataset_size, res=G_kwargs["img_resolution"], channels=G_kwargs["img_channels"],
                           seed=settings.seed)
    options = replace(case.options, bf16=dtype == "bfloat16", seed=settings.seed)
    trainer = Trainer(G, D, dataset, options)
    if settings.ada_p is not None and trainer.augment is not None and hasattr(trainer.augment, "p"):
        trainer.augment.p.fill_(settings.ada_p)
    return trainer


def _ada_p(trainer: Trainer) -> float | None:
    p = getattr(trainer.augment, "p", None)
    return None if p is None else float(p)


def _run_window(trainer: Trainer, steps: int, f_g: int, f_d: int) -> dict[str, Any]:
    """``steps`` timed train_step() calls; returns time, images, FLOPs and per-step phases/times."""
    step_times, step_phases, flops = [], [], 0
    start = time.perf_counter()
    for _ in range(steps):
        t0 = time.perf_counter()
        logs = trainer.train_step()
        step_times.append(time.perf_counter() - t0)
        phases = [phase for phase, key in PHASE_LOG_KEYS.items() if key in logs]
        assert "Gmain" in phases and "Dmain" in phases, f"unexpected training step logs {sorted(logs)}"
        step_phases.append(phases)
        flops += step_flops(phases, trainer.options, f_g, f_d)
    elapsed = time.perf_counter() - start
    return {"time_s": elapsed, "images": steps * trainer.options.batch_size, "flops": flops,
            "step_times_s": step_times, "step_phases": step_phases}


def measure_peaks(shapes: Sequence[tuple[ConvShape, int]], rounds: int, between: Callable[[int], None]) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Time plain convolutions of ``(shape, batch)`` in both dtypes and layouts, ``rounds`` times,
    calling ``between(round)`` first in each round (the training windows); returns per-shape rows and
    the peak per dtype."""
    convs = {}
    with torch.no_grad():
        for shape, batch in shapes:
            for dtype in DTYPES:
                for fmt, memory_format in MEMORY_FORMATS.items():
                    convs[(shape.key(), batch, dtype, fmt)] = (shape, batch, _plain_conv(shape, batch, DTYPES[dtype], memory_format))
    times: dict[Any, list[float]] = {key: [] for key in convs}
    for r in range(rounds):
        between(r)
        with torch.no_grad():
            for key, (_, _, conv) in convs.items():
                conv()  # untimed: the timed call is the steady state of a loop over batches
                times[key].append(_timed(conv))
    rows = []
    for key, (shape, batch, _) in convs.items():
        t = _stats(times[key])
        rows.append({**asdict(shape), "batch": batch, "dtype": key[2], "memory_format": key[3], "time_s": t,
                     "gflops": shape.flops(batch) / t["median"] / 1e9})
    peaks = {}
    for dtype in DTYPES:
        best = max((row for row in rows if row["dtype"] == dtype), key=lambda row: row["gflops"])
        peaks[dtype] = {"gflops": best["gflops"], "shape": best["name"], "batch": best["batch"],
                        "memory_format": best["memory_format"]}
    return rows, peaks


def _layer_mix_limit(shapes: Sequence[ConvShape], batch: int, dtype: str, peak_rows: Sequence[dict[str, Any]]) -> float:
    """Forward FLOPs of ``shapes`` / the summed median times of their plain convolutions (faster layout)."""
    best: dict[tuple[Any, ...], float] = {}
    for row in peak_rows:
        if row["dtype"] == dtype and row["batch"] == batch:
            key = (row["kind"], row["in_channels"], row["out_channels"], row["kernel"], row["in_resolution"], row["out_resolution"])
            best[key] = min(best.get(key, math.inf), row["time_s"]["median"])
    total_time = sum(best[s.key()] for s in shapes)
    return sum(s.flops(batch) for s in shapes) / total_time / 1e9


def run_benchmark(cases: Sequence[TrainingCase], settings: BenchmarkSettings = BenchmarkSettings(), *,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the benchmark for ``cases`` and return the results (see the module docstring)."""
    begin = time.perf_counter()
    trainers: dict[tuple[str, str], Trainer] = {}
    case_info, conv_shapes, all_shapes = [], {}, {}
    for case in cases:
        for dtype in settings.dtypes:
            trainers[(case.name, dtype)] = build_trainer(case, dtype, settings)
        some = trainers[(case.name, settings.dtypes[0])]
        g_shapes, d_shapes = generator_conv_shapes(some.G), discriminator_conv_shapes(some.D)
        f_g, f_d = forward_flops_per_image(some.G, some.D)
        conv_shapes[case.name] = (g_shapes + d_shapes, f_g, f_d)
        batch = case.options.batch_size
        for shape in g_shapes + d_shapes:
            all_shapes.setdefault((shape.key(), batch), (shape, batch))
        cycle = regularisation_cycle(case.options)
        per_image_cycle = sum(step_flops(p, case.options, f_g, f_d) for p in _cycle_phases(case.options)) / cycle / batch
        case_info.append({
            "name": case.name, "G_kwargs": case.G_kwargs, "D_kwargs": case.D_kwargs, "options": asdict(case.options),
            "G_params": sum(p.numel() for p in some.G.parameters()), "D_params": sum(p.numel() for p in some.D.parameters()),
            "forward_gflop_per_image": {"G": f_g / 1e9, "D": f_d / 1e9},
            "regularisation_cycle_steps": cycle,
            "cycle_conv_gflop_per_image": per_image_cycle / 1e9,
            "conv_shapes": [asdict(s) for s in g_shapes + d_shapes],
        })
    log(f"{len(trainers)} trainers built; warm-up ({settings.warmup_steps} steps each)")
    for trainer in trainers.values():
        for _ in range(settings.warmup_steps):
            trainer.train_step()
    ada_start = {key: _ada_p(t) for key, t in trainers.items()}

    windows: dict[tuple[str, str], list[dict[str, Any]]] = {key: [] for key in trainers}

    def train_round(r: int) -> None:
        order = list(trainers) if r % 2 == 0 else list(reversed(trainers))
        for key in order:
            _, f_g, f_d = conv_shapes[key[0]]
            w = _run_window(trainers[key], settings.steps_per_round, f_g, f_d)
            windows[key].append(w)
            log(f"round {r + 1}/{settings.rounds} {key[0]:>10} {key[1]:>8}: {w['images'] / w['time_s']:7.2f} img/s "
                f"({w['time_s']:.1f} s, {time.perf_counter() - begin:.0f} s elapsed)")

    peak_rows, peaks = measure_peaks(list(all_shapes.values()), settings.rounds, train_round)
    for dtype, peak in peaks.items():
        log(f"peak {dtype}: {peak['gflops']:.1f} GFLOP/s ({peak['shape']}, batch {peak['batch']}, {peak['memory_format']})")

    results = []
    for (name, dtype), ws in windows.items():
        trainer = trainers[(name, dtype)]
        shapes, f_g, f_d = conv_shapes[name]
        batch = trainer.options.batch_size
        ips = [w["images"] / w["time_s"] for w in ws]
        gflops = [w["flops"] / w["time_s"] / 1e9 for w in ws]
        phases = [p for w in ws for p in w["step_phases"]]
        by_mix: dict[str, list[float]] = {}
        for w in ws:
            for p, t in zip(w["step_phases"], w["step_times_s"]):
                by_mix.setdefault("+".join(p), []).append(t)
        achieved = statistics.median(gflops)
        cycle = regularisation_cycle(trainer.options)
        row = {
            "preset": name,
            "dtype": dtype,
            "batch": batch,
            "steps_per_round": settings.steps_per_round,
            "whole_cycles": settings.steps_per_round % cycle == 0,
            "images_per_s": statistics.median(ips),
            "images_per_s_stats": _stats(ips),
            "window_time_s": _stats([w["time_s"] for w in ws]),
            "phase_counts": {ph: sum(ph in p for p in phases) for ph in PHASE_FLOPS},
            "step_time_s_by_phases": {k: _stats(v) for k, v in by_mix.items()},
            "conv_gflop_per_image": sum(w["flops"] for w in ws) / sum(w["images"] for w in ws) / 1e9,
            "achieved_gflops": achieved,
            "achieved_gflops_stats": _stats(gflops),
            "fraction_of_peak": achieved / peaks[dtype]["gflops"],
            "fraction_of_fp32_peak": achieved / peaks["float32"]["gflops"],
            "fraction_of_bf16_peak": achieved / peaks["bfloat16"]["gflops"],
            "layer_mix_limit_gflops": _layer_mix_limit(shapes, batch, dtype, peak_rows),
            "ada_p": {"start": ada_start[(name, dtype)], "end": _ada_p(trainer)},
        }
        results.append(row)
    for row in results:
        base = next((r for r in results if r["preset"] == row["preset"] and r["dtype"] == "float32"), None)
        if base is not None and row["dtype"] != "float32":
            row["ratio_vs_float32"] = row["images_per_s"] / base["images_per_s"]
        log(_format_row(row))

    return {
        "benchmark": NAME,
        "machine": machine_info(settings),
        "settings": asdict(settings),
        "wall_time_s": time.perf_counter() - begin,
        "flop_counting": {
            "rule": (
                "nominal conv FLOPs, 2 per weight per output pixel (per input pixel for G's stride-2 transposed conv0); "
                "F_G = forward FLOPs/image of G.synthesis convs (conv0, conv1, torgb), F_D = of D convs (fromrgb, conv0, "
                "stride-2 conv1, 1x1 skip after decimation, epilogue conv); backward = 1x forward for input grads + 1x for "
                "weight grads where weights are trained; gradient penalties = 6x forward; per phase per image of its batch "
                "(Greg: batch // pl_batch_shrink): Gmain 3F_G+2F_D, Greg 6F_G, Dmain F_G+6F_D, Dreg 6F_D; phases read "
                "from each step's logged losses; dense layers, FIR filters, modulation, bias/act, augmentation, Adam "
                "and G_ema not counted"
            ),
            "phase_multipliers": {phase: {"F_G": g, "F_D": d} for phase, (g, d) in PHASE_FLOPS.items()},
        },
        "peak": {
            "rule": (
                "per distinct conv shape at the training batch: plain F.conv2d (F.conv_transpose2d stride 2, padding 1, "
                "output_padding 1 for up; stride 2 unpadded on a 2H_out+1 input for down), forward, float32 and "
                "bfloat16 tensors, contiguous and channels_last; peak = best shape and layout, median over rounds"
            ),
            **peaks,
        },
        "peak_shapes": peak_rows,
        "cases": case_info,
        "results": results,
    }


def _cycle_phases(options: TrainOptions) -> list[list[str]]:
    """The phases of each step of one regularisation cycle, by Trainer.train_step's schedule (for the
    per-image FLOPs of a long run; the measured windows read the phases that actually ran instead)."""
    out = []
    for step in range(regularisation_cycle(options)):
        phases = ["Gmain"]
        if options.g_reg_interval and options.loss.pl_weight != 0 and step % options.g_reg_interval == 0:
            phases.append("Greg")
        phases.append("Dmain")
        if options.d_reg_interval and step % options.d_reg_interval == 0:
            phases.append("Dreg")
        out.append(phases)
    return out


def machine_info(settings: BenchmarkSettings) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    flags: list[str] = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu in ("", platform.machine(), "x86_64"):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = [f for f in line.split(":", 1)[1].split() if f.startswith(("amx", "avx512_bf16", "avx512f"))]
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_flags": flags,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "torch": torch.__version__,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": settings.quick,
        "rounds": settings.rounds,
    }


def _format_row(row: dict[str, Any]) -> str:
    ratio = row.get("ratio_vs_float32")
    return (
        f"{row['preset']:>10} b{row['batch']:<3} {row['dtype']:>8}: {row['images_per_s']:7.2f} img/s"
        + (f" ({ratio:.2f}x fp32)" if ratio is not None else "             ")
        + f"  {row['achieved_gflops']:7.1f} GFLOP/s = {100 * row['fraction_of_fp32_peak']:5.1f} % of fp32 peak, "
        f"{100 * row['fraction_of_bf16_peak']:5.1f} % of bf16 peak"
    )


def markdown_table(out: dict[str, Any]) -> str:
    m, s, peak = out["machine"], out["settings"], out["peak"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['torch_threads']} torch threads, torch {m['torch']}, "
        f"{m['date']}{' (quick mode)' if m['quick'] else ''}; medians of {m['rounds']} interleaved rounds of "
        f"{s['steps_per_round']} training steps each, after {s['warmup_steps']} warm-up step{'' if s['warmup_steps'] == 1 else 's'}; random in-memory images.",
        "",
        f"Convolution peak (best plain forward conv over the models' layer shapes): float32 {peak['float32']['gflops']:.1f} "
        f"GFLOP/s ({peak['float32']['shape']}, {peak['float32']['memory_format']}), bfloat16 {peak['bfloat16']['gflops']:.1f} "
        f"GFLOP/s ({peak['bfloat16']['shape']}, {peak['bfloat16']['memory_format']}).",
        "",
        "| preset | dtype | batch | images/s [min–max] | bf16/fp32 | conv GFLOP/image | GFLOP/s | % of fp32 peak | % of bf16 peak | whole reg. cycles |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in out["results"]:
        ips = r["images_per_s_stats"]
        ratio = r.get("ratio_vs_float32")
        lines.append(
            f"| {r['preset']} | {r['dtype']} | {r['batch']} | {r['images_per_s']:.2f} [{ips['min']:.2f}–{ips['max']:.2f}] | "
            f"{'' if ratio is None else f'{ratio:.2f}'} | {r['conv_gflop_per_image']:.2f} | {r['achieved_gflops']:.1f} | "
            f"{100 * r['fraction_of_fp32_peak']:.1f} | {100 * r['fraction_of_bf16_peak']:.1f} | {'yes' if r['whole_cycles'] else 'no'} |"
        )
    lines += [
        "",
        "FLOP counting (convolutions only, nominal 2 FLOPs per multiply-add): F_G, F_D = forward conv FLOPs per image "
        "of G.synthesis and of D; a backward pass costs 1x forward for input gradients plus 1x for weight gradients "
        "where the weights are trained; gradient penalties cost 6x forward. Per image of the phase's batch: "
        "Gmain 3 F_G + 2 F_D, Greg 6 F_G (on batch // 2), Dmain F_G + 6 F_D, Dreg 6 F_D; Greg runs every 4 steps and "
        "Dreg every 16, so a 16-step cycle costs 4.75 F_G + 8.375 F_D per image. Dense layers, FIR filters, modulation, "
        "bias/activation, augmentation, Adam and the G_ema update are not counted. The peak is forward-only.",
        "",
        "| preset | F_G (GFLOP) | F_D (GFLOP) | conv GFLOP per image over a whole cycle |",
        "|---|---:|---:|---:|",
    ]
    for c in out["cases"]:
        f = c["forward_gflop_per_image"]
        lines.append(f"| {c['name']} | {f['G']:.3f} | {f['D']:.3f} | {c['cycle_conv_gflop_per_image']:.2f} |")
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_results(out: dict[str, Any], out_dir: Path = RESULTS) -> tuple[Path, Path]:
    json_path, md_path = out_dir / f"{NAME}.json", out_dir / f"{NAME}.md"
    _write_atomic(json_path, json.dumps(out, indent=1, allow_nan=True) + "\n")
    _write_atomic(md_path, markdown_table(out))
    return json_path, md_path


def main(argv: Sequence[str] | None = None, *, cases: Sequence[TrainingCase] | None = None) -> dict[str, Any]:
    """Command-line entry point; ``cases`` overrides the presets (used by the tests)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="examples:\n  python benchmarks/training_speed.py\n"
                                            "  python benchmarks/training_speed.py --quick --out-dir /tmp/bench")
    parser.add_argument("--quick", action="store_true", help="batch 8, 2-step windows, 2 rounds: a smoke test")
    parser.add_argument("--rounds", type=int, default=None, help="timing rounds (default: 3, or 2 with --quick)")
    parser.add_argument("--steps", type=int, default=None,
                        help="train steps per timed window (default: 16 = one lazy-regularisation cycle, or 2 with --quick)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per trainer (default: 2, or 1 with --quick)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: the preset's, 32; or 8 with --quick)")
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=list(DTYPES), help="(default: %(default)s)")
    parser.add_argument("--ada-p", type=float, default=None,
                        help="fix ADA's augmentation probability of the 'default' preset (default: starts at 0)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, e.g. OMP_NUM_THREADS)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help=f"where to write {NAME}.json/.md (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    settings = BenchmarkSettings(
        dtypes=tuple(args.dtypes),
        rounds=args.rounds if args.rounds is not None else (2 if args.quick else 3),
        steps_per_round=args.steps if args.steps is not None else (2 if args.quick else 16),
        warmup_steps=args.warmup if args.warmup is not None else (1 if args.quick else 2),
        ada_p=args.ada_p,
        quick=args.quick,
    )
    batch = args.batch if args.batch is not None else (8 if args.quick else None)
    if cases is None:
        cases = default_cases(batch)
    elif batch is not None:
        cases = [replace(c, options=replace(c.options, batch_size=batch)) for c in cases]
    out = run_benchmark(cases, settings)
    json_path, md_path = write_results(out, args.out_dir)
    print(f"wrote {json_path} and {md_path}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
