"""Where a benchmark figure came from: its run, date, git commit and the code that measured it.

Every benchmark row carries the record of the run that measured it (:func:`new_run`), so a report
that mixes rows of several runs says so, and a ratio of two timings is only taken when both come
from one run (:func:`same_run`): two runs can differ in load, threads or code, and their quotient
then measures nothing. :func:`code_version` hashes the source files a figure depends on; a result
cache keyed by it re-measures whenever that code changes, whatever the commit.

Example:
    >>> run = new_run(code="abc")
    >>> sorted(run) == ["code_version", "commit", "date", "dirty", "id", "machine"]
    True
    >>> same_run({"run": run}, {"run": run}), same_run({"run": run}, {"run": new_run()})
    (True, False)
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import inspect
import os
import platform
import subprocess
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["code_version", "git_state", "machine_info", "module_fingerprint", "new_run", "run_cell", "runs_legend",
           "same_run", "tensor_fingerprint"]


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """CPU, cores, torch threads and versions, and the UTC date."""
    cpu = cpu_name()
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "date": _now()}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _git(*args: str, root: Path) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout


def git_state(root: Path = ROOT) -> dict[str, Any]:
    """``{"commit": HEAD's hash, "dirty": uncommitted or untracked changes}``; ``None`` values outside a git checkout."""
    head = _git("rev-parse", "HEAD", root=root)
    status = _git("status", "--porcelain", root=root) if head is not None else None
    return {"commit": head.strip() if head else None, "dirty": bool(status.strip()) if status is not None else None}


def code_version(paths: Iterable[str | os.PathLike], *, functions: Sequence[Callable[..., Any]] = (), root: Path = ROOT) -> str:
    """A short hash of the ``.py`` files under ``paths`` (files or folders, relative to ``root``) and the
    source of ``functions`` (a benchmark's own measuring code): it changes whenever that code does."""
    h = hashlib.sha256()
    files: list[Path] = []
    for p in paths:
        p = root / p
        files += sorted(p.rglob("*.py")) if p.is_dir() else [p] if p.is_file() else []
    for f in sorted(set(files)):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    for fn in functions:
        h.update(inspect.getsource(fn).encode() + b"\0")
    return h.hexdigest()[:16]


def tensor_fingerprint(t: torch.Tensor) -> str:
    """A short hash of a tensor's shape and values (e.g. a benchmark's targets)."""
    t = t.detach().to("cpu", torch.float32).contiguous()
    return hashlib.sha256(str(tuple(t.shape)).encode() + t.numpy().tobytes()).hexdigest()[:16]


def module_fingerprint(module: torch.nn.Module | None) -> str | None:
    """A short hash of a network's parameters and buffers (``None`` for no network)."""
    if module is None:
        return None
    h = hashlib.sha256(type(module).__name__.encode())
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode() + tensor_fingerprint(t).encode())
    return h.hexdigest()[:16]


def new_run(*, code: str | None = None) -> dict[str, Any]:
    """The record of one benchmark process: a fresh id, the date, the git commit, whether the tree was
    dirty, the measured code's :func:`code_version` and the machine."""
    return {"id": uuid.uuid4().hex[:12], "date": _now(), **git_state(), "code_version": code, "machine": machine_info()}


def same_run(*rows: Mapping[str, Any]) -> bool:
    """Whether every row was measured in one run (rows without a run record never are)."""
    ids = {(r.get("run") or {}).get("id") for r in rows}
    return len(ids) == 1 and None not in ids


def run_cell(run: Mapping[str, Any] | None) -> str:
    """``2026-12-01 5825aef*`` (``*``: the tree had uncommitted changes); ``–`` for a row with no record."""
    if not run:
        return "–"
    commit = (run.get("commit") or "no git")[:7]
    return f"{str(run.get('date', '?'))[:10]} {commit}{'*' if run.get('dirty') else ''}"


def runs_legend(rows: Iterable[Mapping[str, Any]]) -> str:
    """One markdown line per run among ``rows``: id, date, commit, dirty tree, code version, machine."""
    runs: dict[str | None, Mapping[str, Any] | None] = {}
    for r in rows:
        runs.setdefault((r.get("run") or {}).get("id"), r.get("run"))
    lines = []
    for rid, run in runs.items():
        if run is None:
            lines.append("- rows without a run record: measured before runs were recorded (date, commit and code unknown)\n")
            continue
        m = run.get("machine") or {}
        lines.append(f"- run `{rid}`: {run.get('date')}, commit `{(run.get('commit') or 'none')[:12]}`"
                     f"{' with uncommitted changes' if run.get('dirty') else ''}, code `{run.get('code_version')}`, "
                     f"{m.get('cpu', '?')}, {m.get('torch_threads', '?')} torch threads, torch {m.get('torch', '?')}\n")
    head = "Runs (column *run*: date, commit, `*` = uncommitted changes):\n\n" if len(runs) == 1 else \
        f"**{len(runs)} runs** contributed these rows (column *run*: date, commit, `*` = uncommitted changes); " \
        "timings of different runs are not divided by each other:\n\n"
    return head + "".join(lines)
