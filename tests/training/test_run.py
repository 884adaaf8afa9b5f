"""A training run end to end: snapshots, exported model, stop on SIGTERM, resume to the same result."""

from __future__ import annotations

import json
import os
import signal

import torch

from latentshop import load_discriminator, load_generator
from latentshop.models.stylegan2 import Discriminator, Generator
from latentshop.training import TrainOptions
from latentshop.training.run import RunOptions, run_training


class ToyImages(torch.utils.data.Dataset):
    def __init__(self, kill_at: int | None = None):
        g = torch.Generator().manual_seed(5)
        self.images = torch.randint(0, 256, [10, 3, 16, 16], generator=g, dtype=torch.uint8)
        self.calls = 0
        self.kill_at = kill_at

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        self.calls += 1
        if self.kill_at is not None and self.calls == self.kill_at:
            os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler would
        return self.images[i], torch.zeros([0])


def nets():
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=128, channel_max=16))
    D = Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=128, channel_max=16)
    return G, D


OPTIONS = TrainOptions(batch_size=4, d_reg_interval=2, ada=True, ada_interval=1)
RUN = RunOptions(total_kimg=0.024, snapshot_kimg=0.012, log_every=2, grid_size=4)


def test_run_writes_snapshots_model_and_log(tmp_path):
    lines = []
    run_training(*nets(), ToyImages(), tmp_path, options=OPTIONS, run=RUN, held_out=ToyImages(), log=lines.append)
    scores = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [s["kimg"] for s in scores] == [0.012, 0.024] and all(s["swd_avg"] > 0 for s in scores)
    assert sorted(p.name for p in tmp_path.glob("snapshot-*.png")) == ["snapshot-000000012.png", "snapshot-000000024.png"]
    assert (tmp_path / "checkpoint.pt").exists() and json.loads((tmp_path / "options.json").read_text())["train"]["batch_size"] == 4
    entries = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert entries[-1]["kimg"] == 0.024 and "ada_p" in entries[-1] and "images_per_s" in entries[-1]
    G, D = load_generator(tmp_path / "model"), load_discriminator(tmp_path / "model")
    assert G.img_resolution == 16 and D.img_resolution == 16
    assert any("img/s" in line for line in lines) and "done" in lines[-1]


def test_sigterm_saves_and_resume_finishes_identically(tmp_path):
    straight = run_training(*nets(), ToyImages(), tmp_path / "a", options=OPTIONS, run=RUN, log=lambda s: None)

    lines = []
    stopped = run_training(*nets(), ToyImages(kill_at=9), tmp_path / "b", options=OPTIONS, run=RUN, log=lines.append)
    assert "stopped by signal" in lines[-1] and stopped.nimg < straight.nimg
    assert not (tmp_path / "b" / "model").exists()
    resumed = run_training(*nets(), ToyImages(), tmp_path / "b", options=OPTIONS, run=RUN, resume=True, log=lines.append)
    assert resumed.nimg == straight.nimg
    for k, v in straight.G_ema.state_dict().items():
        assert torch.equal(v, resumed.G_ema.state_dict()[k]), k
