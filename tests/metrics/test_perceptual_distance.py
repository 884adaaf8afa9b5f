"""The MobileNetV2 port (weights and classification against the TFLite interpreter) and the perceptual distances."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, SHARED
from torch import nn

from latentshop.errors import CheckpointError, ConfigError, ShapeError
from latentshop.metrics import list_perceptual, load_perceptual
from latentshop.metrics.perceptual import PERCEPTUAL_DIR, DiscriminatorDistance, load_mobilenet
from latentshop.models.mobilenet import MobileNetV2, dequantize, pixels_to_input, tf_same_pad
from latentshop.models.stylegan2 import Discriminator

TFLITE = SHARED / "data" / "perceptual" / "mobilenet_v2_1.0_224_quant.tflite"
REFERENCE = Path(__file__).with_name("mobilenet_v2_tflite_reference.json")


def synthetic_image() -> np.ndarray:
    """A deterministic 224x224 RGB uint8 test image (sinusoids, a ramp, rings and a red box)."""
    yy, xx = np.mgrid[0:224, 0:224].astype(np.float32) / 223
    r = 127.5 + 127.5 * np.sin(2 * np.pi * (3 * xx + 2 * yy * yy))
    g = 255 * xx * yy
    b = 127.5 + 127.5 * np.cos(2 * np.pi * 5 * np.hypot(xx - 0.5, yy - 0.4))
    img = np.stack([r, g, b], -1)
    img[60:160, 80:150] = [230, 40, 30]
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def net() -> MobileNetV2:
    return load_mobilenet()


@pytest.fixture(scope="module")
def dist() -> nn.Module:
    return load_perceptual("mobilenet", size=96)  # small input: fast tests; the formula is size-independent


def _faces(n: int = 2, size: int = 64) -> torch.Tensor:
    """Smooth, face-sized test images in [-1, 1]."""
    g = torch.Generator().manual_seed(0)
    low = torch.rand(n, 3, 8, 8, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


# --- the port ---------------------------------------------------------------------------------------------------

def test_shipped_folder_and_provenance():
    folder = PERCEPTUAL_DIR / "mobilenet_v2"
    assert {p.name for p in folder.iterdir()} >= {"config.json", "model.safetensors", "LICENSE", "README.md"}
    config = json.loads((folder / "config.json").read_text())
    assert config["provenance"]["sha256"] == "7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776"
    assert config["input"]["pixel_zero_point"] == 128 and config["input"]["pixel_scale"] == 1 / 128
    assert (folder / "model.safetensors").stat().st_size < 4_000_000  # uint8 storage
    assert "Apache License" in (folder / "LICENSE").read_text()


def test_shipped_weights_equal_dequantized_tflite(net: MobileNetV2):
    pytest.importorskip("tflite")
    if not TFLITE.is_file():
        pytest.skip(f"{TFLITE} is not present")
    spec = importlib.util.spec_from_file_location("convert_mobilenet", REPO / "tools" / "convert_mobilenet.py")
    conv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conv)
    graph = conv.read_tflite(TFLITE)
    state = net.state_dict()
    assert len(graph["convs"]) == 53 and set(state) == {f"{n}.{k}" for n in graph["convs"] for k in ("weight", "bias")}
    for name, c in graph["convs"].items():
        w = (c["weight_q"].astype(np.float32) - c["weight_zero_point"].astype(np.float32)) * c["weight_scale"]
        w = w.transpose(3, 0, 1, 2) if c["depthwise"] else w.transpose(0, 3, 1, 2)  # TFLite -> PyTorch layout
        b = c["bias_q"].astype(np.float32) * c["bias_scale"]
        np.testing.assert_array_equal(state[f"{name}.weight"].numpy(), w, err_msg=name)
        np.testing.assert_array_equal(state[f"{name}.bias"].numpy(), b, err_msg=name)


def test_classification_matches_tflite_interpreter(net: MobileNetV2):
    """Logits recorded once with the TFLite interpreter (ai-edge-litert) on a fixed synthetic image."""
    ref = json.loads(REFERENCE.read_text())
    x = pixels_to_input(torch.from_numpy(synthetic_image()).permute(2, 0, 1)[None].float())
    with torch.no_grad():
        logits = net(x)[0]
    assert int(logits.argmax()) == ref["top5"][0]
    assert len(set(logits.topk(5).indices.tolist()) & set(ref["top5"])) >= 4
    assert (logits - torch.tensor(ref["logits"])).abs().max() < 1.0  # float port vs 8-bit interpreter
    assert net.labels[ref["top5"][0]] == ref["top5_labels"][0]
    netq = load_mobilenet(quantize_activations=True)  # simulated 8-bit activations: closer still
    with torch.no_grad():
        logits_q = netq(x)[0]
    assert logits_q.topk(4).indices.tolist() == ref["top5"][:4]  # 5th: 410 vs 617, 0.2 apart in the interpreter
    assert (logits_q - torch.tensor(ref["logits"])).abs().max() < 0.45


def test_tf_same_padding_is_asymmetric():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    padded = tf_same_pad(x, 3, 2)
    assert padded.shape == (1, 1, 5, 5)
    assert torch.equal(padded[..., :4, :4], x) and padded[..., 4, :].abs().sum() == 0  # zeros bottom/right only
    assert tf_same_pad(torch.zeros(1, 1, 5, 5), 3, 2).shape == (1, 1, 7, 7)  # odd size: (1, 1)
    assert torch.equal(dequantize(torch.tensor([3], dtype=torch.uint8), torch.tensor([0.5]), torch.tensor([1])), torch.tensor([1.0]))


def test_load_mobilenet_rejects_a_corrupt_folder(tmp_path: Path):
    folder = tmp_path / "m"
    folder.mkdir()
    src = PERCEPTUAL_DIR / "mobilenet_v2"
    (folder / "config.json").write_text((src / "config.json").read_text())
    data = bytearray((src / "model.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (folder / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_mobilenet(folder)
    with pytest.raises(CheckpointError):
        load_mobilenet(tmp_path / "missing")


# --- the distances ----------------------------------------------------------------------------------------------

def test_registry_and_unknown_name():
    assert list_perceptual() == ["discriminator", "mobilenet", "vgg16"]
    with pytest.raises(ConfigError, match="discriminator, mobilenet, vgg16"):
        load_perceptual("alexnet")


def test_mobilenet_distance_properties(dist):
    a = _faces(2)
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(a.shape, generator=g)
    d0 = dist(a, a)
    assert d0.shape == (2,) and torch.allclose(d0, torch.zeros(2), atol=1e-6)
    d = [dist(a, (a + s * noise).clamp(-1, 1)) for s in (0.03, 0.1, 0.3)]
    assert (d[0] > 0).all() and (d[0] < d[1]).all() and (d[1] < d[2]).all()
    blurred = [torch.nn.functional.avg_pool2d(a, k, stride=1, padding=k // 2, count_include_pad=False) for k in (3, 5)]
    db = [dist(a, x) for x in blurred]
    assert (db[0] > 0).all() and (db[0] < db[1]).all()
    b = (a + 0.1 * noise).clamp(-1, 1)
    assert torch.allclose(dist(a, b), dist(b, a), atol=1e-6)
    single = torch.cat([dist(a[i : i + 1], b[i : i + 1]) for i in range(2)])
    assert torch.allclose(dist(a, b), single, atol=1e-5)
    assert torch.allclose(dist(a, b[:1]), torch.cat([dist(a[i : i + 1], b[:1]) for i in range(2)]), atol=1e-5)


def test_mobilenet_distance_gradients_gray_sizes_mask(dist):
    a = _faces(2, 48)
    b = (a + 0.1).clamp(-1, 1).requires_grad_(True)
    dist(a, b).sum().backward()
    assert torch.isfinite(b.grad).all() and b.grad.abs().sum() > 0
    gray = a.mean(dim=1, keepdim=True)
    assert torch.allclose(dist(gray, gray * 0.9), dist(gray.repeat(1, 3, 1, 1), gray.repeat(1, 3, 1, 1) * 0.9), atol=1e-6)
    for size in (32, 64, 80):
        x = _faces(1, size)
        assert dist(x, -x).item() > 0
    # a mask keeping only the left half ignores any change on the right
    c = _faces(1, 64)
    changed = c.clone()
    changed[..., 40:] = -changed[..., 40:]
    left = torch.zeros(1, 1, 64, 64)
    left[..., :16] = 1
    assert dist(c, changed, mask=left).item() < 0.5 * dist(c, changed).item()
    assert torch.allclose(dist(c, changed, mask=torch.ones(1, 1, 64, 64)), dist(c, changed), atol=1e-6)
    with pytest.raises(ShapeError):
        dist(c, changed, mask=torch.ones(1, 3, 64, 64))
    with pytest.raises(ShapeError):
        dist(c, c[..., :32])


class _TinyLPIPS(nn.Module):
    """Follows the call of NVIDIA's vgg16.pt: vgg16(img_255, resize_images=False, return_lpips=True) -> (N, F)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2)
        torch.nn.init.normal_(self.conv.weight, generator=torch.Generator().manual_seed(0))

    def forward(self, x: torch.Tensor, resize_images: bool = True, return_lpips: bool = False) -> torch.Tensor:
        assert not resize_images and return_lpips
        f = torch.relu(self.conv(x / 127.5 - 1))
        f = f / (f.square().sum(dim=1, keepdim=True) + 1e-10).sqrt()
        return f.flatten(1) / math.sqrt(f.shape[2] * f.shape[3])


