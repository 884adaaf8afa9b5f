"""The training loop: it learns something, and a resumed run continues bit for bit."""

from __future__ import annotations

import pytest
import torch

from latentshop.errors import CheckpointError
from latentshop.models.stylegan2 import Discriminator, Generator
from latentshop.training import LossOptions, TrainOptions, Trainer


class ToyImages(torch.utils.data.Dataset):
    """Deterministic uint8 images (and one-hot labels) for tests."""

    def __init__(self, n=12, res=16, c_dim=0):
        g = torch.Generator().manual_seed(123)
        self.images = torch.randint(0, 256, [n, 3, res, res], generator=g, dtype=torch.uint8)
        self.labels = torch.eye(c_dim)[torch.arange(n) % c_dim] if c_dim else torch.zeros([n, 0])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]


def make_trainer(seed_models=0, c_dim=0, **overrides):
    torch.manual_seed(seed_models)
    G = Generator(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=16, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=128, channel_max=16))
    D = Discriminator(c_dim=c_dim, img_resolution=16, img_channels=3, channel_base=128, channel_max=16)
    options = TrainOptions(batch_size=4, g_reg_interval=2, d_reg_interval=2,
                           loss=LossOptions(r1_gamma=1.0, pl_weight=2.0, style_mixing_prob=0.9), **overrides)
    return Trainer(G, D, ToyImages(c_dim=c_dim), options)


def states_equal(a, b):
    return all(torch.equal(a[k], b[k]) for k in a) and a.keys() == b.keys()


@pytest.mark.parametrize("ada", [False, True])
def test_resume_is_exact(tmp_path, ada):
    straight = make_trainer(ada=ada, ada_interval=1, ada_kimg=0.01)
    for _ in range(4):
        straight.train_step()

    first = make_trainer(ada=ada, ada_interval=1, ada_kimg=0.01)
    for _ in range(2):
        first.train_step()
    first.save(tmp_path / "ckpt.pt")
    resumed = make_trainer(seed_models=99, ada=ada, ada_interval=1, ada_kimg=0.01)  # weights must come from the file
    torch.manual_seed(12345)  # and the global RNG too
    resumed.resume(tmp_path / "ckpt.pt")
    for _ in range(2):
        resumed.train_step()

    assert resumed.step == straight.step == 4 and resumed.nimg == 16
    if ada:
        assert 0 < float(straight.augment.p) and torch.equal(straight.augment.p, resumed.augment.p)
    for name in ("G", "D", "G_ema"):
        assert states_equal(getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()), name
    for name in ("G_opt", "D_opt"):
        sa, sb = getattr(straight, name).state_dict()["state"], getattr(resumed, name).state_dict()["state"]
        assert all(states_equal(sa[k], sb[k]) for k in sa), name


def test_training_changes_weights_and_logs_finite_losses():
    t = make_trainer(c_dim=2)
    before = {k: v.clone() for k, v in t.G.state_dict().items()}
    logs = {}
    for _ in range(2):
        logs.update(t.train_step())
    assert {"loss_G", "loss_D", "loss_Dr1", "loss_Gpl"} <= set(logs)
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    after = t.G.state_dict()
    assert not torch.equal(before["synthesis.b16.conv1.weight"], after["synthesis.b16.conv1.weight"])
    assert not torch.equal(before["mapping.w_avg"], after["mapping.w_avg"])  # tracked while training
    assert not torch.equal(t.G_ema.state_dict()["synthesis.b16.conv1.weight"], after["synthesis.b16.conv1.weight"])


def test_bfloat16_autocast_step_runs():
    t = make_trainer(bf16=True)
    logs = t.train_step()
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())


def test_resume_refuses_other_architectures_and_junk(tmp_path):
    t = make_trainer()
    t.save(tmp_path / "a.pt")
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, synthesis_kwargs=dict(channel_base=256, channel_max=32))
    D = Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=128, channel_max=16)
    other = Trainer(G, D, ToyImages(), TrainOptions(batch_size=4))
    with pytest.raises(CheckpointError, match="another architecture"):
        other.resume(tmp_path / "a.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        t.resume(tmp_path / "junk.pt")
