"""Registries: every registered inversion method and edit family works through the shared entry points,
and adding one is one registration — the catalog, the CLI's listing and the studio's sliders pick it up."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

import latentshop
from latentshop import pipeline
from latentshop.checkpoints import save_edit_set
from latentshop.editing.edits import Direction
from latentshop.inversion import (INVERSION_METHODS, InversionMethod, InversionOptions, InversionResult, list_inversion_methods,
                                  register_inversion_method, run_inversion)
from latentshop.latents import Latent
from latentshop.models.fingerprint import generator_fingerprint, tuned_copy
from latentshop.registry import EDIT_FAMILIES, EditControl, EditFamily, Registry, edit_groups, register_edit_family


@pytest.fixture(scope="module")
def synthetic():
    return latentshop.load_model("synthetic")


@pytest.fixture(scope="module")
def target(synthetic):
    return torch.from_numpy(pipeline.render(synthetic, pipeline.seed_latent(synthetic, 21))[0]).permute(2, 0, 1)[None].float() / 127.5 - 1


@pytest.mark.parametrize("method", list_inversion_methods())
def test_every_inversion_method_runs_through_run_inversion(synthetic, target, method):
    entry = INVERSION_METHODS.get(method)
    kwargs = {"encoder": synthetic.encoder(entry.encoder)} if entry.encoder else {}
    steps = {"steps": 2, "noise_steps": 1 if method == "w+noise" else 0, "w_avg_samples": 200} if entry.optimizes else {}
    result = run_inversion(synthetic.G, target, method=method, **kwargs, **steps)
    assert isinstance(result, InversionResult) and result.generator is None
    lat = result.latent
    assert lat.meta["method"] == method and len(lat) == 1 and torch.isfinite(lat.tensor).all()
    assert lat.space == ("w" if method == "w" else "w+")
    if entry.encoder:
        with pytest.raises(latentshop.ConfigError, match="needs a"):
            run_inversion(synthetic.G, target, method=method, **steps)  # no encoder given: a clear error


def test_a_new_inversion_method_is_one_registration(synthetic, target):
    def mean_w(G, target, opts, **_):
        from latentshop.inversion import w_stats

        w, _ = w_stats(G, 100)
        return InversionResult(Latent.from_ws(G, w.repeat(target.shape[0], 1), method=opts.method))

    register_inversion_method(InversionMethod("mean-w", mean_w, InversionOptions(method="mean-w", steps=0), optimizes=False))
    try:
        assert "mean-w" in list_inversion_methods()
        inv = pipeline.invert_photo(synthetic, pipeline.Target(target[0], "t"), method="mean-w")
        assert inv.latent.space == "w" and inv.latent.meta["method"] == "mean-w"
        with pytest.raises(latentshop.ConfigError, match="already registered"):
            register_inversion_method(InversionMethod("mean-w", mean_w, InversionOptions(method="mean-w")))
    finally:
        INVERSION_METHODS.unregister("mean-w")
    assert "mean-w" not in list_inversion_methods()


def test_a_method_that_tunes_the_generator(synthetic, target):
    """A method may return a tuned generator; the model's edits and its pivot stay usable with it."""

    def tune(G, target, opts, **_):
        T = tuned_copy(G)
        with torch.no_grad():
            T.synthesis.b64.torgb.bias.add_(0.05)
        from latentshop.inversion import w_stats

        w, _ = w_stats(G, 100)
        return InversionResult(Latent.from_ws(G, w, method=opts.method), T)

    register_inversion_method(InversionMethod("tune-test", tune, InversionOptions(method="tune-test", steps=0), optimizes=False))
    try:
        with pytest.raises(latentshop.ConfigError, match="tunes the generator"):
            latentshop.invert(synthetic.G, target, method="tune-test")
        src = pipeline.resolve_input(synthetic, pipeline.Target(target[0], "t"), method="tune-test")
        assert src.generator is not None and generator_fingerprint(src.generator) != generator_fingerprint(synthetic.G)
        res = pipeline.edit_photo(synthetic, src, ["smile=+2", "stylespace:smile=2"])  # the base model's edits
        assert res.latent.generator == generator_fingerprint(src.generator)  # the edited code needs the tuned weights
        with pytest.raises(latentshop.latents.LatentError):
            pipeline.render(synthetic, res.latent)
        same_code = Latent(res.latent.tensor, res.latent.space, generator_fingerprint(synthetic.G))
        assert not np.array_equal(res.after, pipeline.render(synthetic, same_code)[0])  # rendered by the tuned generator
    finally:
        INVERSION_METHODS.unregister("tune-test")


@dataclass
class _Shift:
    """A toy edit family: one named shift of w along the first axis."""

    generator: str
    family: str = "shift-test"

    def edit_names(self):
        return ["shift"]

    def describe(self):
        return [("shift", "the first axis of w")]

    def make(self, G, name, strength, *, layers=None, keep=()):
        if name != "shift":
            return None
        v = torch.zeros(G.w_dim)
        v[0] = 1
        return Direction("shift", v, strength, None, 1.0, self.generator)

    def controls(self):
        return [EditControl("shifts", "shift", "shift along w[0]")]

    def to_record(self):
        return "shift-test", {"unit": np.ones(1, np.float32)}, {}


def test_a_new_edit_family_is_one_registration(synthetic, tmp_path):
    register_edit_family(EditFamily("shift-test", file_kind="shift-test",
                                    from_record=lambda header, arrays, where, G: _Shift(str(header["generator"])),
                                    groups=(("shifts", "Shifts"),)))
    try:
        path = save_edit_set(_Shift(generator_fingerprint(synthetic.G)), tmp_path / "shift.npz")
        bundle = latentshop.load_model("synthetic", edit_files=[path])
        assert "shift" in bundle.edits.names() and ("shift", "the first axis of w") in bundle.edits.describe()
        res = pipeline.edit_photo(bundle, "seed:3", ["shift=+3"])
        assert res.edits[0].name == "shift" and not np.array_equal(res.after, res.before)
        assert ("shifts", "Shifts") in edit_groups()
        from latentshop.web.studio import Studio

        st = Studio(["synthetic"], device="cpu", root=tmp_path / "studio")
        try:
            entry = st._load_model("synthetic")  # the studio builds its sliders from the catalog's controls
            entry.bundle.add_edit_files([path])
            assert [c.name for c in entry.bundle.edits.controls() if c.group == "shifts"] == ["shift"]
        finally:
            st.close()
    finally:
        EDIT_FAMILIES.unregister("shift-test")


def test_registry_errors_name_the_choices():
    reg: Registry[int] = Registry("thing")
    reg.register("alpha", 1)
    with pytest.raises(latentshop.ConfigError, match="Did you mean 'alpha'"):
        reg.get("alpah")
    assert reg.names() == ["alpha"] and len(reg) == 1 and "alpha" in reg
