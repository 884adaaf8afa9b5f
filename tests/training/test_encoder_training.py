"""Encoder training: it learns, e4e's schedule and regularisers, exact resume, two processes equal one."""

from __future__ import annotations

import copy
import os
from dataclasses import replace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from encoder_helpers import ARCH, fast_options, tiny_generator, trained_encoder
from latentshop.errors import CheckpointError, ConfigError
from latentshop.inversion.encoders import encode
from latentshop.latents import synthesize
from latentshop.metrics.image import psnr
from latentshop.training.encoder import EncoderTrainer, build_encoder, train_encoder


@pytest.fixture(scope="module")
def G():
    return tiny_generator(0)


@pytest.fixture(scope="module")
def held_out(G):
    with torch.no_grad():
        return G(torch.randn(6, 8, generator=torch.Generator().manual_seed(99)), noise_mode="const").clamp(-1, 1)


class Images(torch.utils.data.Dataset):
    """uint8 renders of the tiny generator: 'real' images it can reproduce."""

    def __init__(self, G, n=32):
        with torch.no_grad():
            img = G(torch.randn(n, 8, generator=torch.Generator().manual_seed(3)), noise_mode="const")
        self.images = ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], torch.zeros([0])


def reconstruction_psnr(G, E, target, iterations=1):
    lat = encode(G, target, iterations=iterations, encoder=E)
    return float(psnr(synthesize(G, lat).clamp(-1, 1), target).mean())


@pytest.mark.parametrize("kind", ["psp", "e4e"])
def test_training_improves_held_out_reconstruction(G, held_out, kind):
    E0 = trained_encoder(G, steps=0, kind=kind)
    E = trained_encoder(G, steps=60, kind=kind)
    before, after = reconstruction_psnr(G, E0, held_out), reconstruction_psnr(G, E, held_out)
    assert after > before + 1.0, (before, after)


def test_restyle_passes_feed_back_the_reconstruction(G, held_out):
    E = trained_encoder(G, steps=10, kind="psp", iterations=2)
    with torch.no_grad():
        ws1 = E(held_out, E.start_ws(6), E.start_image(6))
        ws2 = E(held_out, ws1, G.synthesis(ws1, noise_mode="const", impl="fast"))
    lat = encode(G, held_out, iterations=2, encoder=E)
    assert torch.allclose(lat.tensor, ws2, atol=1e-5)
    assert lat.meta["method"] == "restyle-psp" and lat.meta["encoder"]["iterations"] == 2
    with pytest.raises(ConfigError, match="ReStyle"):
        encode(G, held_out, iterations=2, encoder=trained_encoder(G, steps=0, kind="psp", restyle=False, iterations=1))


def test_real_images_and_perceptual_loss(G):
    options = fast_options(kind="e4e", sample_fraction=0.5, perceptual=0.8)
    E = build_encoder(G, options, **ARCH)
    trainer = EncoderTrainer(G, E, Images(G), options)
    assert (trainer.n_real, trainer.n_samples) == (4, 4)
    logs = trainer.train_step()
    assert {"mse", "perceptual", "latent", "delta", "adv", "loss_D"} <= set(logs)
    with pytest.raises(ConfigError, match="no real images"):
        EncoderTrainer(G, build_encoder(G, options, **ARCH), None, options)


def test_e4e_progressive_schedule(G):
    options = fast_options(kind="e4e", progressive_start=10, progressive_every=5)
    trainer = EncoderTrainer(G, build_encoder(G, options, **ARCH), None, options)
    assert [trainer.num_deltas(s) for s in (0, 9, 10, 14, 15, 100)] == [0, 0, 1, 1, 2, G.num_ws - 1]
    psp = fast_options(kind="psp")
    assert EncoderTrainer(G, build_encoder(G, psp, **ARCH), None, psp).num_deltas(0) is None


def test_e4e_regularisers_keep_codes_closer_to_w(G):
    loose = trained_encoder(G, steps=30, kind="e4e", delta_reg=0.0, adv=0.0, progressive_start=0, progressive_every=1)
    tight = trained_encoder(G, steps=30, kind="e4e", delta_reg=1.0, adv=0.0, progressive_start=0, progressive_every=1)
    x = G(torch.randn(8, 8, generator=torch.Generator().manual_seed(5)), noise_mode="const")
    with torch.no_grad():
        spread = [float(E.deltas(E(x)).norm(dim=2).mean()) for E in (loose, tight)]
    assert spread[1] < spread[0], spread


def _grads(module):
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in module.parameters()])


def test_e4e_adversarial_term_reaches_the_encoder_and_trains_the_latent_discriminator(G):
    on = fast_options(kind="e4e", adv=0.1, restyle=False, iterations=1, progressive_start=0)

    def fresh(options):
        torch.manual_seed(options.seed)
        return EncoderTrainer(G, build_encoder(G, options, **ARCH), None, options)

    with_adv, without, no_r1, probe = fresh(on), fresh(replace(on, adv=0.0)), fresh(replace(on, r1_gamma=0.0)), fresh(on)
    assert without.D is None
    D0 = copy.deepcopy(with_adv.D)
    logs = with_adv.train_step()
    without.train_step()
    no_r1_logs = no_r1.train_step()

    # the encoder's gradient with the term, less the one without it, is the term's own gradient
    target, _ = probe.batch()  # the first batch, which every trainer above drew
    E0, n, nd = probe.E.requires_grad_(True), target.shape[0], with_adv.num_deltas(0)
    ws = E0(target, E0.start_ws(n), E0.start_image(n), num_deltas=nd)
    adv = F.softplus(-D0(ws[:, : nd + 1].reshape(-1, ws.shape[-1]))).mean()
    assert abs(float(adv.detach()) - logs["adv"]) < 1e-5
    (on.adv * adv).backward()
    expected, got = _grads(E0), _grads(with_adv.E) - _grads(without.E)
    assert float(expected.norm()) > 1e-3 * float(_grads(without.E).norm())  # not negligible beside reconstruction
    assert float((got - expected).norm()) < 1e-3 * float(expected.norm())

    # the latent discriminator is trained, R1 (lazy, step 0 of every 2) included
    assert logs["loss_D"] > 0 and logs["r1"] > 0 and "r1" not in no_r1_logs
    moved = [not torch.equal(a, b) for a, b in zip(D0.parameters(), with_adv.D.parameters())]
    assert all(moved)
    assert any(not torch.equal(a, b) for a, b in zip(with_adv.D.parameters(), no_r1.D.parameters()))
    assert "r1" not in with_adv.train_step()  # step 1: no R1


