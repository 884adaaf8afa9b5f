"""Data-parallel training: 2 CPU processes (gloo) equal one process with the same global batch."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from latentshop.models.stylegan2 import Discriminator, Generator
from latentshop.training import LossOptions, TrainOptions, Trainer

STEPS = 3
GLOBAL_BATCH = 8


class ToyImages(torch.utils.data.Dataset):
    def __init__(self, n=16, res=16):
        g = torch.Generator().manual_seed(7)
        self.images = torch.randint(0, 256, [n, 3, res, res], generator=g, dtype=torch.uint8)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], torch.zeros([0])


def build_trainer() -> Trainer:
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=128, channel_max=16))
    D = Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=128, channel_max=16,
                      epilogue_kwargs=dict(mbstd_group_size=2))
    options = TrainOptions(batch_size=GLOBAL_BATCH, g_reg_interval=2, d_reg_interval=2,
                           loss=LossOptions(r1_gamma=1.0, pl_weight=2.0, style_mixing_prob=0.9))
    return Trainer(G, D, ToyImages(), options)


def run_steps(trainer: Trainer) -> dict[str, torch.Tensor]:
    for _ in range(STEPS):
        trainer.train_step()
    return {f"{name}.{k}": v.clone() for name in ("G", "D", "G_ema") for k, v in getattr(trainer, name).state_dict().items()}


def _worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        trainer = build_trainer()
        assert trainer.local_batch == GLOBAL_BATCH // world_size
        torch.save(run_steps(trainer), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_processes_equal_one(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0.keys() == r1.keys()
    assert all(torch.equal(r0[k], r1[k]) for k in r0), "ranks diverged"

    single = run_steps(build_trainer())
    initial = build_trainer()
    start = {f"{name}.{k}": v for name in ("G", "D", "G_ema") for k, v in getattr(initial, name).state_dict().items()}
    for k in single:
        assert torch.allclose(r0[k], single[k], atol=1e-4, rtol=1e-4), k
    moved = [k for k in single if not torch.equal(single[k], start[k])]
    assert len(moved) > len(single) // 2  # training really changed the weights it compares
