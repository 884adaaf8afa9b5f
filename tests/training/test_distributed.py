"""Data-parallel training on 2 CPU processes (gloo): with ADA on they equal one process with the same
global batch; a checkpoint keeps every rank's RNG state; a signal on one rank stops all after the same step."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import replace
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from encoder_helpers import ARCH, fast_options, tiny_generator
from latentshop.errors import ConfigError
from latentshop.models.stylegan2 import Discriminator, Generator
from latentshop.training import LossOptions, TrainOptions, Trainer
from latentshop.training.distributed import init_distributed
from latentshop.training.encoder import train_encoder
from latentshop.training.run import RunOptions, run_training

STEPS = 3
GLOBAL_BATCH = 8


class ToyImages(torch.utils.data.Dataset):
    """Random uint8 images; on rank ``kill_rank`` the ``kill_at``-th item read sends this process SIGTERM."""

    def __init__(self, n=16, res=16, kill_at=None, kill_rank=1):
        g = torch.Generator().manual_seed(7)
        self.images = torch.randint(0, 256, [n, 3, res, res], generator=g, dtype=torch.uint8)
        self.kill_at, self.kill_rank, self.calls = kill_at, kill_rank, 0

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        self.calls += 1
        if self.kill_at is not None and self.calls == self.kill_at and dist.get_rank() == self.kill_rank:
            os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler would, to this rank alone
        return self.images[i], torch.zeros([0])


class Noise:
    """A caller's own augmentation drawing from torch's global generator (seeded per rank by the trainer)."""

    def __call__(self, img):
        return img + 0.1 * torch.randn_like(img)


def nets():
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=128, channel_max=16))
    D = Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=128, channel_max=16,
                      epilogue_kwargs=dict(mbstd_group_size=2))
    return G, D


# ADA augments from the first step (p = 0.5) and adapts p every 2 steps
OPTIONS = TrainOptions(batch_size=GLOBAL_BATCH, g_reg_interval=2, d_reg_interval=2, ada=True, ada_p=0.5, ada_interval=2,
                       loss=LossOptions(r1_gamma=1.0, pl_weight=2.0, style_mixing_prob=0.9))


def build_trainer(**changes) -> Trainer:
    options = replace(OPTIONS, **changes)
    return Trainer(*nets(), ToyImages(), options, augment=Noise() if not options.ada else None)


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    out = {f"{name}.{k}": v.clone() for name in ("G", "D", "G_ema") for k, v in getattr(trainer, name).state_dict().items()}
    if trainer.options.ada:  # p, and the overfitting statistic since p's last update (global on every rank)
        out.update({f"augment.{k}": v.clone() for k, v in trainer.augment.state_dict().items()})
    return out


def run_steps(trainer: Trainer, steps: int = STEPS) -> dict[str, torch.Tensor]:
    for _ in range(steps):
        trainer.train_step()
    return weights(trainer)


def _worker(rank: int, world_size: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size,
                           timeout=timedelta(seconds=60))  # a rank left waiting fails instead of hanging
    try:
        results = {}
        # 1. ADA: the global batch's augmentation, split across the ranks
        trainer = build_trainer()
        assert trainer.local_batch == GLOBAL_BATCH // world_size
        torch.save(run_steps(trainer), os.path.join(out, f"ada{rank}.pt"))

        # 2. a per-rank random stream (a caller's augment) survives a checkpoint, rank by rank
        trainer = build_trainer(ada=False)
        run_steps(trainer, 2)
        trainer.save(os.path.join(out, "noise.pt"))  # collective
        at_save = torch.get_rng_state()
        straight = run_steps(trainer, 2)
        resumed = build_trainer(ada=False)
        resumed.resume(os.path.join(out, "noise.pt"))
        results["rng_restored"] = torch.equal(torch.get_rng_state(), at_save)
        again = run_steps(resumed, 2)
        results["resume_exact"] = all(torch.equal(straight[k], again[k]) for k in straight)

        # 3. SIGTERM on rank 1 alone (during step 3's batch): both ranks stop after step 3 and rank 0 saves it
        lines = []
        stopped = run_training(*nets(), ToyImages(kill_at=9), os.path.join(out, "run"),
                               options=OPTIONS, run=RunOptions(total_kimg=0.08, snapshot_kimg=1, log_every=100, grid_size=2),
                               log=lines.append)
        results["gan"] = {"nimg": stopped.nimg, "lines": lines}

        # 4. the same for the encoder trainer
        G = tiny_generator(0)
        lines = []
        options = fast_options(kind="psp", batch_size=4, sample_fraction=0.5, total_kimg=0.04)
        with torch.no_grad():
            renders = G(torch.randn(8, 8, generator=torch.Generator().manual_seed(3)), noise_mode="const")
        images = ToyImages(kill_at=3)
        images.images = ((renders.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        trainer = train_encoder(G, images, os.path.join(out, "encoder"), options=options, arch=ARCH, snapshot_kimg=1,
                                log=lines.append)
        results["encoder"] = {"nimg": trainer.nimg, "lines": lines}
        with open(os.path.join(out, f"results{rank}.json"), "w") as f:
            json.dump(results, f)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """The folder the 2 processes wrote their results to (spawned once for the module)."""
    out = tmp_path_factory.mktemp("ddp")
    context = mp.start_processes(_worker, args=(2, str(out / "init"), str(out)), nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + 300
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for p in context.processes:
                p.terminate()
            pytest.fail("the 2 training processes did not finish (one waiting for the other?)")
    return out


def test_two_processes_with_ada_equal_one(two_ranks):
    r0 = torch.load(two_ranks / "ada0.pt", weights_only=True)
    r1 = torch.load(two_ranks / "ada1.pt", weights_only=True)
    assert r0.keys() == r1.keys()
    assert all(torch.equal(r0[k], r1[k]) for k in r0), "ranks diverged"

    single = run_steps(build_trainer())
    start = weights(build_trainer())
    for k in single:
        assert torch.allclose(r0[k], single[k], atol=1e-4, rtol=1e-4), (k, float((r0[k] - single[k]).abs().max()))
    moved = [k for k in single if not torch.equal(single[k], start[k])]
    assert len(moved) > len(single) // 2  # training really changed the weights it compares
    assert 0 < float(single["augment.p"]) < 1 and float(single["augment.p"]) != 0.5  # ADA adapted p (at step 2)
    assert float(r0["augment._sign_count"]) == GLOBAL_BATCH  # step 3's reals, all of them, on each rank


def test_checkpoint_keeps_every_ranks_rng_state(two_ranks):
    state = torch.load(two_ranks / "noise.pt", weights_only=True)
    per_rank = state["rng"]["torch"]
    assert len(per_rank) == 2 and not torch.equal(per_rank[0], per_rank[1])
    for rank in (0, 1):
        results = json.loads((two_ranks / f"results{rank}.json").read_text())
        assert results["rng_restored"] and results["resume_exact"], (rank, results)


@pytest.mark.parametrize("trainer", ["gan", "encoder"])
def test_signal_on_one_rank_stops_both_after_the_same_step(two_ranks, trainer):
    r0, r1 = (json.loads((two_ranks / f"results{rank}.json").read_text())[trainer] for rank in (0, 1))
    batch = GLOBAL_BATCH if trainer == "gan" else 4
    assert r0["nimg"] == r1["nimg"] == 3 * batch  # rank 1 was signalled during step 3; rank 0 was not
    assert any(f"stopped by signal {int(signal.SIGTERM)} at" in line for line in r0["lines"])
    saved = torch.load(two_ranks / ("run" if trainer == "gan" else "encoder") / "checkpoint.pt", weights_only=True)
    assert saved["step"] == 3 and saved["nimg"] == 3 * batch


def test_init_distributed_without_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init_distributed("cpu") == torch.device("cpu") and not dist.is_initialized()  # a plain command: no group
    monkeypatch.setenv("WORLD_SIZE", "2")  # but not the rest of what torchrun sets
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(ConfigError, match="torchrun --nproc_per_node"):
        init_distributed("cpu")


def test_configure_threads_defaults_and_limits(monkeypatch):
    from latentshop.errors import ConfigError
    from latentshop.training.distributed import configure_threads

    before = torch.get_num_threads()
    try:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
        assert configure_threads() == cores == torch.get_num_threads()  # one process: every core
        monkeypatch.setenv("LOCAL_WORLD_SIZE", str(2 * cores))
        assert configure_threads() == 1  # more processes than cores: one thread each
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
        assert configure_threads(1) == 1 == torch.get_num_threads()  # an explicit count wins
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert configure_threads() == 1  # the user's OMP_NUM_THREADS is kept
        with pytest.raises(ConfigError, match="threads"):
            configure_threads(0)
    finally:
        torch.set_num_threads(before)
