"""The browser tests run wherever Debian's Chromium and Playwright are present (``CI`` or not); where
one is missing, test_browser.py is skipped and the summary says so in one line."""

from __future__ import annotations

from browser_helpers import missing


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    why = missing()
    skipped = terminalreporter.stats.get("skipped", [])
    if why and any("test_browser.py" in str(getattr(r, "nodeid", "") or getattr(r, "fspath", "")) for r in skipped):
        terminalreporter.write_line(f"browser tests (tests/web/test_browser.py) SKIPPED: {why}", yellow=True, bold=True)
