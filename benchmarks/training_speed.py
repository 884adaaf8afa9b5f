"""StyleGAN2 training throughput on the CPU: the reference and the fast training path, float32 and
bfloat16, against the machine's convolution peak, with the time of every phase.

Cases: the two 64 px presets (``latentshop.training.presets``: ``default``, ``synthetic``) and a
128 px colour model with the ``default`` recipe at channel_base 4096 / channel_max 128 and at the
next width up, 8192 / 256. For each case, each path (``TrainOptions.impl``: ``reference``, ``fast``)
and each dtype (float32, and bfloat16 through ``TrainOptions.bf16``, i.e. CPU autocast), this script
builds a :class:`~latentshop.training.loop.Trainer` on an in-memory dataset of random uint8 images
(no files are read: it measures the training step, not data loading), runs one untimed warm-up step
(step 0 runs every phase and compiles the fast path's kernels; the compile time is reported), then
times windows of ``Trainer.train_step()`` calls. Each window opens at a step number where every
phase runs (a multiple of the 16-step regularisation cycle), so a 2-step window times Gmain, Greg,
Dmain and Dreg once and Gmain and Dmain twice; the trainer's own per-phase clocks
(``Trainer.phase_time_s``) give each phase's mean time, and

* the time of one step of a whole lazy-regularisation cycle = Gmain + Dmain + Greg / 4 + Dreg / 16
  + other (data, G_ema, ADA bookkeeping), per-phase means over all rounds;
* images/s = batch / that time (min and max over the rounds' own compositions);
* the fast / reference ratio per case and dtype, and against the reference in bfloat16 (the
  presets' setting before the fast path);
* achieved GFLOP/s = the nominal convolution FLOPs of a cycle step (below) / its time;
* the fraction of the machine's measured convolution peak, in float32 and in bfloat16;
* a torch.profiler split of one all-phase step by op category (convolution forward and backward,
  the fused compiled kernels, matmuls, the optimiser, the rest), except for the widest case;
* the encoder trainer's images/s (e4e + ReStyle, generator samples, fused kernels eager and
  compiled).

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
    python benchmarks/training_speed.py            # full run (about 25 minutes on 2 cores)
    python benchmarks/training_speed.py --no-wide  # without the 8192/256 case (about 10 minutes)
    python benchmarks/training_speed.py --quick    # smoke test: batch 8, the 64 px presets (a few minutes)

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
    options: TrainOptions  # its bf16 and impl fields are set per run by the benchmark


@dataclass(frozen=True)
class BenchmarkSettings:
    """How much to measure."""

    dtypes: tuple[str, ...] = ("float32", "bfloat16")  # keys of DTYPES
    impls: tuple[str, ...] = ("reference", "fast")  # TrainOptions.impl values
    rounds: int = 2  # interleaved timing rounds (median reported)
    steps_per_round: int = 2  # train_step() calls per timed window; the first runs every phase (see the docstring)
    warmup_steps: int = 1  # untimed steps per trainer first (step 0 runs every phase and compiles the kernels)
    dataset_size: int = 256  # random uint8 images held in memory
    ada_p: float | None = 0.3  # fix ADA's augmentation probability, so that augmentation runs (None: starts at 0)
    seed: int = 0  # weights, data order and latents
    profile: bool = True  # torch.profiler split of one all-phase step per trainer (not for the widest case)
    encoder: bool = True  # also time the encoder trainer
    quick: bool = False  # recorded in the results


def preset_case(name: str, *, batch_size: int | None = None) -> TrainingCase:
    """The benchmark case of a training preset, as ``latentshop train --preset NAME`` builds it."""
    p = get_preset(name)
    G_kwargs, D_kwargs = architecture(p.res, p.channels, z_dim=p.z_dim, mapping_layers=p.mapping_layers,
                                      channel_base=p.channel_base, channel_max=p.channel_max, c_dim=0)
    options = p.options if batch_size is None else replace(p.options, batch_size=batch_size)
    return TrainingCase(p.name, G_kwargs, D_kwargs, options)


def colour_case(channel_base: int, channel_max: int, *, res: int = 128, batch_size: int | None = None) -> TrainingCase:
    """A colour model at ``res`` with the ``default`` recipe (ADA, R1 gamma 0.0002 res^2 / batch, path length)."""
    base = get_preset("lfw").options
    batch = batch_size or base.batch_size
    G_kwargs, D_kwargs = architecture(res, 3, channel_base=channel_base, channel_max=channel_max)
    options = replace(base, batch_size=batch, loss=replace(base.loss, r1_gamma=0.0002 * res**2 / batch))
    return TrainingCase(f"colour{res}-{channel_base}/{channel_max}", G_kwargs, D_kwargs, options)


def default_cases(batch_size: int | None = None, *, wide: bool = True) -> list[TrainingCase]:
    cases = [preset_case(name, batch_size=batch_size) for name in ("lfw", "synthetic")]
    cases.append(colour_case(4096, 128, batch_size=batch_size))
    if wide:
        cases.append(colour_case(8192, 256, batch_size=batch_size))
    return cases


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


def build_trainer(case: TrainingCase, dtype: str, settings: BenchmarkSettings, impl: str = "fast") -> Trainer:
    """A trainer of ``case`` in ``dtype`` on ``impl``, on random in-memory images (same weights for every run)."""
    G_kwargs, D_kwargs = case.G_kwargs, case.D_kwargs
    torch.manual_seed(settings.seed)
    G, D = Generator(**G_kwargs), Discriminator(**D_kwargs)
    dataset = RandomImages(settings.dataset_size, res=G_kwargs["img_resolution"], channels=G_kwargs["img_channels"],
                           seed=settings.seed)
    options = replace(case.options, bf16=dtype == "bfloat16", seed=settings.seed, impl=impl)
    trainer = Trainer(G, D, dataset, options)
    if settings.ada_p is not None and trainer.augment is not None and hasattr(trainer.augment, "p"):
        trainer.augment.p.fill_(settings.ada_p)
    return trainer


def _ada_p(trainer: Trainer) -> float | None:
    p = getattr(trainer.augment, "p", None)
    return None if p is None else float(p)


def _run_window(trainer: Trainer, steps: int) -> dict[str, Any]:
    """``steps`` timed train_step() calls, the first at a step number where every phase runs.

    Returns the window's wall time and, per phase, the time and the number of runs (from the
    trainer's own per-phase clocks); ``other`` is the rest (data, G_ema, ADA bookkeeping).
    """
    cycle = regularisation_cycle(trainer.options)
    trainer.step = (trainer.step // cycle + 1) * cycle  # the window opens with Gmain, Greg, Dmain and Dreg
    before_t, before_n = dict(trainer.phase_time_s), dict(trainer.phase_count)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    elapsed = time.perf_counter() - start
    phases = {ph: {"time_s": trainer.phase_time_s[ph] - before_t[ph], "count": trainer.phase_count[ph] - before_n[ph]}
              for ph in PHASE_FLOPS}
    other = elapsed - sum(v["time_s"] for v in phases.values())
    return {"time_s": elapsed, "steps": steps, "phases": phases, "other_s": other}


def cycle_step_time(windows: Sequence[dict[str, Any]], options: TrainOptions) -> tuple[float, dict[str, float]]:
    """Mean time of one step of a whole lazy-regularisation cycle, composed from per-phase means:
    ``Gmain + Dmain + Greg / g_reg_interval + Dreg / d_reg_interval + other``; and the per-phase
    means (seconds per run of the phase)."""
    per_phase = {}
    for ph in PHASE_FLOPS:
        t = sum(w["phases"][ph]["time_s"] for w in windows)
        n = sum(w["phases"][ph]["count"] for w in windows)
        per_phase[ph] = t / n if n else 0.0
    per_phase["other"] = sum(w["other_s"] for w in windows) / sum(w["steps"] for w in windows)
    weights = _phase_weights(options)
    return sum(per_phase[ph] * weights[ph] for ph in weights) + per_phase["other"], per_phase


def _phase_weights(options: TrainOptions) -> dict[str, float]:
    """Runs of each phase per step over a whole cycle."""
    cycle = _cycle_phases(options)
    return {ph: sum(ph in step for step in cycle) / len(cycle) for ph in PHASE_FLOPS}


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


# Where the time of a step goes, by torch.profiler's self time of each op.
PROFILE_CATEGORIES = (  # the first category whose key matches an op takes it
    ("convolution backward", ("aten::convolution_backward",)),
    ("convolution forward", ("aten::mkldnn_convolution", "aten::_convolution", "aten::convolution", "aten::conv")),
    ("fused compiled kernels", ("CompiledFxGraph", "Torch-Compiled", "TorchDynamo", "CompiledFunction")),
    ("matmul", ("aten::mm", "aten::bmm", "aten::addmm", "aten::linear", "aten::matmul")),
    ("optimizer", ("Optimizer", "aten::_fused_adam", "aten::_foreach")),
)


def profile_step(trainer: Trainer) -> dict[str, Any]:
    """One all-phase step under torch.profiler: seconds of self CPU time by op category and by phase."""
    from torch.profiler import ProfilerActivity, profile

    cycle = regularisation_cycle(trainer.options)
    trainer.step = (trainer.step // cycle + 1) * cycle
    before = dict(trainer.phase_time_s)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.train_step()
    categories = {name: 0.0 for name, _ in PROFILE_CATEGORIES}
    categories["element-wise and other ops"] = 0.0
    for event in prof.key_averages():
        seconds = event.self_cpu_time_total / 1e6
        for name, keys in PROFILE_CATEGORIES:
            if any(event.key.startswith(k) or k in event.key for k in keys):
                categories[name] += seconds
                break
        else:
            categories["element-wise and other ops"] += seconds
    phases = {ph: trainer.phase_time_s[ph] - before[ph] for ph in PHASE_FLOPS}
    return {"categories_s": categories, "phases_s": phases}


def encoder_speed(dtype: str, *, compiled: bool, steps: int = 3, batch: int = 16) -> dict[str, Any]:
    """Images/s of the encoder trainer (e4e + ReStyle, 2 passes, generator samples, no perceptual
    term so that no file is read) for a ``default``-preset generator with random weights."""
    from latentshop.ops import fused
    from latentshop.training.encoder import EncoderTrainer, EncoderTrainOptions, build_encoder

    allowed = fused.compile_state()["enabled"]
    fused.set_compile(compiled and allowed)
    try:
        case = preset_case("lfw")
        torch.manual_seed(0)
        G = Generator(**case.G_kwargs).eval()
        options = EncoderTrainOptions(batch_size=batch, sample_fraction=1.0, perceptual=0.0, bf16=dtype == "bfloat16",
                                      total_kimg=1.0)
        E = build_encoder(G, options, widths=[32, 64, 128, 256], blocks=1, style_channels=96)
        trainer = EncoderTrainer(G, E, None, options)
        trainer.train_step()
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        elapsed = time.perf_counter() - start
    finally:
        fused.set_compile(allowed)
    return {"dtype": dtype, "kernels": "compiled" if compiled else "eager", "batch": batch, "steps": steps,
            "images_per_s": steps * batch / elapsed}


def run_benchmark(cases: Sequence[TrainingCase], settings: BenchmarkSettings = BenchmarkSettings(), *,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the benchmark for ``cases`` and return the results (see the module docstring)."""
    from latentshop.ops import fused

    begin = time.perf_counter()
    trainers: dict[tuple[str, str, str], Trainer] = {}
    case_info, conv_shapes, all_shapes = [], {}, {}
    for case in cases:
        for impl in settings.impls:
            for dtype in settings.dtypes:
                trainers[(case.name, impl, dtype)] = build_trainer(case, dtype, settings, impl)
        some = next(t for k, t in trainers.items() if k[0] == case.name)
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
    log(f"{len(trainers)} trainers built; warm-up ({settings.warmup_steps} step(s) each, which compiles the fused kernels)")
    compile_before = fused.compile_state()["compile_s"]
    warmup_s = {}
    for key, trainer in trainers.items():
        start = time.perf_counter()
        for _ in range(settings.warmup_steps):
            trainer.train_step()
        warmup_s[key] = time.perf_counter() - start
        log(f"warm-up {' '.join(key)}: {warmup_s[key]:.1f} s")
    compile_s = fused.compile_state()["compile_s"] - compile_before
    ada_start = {key: _ada_p(t) for key, t in trainers.items()}

    windows: dict[tuple[str, str, str], list[dict[str, Any]]] = {key: [] for key in trainers}

    def train_round(r: int) -> None:
        order = list(trainers) if r % 2 == 0 else list(reversed(trainers))
        for key in order:
            w = _run_window(trainers[key], settings.steps_per_round)
            windows[key].append(w)
            log(f"round {r + 1}/{settings.rounds} {' '.join(key)}: {w['time_s']:.1f} s for {w['steps']} steps "
                f"({time.perf_counter() - begin:.0f} s elapsed)")

    peak_rows, peaks = measure_peaks(list(all_shapes.values()), settings.rounds, train_round)
    for dtype, peak in peaks.items():
        log(f"peak {dtype}: {peak['gflops']:.1f} GFLOP/s ({peak['shape']}, batch {peak['batch']}, {peak['memory_format']})")

    profiles = {}
    if settings.profile:
        widest = max(case_info, key=lambda c: c["G_params"])["name"] if len(case_info) > 2 else None
        for key, trainer in trainers.items():
            if key[0] != widest and key[0] != "synthetic":
                profiles[key] = profile_step(trainer)
                log(f"profiled {' '.join(key)}")

    results = []
    for (name, impl, dtype), ws in windows.items():
        trainer = trainers[(name, impl, dtype)]
        shapes, f_g, f_d = conv_shapes[name]
        batch = trainer.options.batch_size
        step_s, per_phase = cycle_step_time(ws, trainer.options)
        per_round = [cycle_step_time([w], trainer.options)[0] for w in ws]
        cycle = regularisation_cycle(trainer.options)
        flops_per_step = sum(step_flops(p, trainer.options, f_g, f_d) for p in _cycle_phases(trainer.options)) / cycle
        achieved = flops_per_step / step_s / 1e9
        row = {
            "preset": name,
            "impl": impl,
            "dtype": dtype,
            "batch": batch,
            "steps_per_round": settings.steps_per_round,
            "images_per_s": batch / step_s,
            "images_per_s_stats": _stats([batch / t for t in per_round]),
            "cycle_step_time_s": step_s,
            "phase_time_s": per_phase,
            "phase_weights": _phase_weights(trainer.options),
            "warmup_s": warmup_s[(name, impl, dtype)],
            "conv_gflop_per_image": flops_per_step / batch / 1e9,
            "achieved_gflops": achieved,
            "fraction_of_peak": achieved / peaks[dtype]["gflops"],
            "fraction_of_fp32_peak": achieved / peaks["float32"]["gflops"],
            "fraction_of_bf16_peak": achieved / peaks["bfloat16"]["gflops"],
            "layer_mix_limit_gflops": _layer_mix_limit(shapes, batch, dtype, peak_rows),
            "ada_p": {"start": ada_start[(name, impl, dtype)], "end": _ada_p(trainer)},
            "profile": profiles.get((name, impl, dtype)),
        }
        results.append(row)
    for row in results:
        same = {(r["impl"], r["dtype"]): r for r in results if r["preset"] == row["preset"]}
        ref = same.get(("reference", row["dtype"]))
        if ref is not None and row["impl"] != "reference":
            row["speedup_vs_reference"] = row["images_per_s"] / ref["images_per_s"]
        if ("reference", "bfloat16") in same:
            row["speedup_vs_reference_bf16"] = row["images_per_s"] / same[("reference", "bfloat16")]["images_per_s"]
        log(_format_row(row))

    encoder = []
    if settings.encoder:
        for dtype in settings.dtypes:
            for compiled in (False, True):
                encoder.append(encoder_speed(dtype, compiled=compiled))
                log(f"encoder trainer {dtype} {encoder[-1]['kernels']}: {encoder[-1]['images_per_s']:.2f} img/s")

    return {
        "benchmark": NAME,
        "machine": machine_info(settings),
        "settings": asdict(settings),
        "wall_time_s": time.perf_counter() - begin,
        "compile": {"first_compile_s": compile_s, **fused.compile_state()},
        "flop_counting": {
            "rule": (
                "nominal conv FLOPs, 2 per weight per output pixel (per input pixel for G's stride-2 transposed conv0); "
                "F_G = forward FLOPs/image of G.synthesis convs (conv0, conv1, torgb), F_D = of D convs (fromrgb, conv0, "
                "stride-2 conv1, 1x1 skip after decimation, epilogue conv); backward = 1x forward for input grads + 1x for "
                "weight grads where weights are trained; gradient penalties = 6x forward; per phase per image of its batch "
                "(Greg: batch // pl_batch_shrink): Gmain 3F_G+2F_D, Greg 6F_G, Dmain F_G+6F_D, Dreg 6F_D; a step of a "
                "whole cycle = Gmain + Dmain + Greg / 4 + Dreg / 16; dense layers, FIR filters, modulation, bias/act, "
                "augmentation, Adam and G_ema not counted"
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
        "encoder_trainer": encoder,
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
    speedup = row.get("speedup_vs_reference")
    return (
        f"{row['preset']:>22} {row['impl']:>9} {row['dtype']:>8}: {row['images_per_s']:7.2f} img/s"
        + (f" ({speedup:.2f}x reference)" if speedup is not None else "                 ")
        + f"  {row['achieved_gflops']:7.1f} GFLOP/s = {100 * row['fraction_of_fp32_peak']:5.1f} % of fp32 peak, "
        f"{100 * row['fraction_of_bf16_peak']:5.1f} % of bf16 peak"
    )


def markdown_table(out: dict[str, Any]) -> str:
    m, s, peak = out["machine"], out["settings"], out["peak"]
    lines = [
        f"Machine: {m['cpu']} ({', '.join(m['cpu_flags']) or 'no AVX-512/AMX flags'}), {m['cores']} cores, "
        f"{m['torch_threads']} torch threads, torch {m['torch']}, {m['date']}{' (quick mode)' if m['quick'] else ''}. "
        f"Per trainer: {s['warmup_steps']} warm-up step(s), then {m['rounds']} interleaved rounds of {s['steps_per_round']} "
        "steps whose first runs every phase; images/s is the batch over the time of one step of a whole lazy-regularisation "
        "cycle composed from the per-phase means (Gmain + Dmain + Greg/4 + Dreg/16 + other); random in-memory images, "
        f"ADA p fixed at {s['ada_p']}.",
        "",
        f"Convolution peak (best plain forward conv over the models' layer shapes): float32 {peak['float32']['gflops']:.1f} "
        f"GFLOP/s ({peak['float32']['shape']}, {peak['float32']['memory_format']}), bfloat16 {peak['bfloat16']['gflops']:.1f} "
        f"GFLOP/s ({peak['bfloat16']['shape']}, {peak['bfloat16']['memory_format']}). First compile of the fused kernels: "
        f"{out['compile']['first_compile_s']:.1f} s (once per process).",
        "",
        "| case | path | dtype | batch | images/s [min–max] | × reference | × reference bf16 | GFLOP/s | % of fp32 peak | % of bf16 peak |"
        " Gmain s | Greg s | Dmain s | Dreg s | other s |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in out["results"]:
        ips = r["images_per_s_stats"]
        sp, spb = r.get("speedup_vs_reference"), r.get("speedup_vs_reference_bf16")
        ph = r["phase_time_s"]
        lines.append(
            f"| {r['preset']} | {r['impl']} | {r['dtype']} | {r['batch']} | {r['images_per_s']:.2f} [{ips['min']:.2f}–{ips['max']:.2f}] | "
            f"{'' if sp is None else f'{sp:.2f}'} | {'' if spb is None else f'{spb:.2f}'} | {r['achieved_gflops']:.1f} | "
            f"{100 * r['fraction_of_fp32_peak']:.1f} | {100 * r['fraction_of_bf16_peak']:.1f} | "
            f"{ph['Gmain']:.2f} | {ph['Greg']:.2f} | {ph['Dmain']:.2f} | {ph['Dreg']:.2f} | {ph['other']:.2f} |"
        )
    profiled = [r for r in out["results"] if r.get("profile")]
    if profiled:
        names = list(profiled[0]["profile"]["categories_s"])
        lines += [
            "",
            "Where one all-phase step's time goes (torch.profiler self CPU time, seconds; the profiler adds some overhead):",
            "",
            "| case | path | dtype | " + " | ".join(names) + " |",
            "|---|---|---|" + "---:|" * len(names),
        ]
        for r in profiled:
            cat = r["profile"]["categories_s"]
            lines.append(f"| {r['preset']} | {r['impl']} | {r['dtype']} | " + " | ".join(f"{cat[n]:.2f}" for n in names) + " |")
    if out.get("encoder_trainer"):
        lines += ["", "Encoder trainer (e4e + ReStyle, 2 passes, batch 16, generator samples, `default`-preset G):", "",
                  "| dtype | fused kernels | images/s |", "|---|---|---:|"]
        for e in out["encoder_trainer"]:
            lines.append(f"| {e['dtype']} | {e['kernels']} | {e['images_per_s']:.2f} |")
    lines += [
        "",
        "FLOP counting (convolutions only, nominal 2 FLOPs per multiply-add): F_G, F_D = forward conv FLOPs per image "
        "of G.synthesis and of D; a backward pass costs 1x forward for input gradients plus 1x for weight gradients "
        "where the weights are trained; gradient penalties cost 6x forward. Per image of the phase's batch: "
        "Gmain 3 F_G + 2 F_D, Greg 6 F_G (on batch // 2), Dmain F_G + 6 F_D, Dreg 6 F_D; Greg runs every 4 steps and "
        "Dreg every 16, so a 16-step cycle costs 4.75 F_G + 8.375 F_D per image. Dense layers, FIR filters, modulation, "
        "bias/activation, augmentation, Adam and the G_ema update are not counted. The peak is forward-only.",
        "",
        "| case | G params | D params | F_G (GFLOP) | F_D (GFLOP) | conv GFLOP per image over a whole cycle |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for c in out["cases"]:
        f = c["forward_gflop_per_image"]
        lines.append(f"| {c['name']} | {c['G_params'] / 1e6:.2f} M | {c['D_params'] / 1e6:.2f} M | {f['G']:.3f} | {f['D']:.3f} | "
                     f"{c['cycle_conv_gflop_per_image']:.2f} |")
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
    parser.add_argument("--quick", action="store_true", help="batch 8, the 64 px presets, 1 round, no profile: a smoke test")
    parser.add_argument("--rounds", type=int, default=None, help="timing rounds (default: 2, or 1 with --quick)")
    parser.add_argument("--steps", type=int, default=None, help="train steps per timed window (default: 2; the first runs every phase)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per trainer (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: the presets', 32; or 8 with --quick)")
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=list(DTYPES), help="(default: %(default)s)")
    parser.add_argument("--impls", nargs="+", choices=["reference", "fast"], default=["reference", "fast"], help="(default: %(default)s)")
    parser.add_argument("--no-wide", action="store_true", help="leave out the 128 px 8192/256 case (the slowest)")
    parser.add_argument("--no-profile", action="store_true", help="skip the torch.profiler split")
    parser.add_argument("--no-encoder", action="store_true", help="skip the encoder trainer")
    parser.add_argument("--ada-p", type=float, default=0.3, help="fix ADA's augmentation probability (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, e.g. OMP_NUM_THREADS)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help=f"where to write {NAME}.json/.md (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    settings = BenchmarkSettings(
        dtypes=tuple(args.dtypes),
        impls=tuple(args.impls),
        rounds=args.rounds if args.rounds is not None else (1 if args.quick else 2),
        steps_per_round=args.steps if args.steps is not None else 2,
        warmup_steps=args.warmup,
        ada_p=args.ada_p,
        profile=not (args.no_profile or args.quick),
        encoder=not (args.no_encoder or args.quick),
        quick=args.quick,
    )
    batch = args.batch if args.batch is not None else (8 if args.quick else None)
    if cases is None:
        cases = default_cases(batch, wide=not args.no_wide)
        if args.quick:
            cases = cases[:2]
    elif batch is not None:
        cases = [replace(c, options=replace(c.options, batch_size=batch)) for c in cases]
    out = run_benchmark(cases, settings)
    json_path, md_path = write_results(out, args.out_dir)
    print(f"wrote {json_path} and {md_path}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