def test_vgg16_backend_with_a_scripted_module(tmp_path: Path):
    path = tmp_path / "vgg16.pt"
    torch.jit.script(_TinyLPIPS()).save(str(path))
    dist = load_perceptual("vgg16", path=path)
    assert dist.name == "vgg16" and isinstance(load_perceptual(str(path)), type(dist))
    a = _faces(2, 32)
    b = (a + 0.2).clamp(-1, 1).requires_grad_(True)
    d = dist(a, b)
    assert d.shape == (2,) and (d > 0).all() and torch.allclose(dist(a, a), torch.zeros(2))
    d.sum().backward()
    assert b.grad.abs().sum() > 0
    assert dist(a.mean(1, keepdim=True), b.detach().mean(1, keepdim=True)).shape == (2,)


def test_vgg16_missing_file_says_where_to_get_it(tmp_path: Path):
    with pytest.raises(CheckpointError) as err:
        load_perceptual("vgg16", path=tmp_path / "vgg16.pt")
    msg = str(err.value)
    assert "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt" in msg
    assert "downloads nothing" in msg
    with pytest.raises(ConfigError, match="vgg16.pt"):
        load_perceptual("vgg16")
    (tmp_path / "bad.pt").write_bytes(b"not torchscript")
    with pytest.raises(CheckpointError, match="TorchScript"):
        load_perceptual(tmp_path / "bad.pt")


