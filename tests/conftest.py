"""Shared test helpers: where ``../shared/fixtures`` lives and how to read it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures"

NV_FIXTURES = ["nv_a_uncond64", "nv_b_uncond32_map2", "nv_c_cond32_c5", "nv_d_uncond16_clamp"]
NV_WITH_D = ["nv_a_uncond64", "nv_c_cond32_c5"]


def fixture_path(name: str) -> Path:
    """Path of a file in ``../shared/fixtures``; skips the test only when the folder is absent."""
    if not FIXTURES.is_dir():
        pytest.skip("../shared/fixtures is not present (it is beside the checkout in CI)")
    path = FIXTURES / name
    assert path.exists(), f"fixture {name} missing from {FIXTURES}"
    return path


def load_npz(name: str) -> dict[str, np.ndarray]:
    with np.load(fixture_path(name)) as f:
        return {k: f[k] for k in f.files}


def load_json(name: str) -> dict:
    return json.loads(fixture_path(name).read_text())


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """The browser tests run wherever Debian's Chromium and Playwright are present (``CI`` or not);
    where one is missing, tests/web/test_browser.py is skipped and the summary says why in one line."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not any("test_browser.py" in str(getattr(r, "nodeid", "") or getattr(r, "fspath", "")) for r in skipped):
        return
    import importlib.util

    spec = importlib.util.spec_from_file_location("browser_helpers", REPO / "tests" / "web" / "browser_helpers.py")
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    why = helpers.missing()
    if why:
        terminalreporter.write_line(f"browser tests (tests/web/test_browser.py) SKIPPED: {why}", yellow=True, bold=True)


@pytest.fixture(params=["eager", "compiled"])
def fused_kernels(request, monkeypatch):
    """Run a test with both kinds of the fast path's fused kernels: eager ops, and kernels compiled
    by torch.compile at every size (inside and outside training steps); a compile failure fails."""
    import warnings

    import latentshop.ops.fused as fused

    monkeypatch.setitem(fused._state, "enabled", request.param == "compiled")
    monkeypatch.setitem(fused._state, "autograd", True)
    monkeypatch.setattr(fused, "COMPILE_MIN_NUMEL", 0)
    monkeypatch.setattr(fused, "COMPILE_MIN_NUMEL_AUTOGRAD", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield request.param
