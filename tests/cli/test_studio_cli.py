"""``latentshop studio``: where it listens (the page itself: tests/web/)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from latentshop.cli.main import app
from latentshop.cli.studio import is_loopback

runner = CliRunner()


@pytest.mark.parametrize("host,local", [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True),
                                        ("localhost", True), ("0.0.0.0", False), ("192.168.1.5", False),
                                        ("::", False), ("example.org", False)])
def test_loopback_hosts(host, local):
    assert is_loopback(host) is local


def test_a_non_loopback_host_needs_the_flag():
    r = runner.invoke(app, ["studio", "--host", "0.0.0.0"])
    assert r.exit_code == 1 and "--allow-remote" in r.output
    assert "Traceback" not in r.output


def test_allow_remote_warns_and_passes_the_host(monkeypatch):
    seen = {}

    class Started(Exception):
        pass

    def fake_launch(studio, **kw):
        seen.update(kw, root=studio.root)
        raise Started

    import latentshop.web

    monkeypatch.setattr(latentshop.web, "launch", fake_launch)
    r = runner.invoke(app, ["studio", "--host", "0.0.0.0", "--allow-remote", "--model", "synthetic", "--port", "8123",
                            "--refine-concurrency", "2", "--device", "cpu"])
    assert isinstance(r.exception, Started)
    assert "warning" in r.output and "no login" in r.output
    assert seen["host"] == "0.0.0.0" and seen["port"] == 8123 and seen["refine_concurrency"] == 2
    assert not seen["root"].exists()  # the temporary root is removed however the studio ends


def test_an_unknown_model_is_a_clear_error():
    r = runner.invoke(app, ["studio", "--model", "no-such-model", "--device", "cpu"])
    assert r.exit_code == 1 and "no model could be loaded" in r.output