@pytest.mark.parametrize("img_channels", [3, 1])
def test_discriminator_backend(img_channels: int):
    torch.manual_seed(0)
    D = Discriminator(c_dim=0, img_resolution=16, img_channels=img_channels, channel_base=64, channel_max=16)
    dist = load_perceptual("discriminator", D=D)
    assert isinstance(dist, DiscriminatorDistance) and all(p.requires_grad for p in D.parameters())
    a = _faces(3, 32)  # resized to D's 16 px (and to gray for a 1-channel D)
    b = (a + 0.3 * torch.randn(a.shape, generator=torch.Generator().manual_seed(3))).clamp(-1, 1).requires_grad_(True)
    d = dist(a, b)
    assert d.shape == (3,) and (d > 0).all() and torch.allclose(dist(a, a), torch.zeros(3), atol=1e-6)
    single = torch.cat([dist(a[i : i + 1], b[i : i + 1]) for i in range(3)])
    assert torch.allclose(d, single, atol=1e-5)  # no minibatch-std: each pair stands alone
    d.sum().backward()
    assert b.grad.abs().sum() > 0 and all(p.grad is None for p in D.parameters())
    assert len(dist.features(a)) == len(D.block_resolutions)
    with pytest.raises(ConfigError, match="D=D"):
        load_perceptual("discriminator")
