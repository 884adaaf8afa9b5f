"""Convert the quantized TFLite MobileNetV2 into latentshop's shipped perceptual-network folder (one-off).

Reads google-coral/test_data ``mobilenet_v2_1.0_224_quant.tflite`` with the ``tflite`` package (the
flatbuffer schema; no interpreter needed) and writes ``src/latentshop/zoo/perceptual/mobilenet_v2/``:

- ``model.safetensors``: for every conv, the uint8 weights in PyTorch layout (``[O, I, kH, kW]``;
  depthwise ``[C, 1, kH, kW]``) with their scale and zero point, and the int32 biases with their
  scale, exactly as stored in the file; latentshop dequantizes them at load time;
- ``config.json``: architecture arguments, input normalisation, the activation quantization of
  every layer (to simulate the integer interpreter), ImageNet labels and provenance (sha256);
- ``LICENSE`` (Apache-2.0, from the source folder) and ``README.md``.

Re-runnable: the folder is replaced atomically. Usage::

    python tools/convert_mobilenet.py [--src ../shared/data/perceptual] [--out src/latentshop/zoo/perceptual/mobilenet_v2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save

from latentshop.models.mobilenet import ConvLayer, InvertedResidual, MobileNetV2

REPO = Path(__file__).resolve().parents[1]
TFLITE_NAME = "mobilenet_v2_1.0_224_quant.tflite"
TFLITE_SHA256 = "7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776"
TFLITE_SIZE = 3610798
FORMAT_VERSION = 1

_LAYER_RE = re.compile(r"^MobilenetV2/(?:(Conv_1)|(Conv)|expanded_conv(?:_(\d+))?/(expand|depthwise|project)|(Logits)/Conv2d_1c_1x1)/")


def _layer_name(tensor_name: str) -> str:
    """Our module name for a TF-slim weight tensor (the first name of a fused tensor is its own)."""
    m = _LAYER_RE.match(tensor_name.split(";")[0])
    if m is None:
        raise ValueError(f"unexpected weight tensor {tensor_name!r}")
    head, stem, block, part, logits = m.groups()
    if head:
        return "head"
    if stem:
        return "stem"
    if logits:
        return "logits"
    return f"blocks.{int(block or 0)}.{part}"


def read_tflite(path: Path) -> dict:
    """The conv weights, biases and activation quantization of the MobileNetV2 graph, keyed by our names.

    Returns:
        ``{"convs": {name: dict(weight_q, weight_scale, weight_zero_point, bias_q, bias_scale, stride, relu6,
        depthwise)}, "act": {name: (scale, zero_point)}, "input": dict(shape, scale, zero_point)}`` with
        weights in TFLite layout (``[O, kH, kW, I]``, depthwise ``[1, kH, kW, C]``).
    """
    import tflite

    buf = path.read_bytes()
    model = tflite.Model.GetRootAsModel(buf, 0)
    graph = model.Subgraphs(0)
    ops_by_code = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}

    def tensor(i: int) -> tuple[str, np.ndarray | None, np.ndarray, np.ndarray]:
        t = graph.Tensors(i)
        q = t.Quantization()
        scale = q.ScaleAsNumpy().astype(np.float32) if q is not None and q.ScaleLength() else np.ones(1, np.float32)
        zp = q.ZeroPointAsNumpy().astype(np.int64) if q is not None and q.ZeroPointLength() else np.zeros(1, np.int64)
        data = model.Buffers(t.Buffer()).DataAsNumpy()
        dtype = {tflite.TensorType.UINT8: np.uint8, tflite.TensorType.INT32: np.int32}.get(t.Type())
        arr = None
        if isinstance(data, np.ndarray) and data.size and dtype is not None:
            arr = data.view(dtype).reshape(t.ShapeAsNumpy()).copy()
        return t.Name().decode(), arr, scale, zp

    convs, act = {}, {}
    inp = graph.Tensors(graph.Inputs(0))
    _, _, in_scale, in_zp = tensor(graph.Inputs(0))
    act["input"] = (float(in_scale[0]), int(in_zp[0]))
    for k in range(graph.OperatorsLength()):
        op = graph.Operators(k)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = ops_by_code[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        out_name, _, out_scale, out_zp = tensor(op.Outputs(0))
        out_q = (float(out_scale[0]), int(out_zp[0]))
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            opts_cls = tflite.Conv2DOptions if kind == "CONV_2D" else tflite.DepthwiseConv2DOptions
            opts = opts_cls()
            raw = op.BuiltinOptions()
            opts.Init(raw.Bytes, raw.Pos)
            if opts.Padding() != tflite.Padding.SAME or opts.StrideH() != opts.StrideW():
                raise ValueError(f"op {k}: expected SAME padding and square strides")
            if kind == "DEPTHWISE_CONV_2D" and opts.DepthMultiplier() != 1:
                raise ValueError(f"op {k}: depth multiplier {opts.DepthMultiplier()} is not 1")
            w_name, w, w_scale, w_zp = tensor(op.Inputs(1))
            _, b, b_scale, b_zp = tensor(op.Inputs(2))
            if w is None or b is None or w.dtype != np.uint8 or b.dtype != np.int32 or np.any(b_zp != 0):
                raise ValueError(f"op {k}: expected uint8 weights and int32 biases with zero point 0")
            name = _layer_name(w_name)
            if name in convs:
                raise ValueError(f"op {k}: layer {name} appears twice")
            fused = opts.FusedActivationFunction()
            if fused not in (tflite.ActivationFunctionType.NONE, tflite.ActivationFunctionType.RELU6):
                raise ValueError(f"op {k}: unexpected fused activation {fused}")
            convs[name] = dict(weight_q=w, weight_scale=w_scale, weight_zero_point=w_zp, bias_q=b, bias_scale=b_scale,
                               stride=opts.StrideH(), relu6=fused == tflite.ActivationFunctionType.RELU6,
                               depthwise=kind == "DEPTHWISE_CONV_2D")
            act[name] = out_q
        elif kind == "ADD":
            m = re.match(r"^MobilenetV2/expanded_conv(?:_(\d+))?/add$", out_name)
            if m is None:
                raise ValueError(f"op {k}: unexpected ADD output {out_name!r}")
            act[f"blocks.{int(m.group(1) or 0)}.add"] = out_q
        elif kind == "AVERAGE_POOL_2D":
            act["pool"] = out_q
        elif kind not in ("RESHAPE", "SOFTMAX"):
            raise ValueError(f"op {k}: unexpected operator {kind}")
    return {"convs": convs, "act": act,
            "input": dict(shape=inp.ShapeAsNumpy().tolist(), scale=act["input"][0], zero_point=act["input"][1])}


def to_torch_layout(w: np.ndarray, depthwise: bool) -> np.ndarray:
    """TFLite ``[O, kH, kW, I]`` (depthwise ``[1, kH, kW, C]``) to PyTorch ``[O, I, kH, kW]`` (``[C, 1, kH, kW]``)."""
    return np.ascontiguousarray(w.transpose(3, 0, 1, 2) if depthwise else w.transpose(0, 3, 1, 2))


def check_against_model(graph: dict, net: MobileNetV2) -> None:
    """Every conv of ``net`` gets exactly one TFLite conv of the same shape, stride, groups and activation."""
    layers = {n: m for n, m in net.named_modules() if isinstance(m, ConvLayer)}
    if set(layers) != set(graph["convs"]):
        raise ValueError(f"layer mismatch: missing {sorted(set(layers) - set(graph['convs']))}, "
                         f"unexpected {sorted(set(graph['convs']) - set(layers))}")
    for name, layer in layers.items():
        c = graph["convs"][name]
        shape = to_torch_layout(c["weight_q"], c["depthwise"]).shape
        if (shape != tuple(layer.weight.shape) or c["stride"] != layer.stride or c["relu6"] != layer.relu6
                or c["depthwise"] != (layer.groups > 1)):
            raise ValueError(f"{name}: TFLite conv {shape} stride {c['stride']} does not match {layer}")
    adds = {f"{n}.add" for n, m in net.named_modules() if isinstance(m, InvertedResidual) and m.use_shortcut}
    if adds != {k for k in graph["act"] if k.endswith(".add")}:
        raise ValueError("the residual additions do not match the architecture")


def convert(src: Path, out: Path) -> Path:
    """Convert ``src/mobilenet_v2_1.0_224_quant.tflite`` into the folder ``out`` (replaced atomically)."""
    tfl = src / TFLITE_NAME
    data = tfl.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != TFLITE_SHA256 or len(data) != TFLITE_SIZE:
        raise SystemExit(f"{tfl}: sha256 {digest} / {len(data)} bytes, expected {TFLITE_SHA256} / {TFLITE_SIZE}")
    graph = read_tflite(tfl)
    net = MobileNetV2()
    check_against_model(graph, net)
    tensors = {}
    for name, c in sorted(graph["convs"].items()):
        tensors[f"{name}.weight_q"] = torch.from_numpy(to_torch_layout(c["weight_q"], c["depthwise"]))
        tensors[f"{name}.weight_scale"] = torch.from_numpy(c["weight_scale"])
        tensors[f"{name}.weight_zero_point"] = torch.from_numpy(c["weight_zero_point"].astype(np.int32))
        tensors[f"{name}.bias_q"] = torch.from_numpy(c["bias_q"])
        tensors[f"{name}.bias_scale"] = torch.from_numpy(c["bias_scale"])
    weights = save(tensors, metadata={"format": "pt", "latentshop_format_version": str(FORMAT_VERSION)})
    labels = (src / "imagenet_labels.txt").read_text().splitlines()
    if len(labels) != net.init_kwargs["num_classes"]:
        raise SystemExit(f"{len(labels)} labels for {net.init_kwargs['num_classes']} classes")
    config = {
        "format_version": FORMAT_VERSION,
        "network": {"kind": "mobilenet_v2", "init_kwargs": net.init_kwargs},
        "input": {
            "color": "RGB", "size": graph["input"]["shape"][1],
            "pixel_scale": graph["input"]["scale"], "pixel_zero_point": graph["input"]["zero_point"],
            "formula": "x = (p - zero_point) * scale for RGB pixels p in [0, 255]",
        },
        "weights": {
            "storage": "per conv: weight_q uint8 [O, I, kH, kW], weight_scale float32, weight_zero_point int32, "
                       "bias_q int32, bias_scale float32; dequantized at load as (q - zero_point) * scale",
            "quantization": "per-tensor" if all(c["weight_scale"].size == 1 for c in graph["convs"].values()) else "per-channel",
            "sha256": hashlib.sha256(weights).hexdigest(),
        },
        "activation_quantization": {k: list(v) for k, v in graph["act"].items()},
        "provenance": {
            "source": "https://github.com/google-coral/test_data", "file": TFLITE_NAME, "sha256": TFLITE_SHA256,
            "bytes": TFLITE_SIZE, "license": "Apache-2.0", "converted_by": "tools/convert_mobilenet.py",
        },
        "labels": labels,
    }
    readme = (
        "# mobilenet_v2 (perceptual network)\n\n"
        "MobileNetV2 1.0 ImageNet classifier (Sandler et al., CVPR 2018), uint8-quantized, from\n"
        f"google-coral/test_data (Apache License 2.0, see LICENSE): `{TFLITE_NAME}`,\n"
        f"{TFLITE_SIZE} bytes, sha256 `{TFLITE_SHA256}`.\n\n"
        "Converted by `tools/convert_mobilenet.py`: the uint8 weights and int32 biases are copied from the\n"
        "flatbuffer unchanged (transposed to PyTorch layout) with their per-tensor scale and zero point;\n"
        "latentshop dequantizes them at load time, `(q - zero_point) * scale`. `config.json` holds the\n"
        "input normalisation (`(p - 128) / 128`), every layer's activation quantization (to simulate the\n"
        "integer interpreter), the 1001 labels (`background` + ImageNet) and the sha256 of `model.safetensors`.\n"
        "Used by `latentshop.metrics.perceptual` (back-end `mobilenet`); see `docs/perceptual.md`.\n"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "model.safetensors").write_bytes(weights)
        (tmp / "config.json").write_text(json.dumps(config, indent=1) + "\n")
        shutil.copyfile(src / "LICENSE", tmp / "LICENSE")
        (tmp / "README.md").write_text(readme)
        os.chmod(tmp, 0o755)
        for f in tmp.iterdir():
            os.chmod(f, 0o644)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=REPO.parent / "shared" / "data" / "perceptual",
                        help="folder holding the .tflite file, LICENSE and imagenet_labels.txt")
    parser.add_argument("--out", type=Path, default=REPO / "src" / "latentshop" / "zoo" / "perceptual" / "mobilenet_v2",
                        help="output folder (replaced)")
    args = parser.parse_args()
    out = convert(args.src, args.out)
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"wrote {out} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
