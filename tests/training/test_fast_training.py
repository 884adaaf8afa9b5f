"""The fast training path trains the same model as the reference path: same outputs, gradients,
losses over the first steps, and quality after a short run; and it resumes exactly."""

from __future__ import annotations


import pytest
import torch

from latentshop.metrics.swd import SlicedWassersteinDistance
from latentshop.models.stylegan2 import Discriminator, Generator
from latentshop.training import LossOptions, TrainOptions, Trainer
from latentshop.errors import ConfigError

from tests.training.test_loop import make_trainer, states_equal


def _models(channels=3, architecture="resnet", res=16):
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=res, img_channels=channels,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=128, channel_max=16, conv_clamp=256))
    D = Discriminator(c_dim=0, img_resolution=res, img_channels=channels, channel_base=128, channel_max=16,
                      architecture=architecture, conv_clamp=256)
    return G.train(), D.train()


def _grads(module, loss):
    """Gradients of every parameter, zeros where the loss does not depend on it."""
    params = [p for p in module.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


@pytest.mark.parametrize("channels, architecture", [(3, "resnet"), (1, "resnet"), (3, "skip")])
def test_discriminator_fast_matches_reference(fused_kernels, channels, architecture):
    _, D = _models(channels, architecture)
    img = torch.randn(4, channels, 16, 16, requires_grad=True)
    ref = D(img)
    got = D(img, impl="fast")
    assert torch.allclose(got, ref, atol=1e-4)
    for a, b in zip(_grads(D, got.square().sum()), _grads(D, ref.square().sum())):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
    # R1: the gradient of the gradient with respect to the image
    def r1(impl):
        (g,) = torch.autograd.grad(D(img, impl=impl).sum(), img, create_graph=True)
        return _grads(D, g.square().sum())
    for a, b in zip(r1("fast"), r1("reference")):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-3)


def test_generator_training_gradients_match_reference(fused_kernels):
    G, _ = _models()
    ws = G.mapping(torch.randn(3, 8)).detach().requires_grad_()
    noise = {name: torch.randn(3, 1, r, r) for name, r in G.synthesis.noise_layers().items()}
    ref = G.synthesis(ws, noise_mode=noise)
    got = G.synthesis(ws, noise_mode=noise, impl="fast")
    assert torch.allclose(got, ref, atol=1e-4)
    g = torch.randn_like(ref)
    for a, b in zip(_grads(G, (got * g).sum()), _grads(G, (ref * g).sum())):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-3)
    # the path-length penalty: gradients of the gradient with respect to ws
    def pl(impl):
        img = G.synthesis(ws, noise_mode=noise, impl=impl)
        (gw,) = torch.autograd.grad((img * g).sum(), ws, create_graph=True)
        return _grads(G, gw.square().sum())
    for a, b in zip(pl("fast"), pl("reference")):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-3)


def test_fast_losses_follow_the_reference_over_the_first_steps(fused_kernels):
    """Same seed, float32: the losses of the first steps agree (the paths differ by rounding only,
    which the adversarial game amplifies slowly; 1e-3 relative over 6 steps)."""
    logs = {}
    for impl in ("reference", "fast"):
        trainer = make_trainer(ada=True, ada_interval=1, ada_kimg=0.01, ada_p=0.5, impl=impl)
        logs[impl] = [trainer.train_step() for _ in range(6)]
    for ref, got in zip(logs["reference"], logs["fast"]):
        assert ref.keys() == got.keys()
        for key in ref:
            assert got[key] == pytest.approx(ref[key], rel=1e-3, abs=1e-4), key


def test_fast_path_resumes_exactly(tmp_path, fused_kernels):
    straight = make_trainer(impl="fast")
    for _ in range(4):
        straight.train_step()
    first = make_trainer(impl="fast")
    for _ in range(2):
        first.train_step()
    first.save(tmp_path / "ckpt.pt")
    resumed = make_trainer(seed_models=99, impl="fast")
    resumed.resume(tmp_path / "ckpt.pt")
    for _ in range(2):
        resumed.train_step()
    for name in ("G", "D", "G_ema"):
        assert states_equal(getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()), name


def test_unknown_impl_is_refused():
    with pytest.raises(ConfigError, match="impl"):
        make_trainer(impl="turbo")


class _Blobs(torch.utils.data.Dataset):
    """Smooth random colour blobs at 16 px: structure a tiny GAN learns within a few hundred steps."""

    def __init__(self, n=256, res=16):
        g = torch.Generator().manual_seed(7)
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, res), torch.linspace(-1, 1, res), indexing="ij")
        centre = torch.rand(n, 2, 1, 1, generator=g) * 1.2 - 0.6
        radius = torch.rand(n, 1, 1, generator=g) * 0.3 + 0.25
        colour = torch.rand(n, 3, 1, 1, generator=g)
        inside = (((yy - centre[:, 0]) ** 2 + (xx - centre[:, 1]) ** 2).sqrt() < radius).float()[:, None]
        self.images = ((colour * inside + 0.15 * (1 - inside)) * 255).round().to(torch.uint8)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], torch.zeros([0])


def test_a_short_run_reaches_the_same_quality_on_both_paths():
    """SWD of G_ema after 1.5 kimg of 16 px blobs: both paths improve alike on random init, within noise."""
    data = _Blobs()
    swd = {}
    for impl in ("reference", "fast"):
        G, D = _models()
        trainer = Trainer(G, D, data, TrainOptions(batch_size=8, impl=impl, loss=LossOptions(r1_gamma=0.5, pl_weight=0.0)))
        metric = SlicedWassersteinDistance(16, num_images_hint=256)
        metric.update(data.images, "real")

        def score():
            metric.reset("fake")
            with torch.no_grad():
                fake = trainer.G_ema(torch.randn(256, 8, generator=torch.Generator().manual_seed(1)), noise_mode="const")
            metric.update(((fake.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8), "fake")
            return metric.compute()["swd_avg"]

        start = score()
        for _ in range(190):
            trainer.train_step()
        swd[impl] = (start, score())
    for impl, (start, end) in swd.items():
        assert end < 0.8 * start, (impl, swd)  # both learn
    ref, fast = swd["reference"][1], swd["fast"][1]
    assert abs(fast - ref) < 0.35 * max(ref, fast), swd  # and end up alike