def _state(trainer):
    return {**{f"E.{k}": v.clone() for k, v in trainer.E.state_dict().items()},
            **{f"D.{k}": v.clone() for k, v in trainer.D.state_dict().items()}}


def test_resume_is_exact(G, tmp_path):
    options = fast_options(kind="e4e", sample_fraction=0.5, bf16=True)
    images = Images(G)

    def fresh():
        torch.manual_seed(options.seed)
        return EncoderTrainer(G, build_encoder(G, options, **ARCH), images, options)

    straight = fresh()
    for _ in range(6):
        straight.train_step()
    first = fresh()
    for _ in range(3):
        first.train_step()
    first.save(tmp_path / "ckpt.pt")
    torch.manual_seed(12345)  # whatever happens in between
    torch.rand(10)
    second = fresh()
    second.resume(tmp_path / "ckpt.pt")
    for _ in range(3):
        second.train_step()
    a, b = _state(straight), _state(second)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert second.step == 6 and second.nimg == 48
    with pytest.raises(CheckpointError, match="another generator"):
        EncoderTrainer(tiny_generator(1), build_encoder(tiny_generator(1), options, **ARCH), images, options).resume(tmp_path / "ckpt.pt")


def test_run_folder_and_stop_resume(G, tmp_path):
    options = fast_options(kind="psp", total_kimg=0.064)
    lines = []
    train_encoder(G, None, tmp_path / "run", options=options, arch=ARCH, snapshot_kimg=0.032, log=lines.append)
    assert (tmp_path / "run" / "encoder" / "model.safetensors").exists()
    assert sorted(p.name for p in (tmp_path / "run").glob("snapshot-*.png")) == ["snapshot-00000032.png", "snapshot-00000064.png"]
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count("psnr_1") == 2
    # resuming a finished run trains nothing more and keeps the encoder
    trainer = train_encoder(G, None, tmp_path / "run", options=options, arch=ARCH, resume=True, log=lines.append)
    assert trainer.step == 8 and any("resumed" in line for line in lines)


# ---- data parallel -------------------------------------------------------------------------------
DP_OPTIONS = dict(kind="e4e", batch_size=4, sample_fraction=0.5)


def _worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        G = tiny_generator(0)
        options = fast_options(**DP_OPTIONS)
        torch.manual_seed(0)
        trainer = EncoderTrainer(G, build_encoder(G, options, **ARCH), Images(G), options)
        assert (trainer.n_real, trainer.n_samples) == (2, 2)
        for _ in range(3):
            trainer.train_step()
        torch.save(_state(trainer), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_processes_equal_one(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert all(torch.equal(r0[k], r1[k]) for k in r0), "ranks diverged"
    G = tiny_generator(0)
    options = fast_options(**DP_OPTIONS)
    torch.manual_seed(0)
    single = EncoderTrainer(G, build_encoder(G, options, **ARCH), Images(G), options)
    start = _state(single)
    for _ in range(3):
        single.train_step()
    one = _state(single)
    for k in one:
        assert torch.allclose(r0[k], one[k], atol=1e-4, rtol=1e-3), k
    assert sum(not torch.equal(one[k], start[k]) for k in one) > len(one) // 2


def test_identity_loss_joins_the_objective_and_reaches_the_encoder(G, tmp_path):
    from latentshop.checkpoints.evaluators import save_evaluator
    from latentshop.models.face_evaluators import IdentityEmbedder

    torch.manual_seed(0)
    net = IdentityEmbedder(dim=16, size=64).eval()
    for p in net.trunk.parameters():  # an untrained trunk is all zeros: every image would embed alike
        torch.nn.init.normal_(p, std=0.3)
    path = save_evaluator(net, tmp_path / "id")
    E = build_encoder(G, fast_options(), **ARCH)
    trainer = EncoderTrainer(G, E, None, fast_options(identity=0.5, identity_net=str(path)))
    logs = trainer.train_step()
    assert "identity" in logs and 0 <= logs["identity"] <= 2
    target, _ = trainer.batch()
    E.requires_grad_(True)
    img = G.synthesis(E(target, E.start_ws(target.shape[0]), E.start_image(target.shape[0])), noise_mode="const")
    loss = trainer.reconstruction_losses(img, target)["identity"]
    assert loss > 0 and loss.requires_grad  # different faces differ, and a gradient reaches the encoder
    with pytest.raises(ConfigError, match="identity embedding"):
        EncoderTrainer(G, build_encoder(G, fast_options(), **ARCH), None, fast_options(identity=0.5, identity_net="expression"))
