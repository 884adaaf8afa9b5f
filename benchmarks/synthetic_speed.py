"""Synthetic faces renderer throughput: images/s per domain and resolution, on one core.

For each domain (``photo``, ``toon``, ``caricature``) and resolution (32, 64, 128, 256 px) this
script times :func:`latentshop.data.synthetic.render` over consecutive seeds in this process (one
core: the renderer is numpy code, and numpy's elementwise kernels are single-threaded) and reports
images/s as the median over rounds, with the min and max. Rounds are interleaved over the cases,
so a busy machine slows every case alike. The issue's target is "several hundred images/s at
64 px on one core" (training consumes tens of images/s); the script checks >= 300 images/s for
every domain at 64 px.

Run:
    python benchmarks/synthetic_speed.py            # full run (about 20-40 s)
    python benchmarks/synthetic_speed.py --quick    # smoke test

Writes ``benchmarks/results/synthetic_speed.json`` and ``benchmarks/results/synthetic_speed.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from latentshop.data.images import atomic_write_bytes
from latentshop.data.synthetic import DOMAINS, render

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
NAME = "synthetic_speed"
TARGET = {"res": 64, "min_images_per_s": 300.0}


@dataclass(frozen=True)
class BenchmarkSettings:
    """How much to measure."""

    resolutions: tuple[int, ...] = (32, 64, 128, 256)  # image sizes in pixels
    domains: tuple[str, ...] = DOMAINS  # renderer domains
    rounds: int = 5  # interleaved timing rounds (median reported)
    seconds_per_round: float = 0.6  # time spent on each case in each round
    quick: bool = False  # recorded in the results


def time_case(res: int, domain: str, seconds: float, first_seed: int) -> tuple[int, float]:
    """Render consecutive seeds for about ``seconds``; returns ``(images, elapsed seconds)``."""
    n = 0
    start = time.perf_counter()
    while True:
        render(first_seed + n, res=res, domain=domain)
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n, elapsed


def machine_info(settings: BenchmarkSettings) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from provenance import cpu_name

    cpu = cpu_name()
    try:
        import torch

        torch_version, torch_threads = torch.__version__, torch.get_num_threads()
    except ImportError:  # the renderer itself does not need torch
        torch_version, torch_threads = None, None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "numpy": np.__version__,
        "torch": torch_version,
        "torch_threads": torch_threads,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": settings.quick,
        "rounds": settings.rounds,
    }


def run_benchmark(settings: BenchmarkSettings = BenchmarkSettings(), *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Time every (domain, resolution) case; returns the results (see the module docstring)."""
    cases = [(domain, res) for res in settings.resolutions for domain in settings.domains]
    for domain, res in cases:  # warm-up: first calls pay for imports and allocator growth
        render(0, res=res, domain=domain)
    rates: dict[tuple[str, int], list[float]] = {case: [] for case in cases}
    counts: dict[tuple[str, int], int] = {case: 0 for case in cases}
    for _ in range(settings.rounds):
        for case in cases:
            n, elapsed = time_case(case[1], case[0], settings.seconds_per_round, counts[case])
            counts[case] += n
            rates[case].append(n / elapsed)
    results = []
    for domain, res in cases:
        r = rates[(domain, res)]
        row = {
            "domain": domain,
            "res": res,
            "images_per_s": statistics.median(r),
            "images_per_s_min": min(r),
            "images_per_s_max": max(r),
            "ms_per_image": 1000.0 / statistics.median(r),
            "images_rendered": counts[(domain, res)],
        }
        results.append(row)
        log(f"{domain:>10} {res:>4} px: {row['images_per_s']:8.1f} images/s  [{min(r):.1f}-{max(r):.1f}]  {row['ms_per_image']:.2f} ms/image")
    targets = [
        {"domain": row["domain"], **TARGET, "images_per_s": row["images_per_s"], "met": row["images_per_s"] >= TARGET["min_images_per_s"]}
        for row in results
        if row["res"] == TARGET["res"]
    ]
    return {"benchmark": NAME, "machine": machine_info(settings), "settings": asdict(settings), "results": results, "targets": targets}


def markdown_table(out: dict[str, Any]) -> str:
    m = out["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores (renderer on one), numpy {m['numpy']}, torch {m['torch']}, "
        f"python {m['python']}, {m['date']}{' (quick mode)' if m['quick'] else ''}; medians of {m['rounds']} interleaved rounds.",
        "",
        "| domain | res | images/s [min–max] | ms/image |",
        "|---|---:|---|---:|",
    ]
    for r in out["results"]:
        lines.append(
            f"| {r['domain']} | {r['res']} | {r['images_per_s']:.1f} [{r['images_per_s_min']:.1f}–{r['images_per_s_max']:.1f}] | {r['ms_per_image']:.2f} |"
        )
    if out["targets"]:
        lines += ["", f"Target: at least {TARGET['min_images_per_s']:.0f} images/s at {TARGET['res']} px on one core.", ""]
        for t in out["targets"]:
            lines.append(f"- {t['domain']}: {t['images_per_s']:.1f} images/s — {'met' if t['met'] else 'NOT met'}")
    return "\n".join(lines) + "\n"


def write_results(out: dict[str, Any], out_dir: Path = RESULTS) -> tuple[Path, Path]:
    json_path, md_path = out_dir / f"{NAME}.json", out_dir / f"{NAME}.md"
    atomic_write_bytes(json_path, (json.dumps(out, indent=1) + "\n").encode())
    atomic_write_bytes(md_path, markdown_table(out).encode())
    return json_path, md_path


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one short round, for a smoke test")
    parser.add_argument("--rounds", type=int, default=None, help="timing rounds (default: 5, or 1 with --quick)")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[32, 64, 128, 256], help="sizes in px (default: 32 64 128 256)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help=f"where to write {NAME}.json/.md (default: %(default)s)")
    args = parser.parse_args(argv)
    settings = BenchmarkSettings(
        resolutions=tuple(args.resolutions),
        rounds=args.rounds if args.rounds is not None else (1 if args.quick else 5),
        seconds_per_round=0.05 if args.quick else 0.6,
        quick=args.quick,
    )
    out = run_benchmark(settings)
    json_path, md_path = write_results(out, args.out_dir)
    print(f"wrote {json_path} and {md_path}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
