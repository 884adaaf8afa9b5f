"""Tests of the restricted NVIDIA snapshot reader (``latentshop.checkpoints.nvidia``).

Conformance against ``../shared/fixtures/nv_*`` and a battery of hostile or malformed files.
The hostile pickles are written here, in ``tmp_path``; each would create a canary file if
anything in it ran, and the canary must never appear.
"""

from __future__ import annotations

import builtins
import copyreg
import hashlib
import io
import json
import os
import pickle
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import NV_FIXTURES, NV_WITH_D, fixture_path, load_json, load_npz
from latentshop.checkpoints.nvidia import NetworkRecord, NvidiaSnapshot, read_nvidia_pickle
from latentshop.errors import CheckpointError

PLACEHOLDER_SHA = "53b4e1ec457171d4e2c1454d48013765ab626141c35cdd383b020950effe11a5"
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


# --------------------------------------------------------------------------------------------
# Test-only machinery to re-encode a trusted fixture and to forge hostile pickles.
#
# `StubUnpickler` maps every global of a (trusted) fixture to an inert stub class that stands
# for that global; stub instances record how they were built and reduce back to the same
# global, so `RePickler` can write the same object graph again, at any protocol, with any
# edits made in between. Nothing of the fixture's meaning is executed.


class _Stub(dict):
    """An inert record of a call to (or NEWOBJ of) the global its class stands for."""

    _gmod = ""
    _gname = ""

    def __new__(cls, *args):
        self = super().__new__(cls)
        self.args = args
        self.newobj = True  # NEWOBJ calls __new__ only; REDUCE also calls __init__
        self.state = None
        return self

    def __init__(self, *args):
        self.newobj = False

    def __setstate__(self, state):
        self.state = state

    def __reduce_ex__(self, protocol):
        items = iter(list(self.items())) if len(self) else None
        if self.newobj:
            return (copyreg.__newobj__, (type(self), *self.args), self.state, None, items)
        return (type(self), self.args, self.state, None, items)


_STUB_CLASSES: dict[tuple[str, str], type] = {}


def fake_global(module: str, name: str) -> type:
    """A stub class that pickles as the global ``module.name`` (which need not exist)."""
    key = (module, name)
    if key not in _STUB_CLASSES:
        _STUB_CLASSES[key] = type(name, (_Stub,), {"_gmod": module, "_gname": name})
    return _STUB_CLASSES[key]


def call(module: str, name: str, *args, state=None) -> _Stub:
    """A stub that pickles as ``module.name(*args)`` (plus BUILD with ``state``)."""
    obj = fake_global(module, name)(*args)
    obj.state = state
    return obj


class StubUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        return fake_global(module, name)


class RePickler(pickle._Pickler):
    """The pure-Python pickler, writing stub classes as the globals they stand for."""

    def save_global(self, obj, name=None):
        module = getattr(obj, "_gmod", "")
        if not module:
            return super().save_global(obj, name)
        if self.proto >= 4:
            self.save(module)
            self.save(obj._gname)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{module}\n{obj._gname}\n".encode("ascii"))
        self.memoize(obj)


def dump(obj, protocol: int = 4) -> bytes:
    buf = io.BytesIO()
    RePickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


def stub_tree(name: str) -> dict:
    with open(fixture_path(f"{name}.pkl"), "rb") as f:
        return StubUnpickler(f).load()


def meta_of(record: _Stub) -> dict:
    assert record._gname == "_reconstruct_persistent_obj"
    return record.args[0]


def submodule(record: _Stub, dotted: str) -> _Stub:
    """The persistent record of a submodule, e.g. ``submodule(top["G_ema"], "mapping.fc0")``."""
    for name in dotted.split("."):
        record = meta_of(record)["state"]["_modules"][name]
    return record


class R:
    """Reduces to ``func(*args)``; callable so that a pickler accepts it as a reduce func."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)

    def __call__(self, *args):
        raise AssertionError("never called")


def legacy_stream(main_pickle: bytes) -> bytes:
    """A legacy torch.save stream whose main pickle is ``main_pickle``."""
    type_sizes = {"short": 2, "int": 4, "long": 4}
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": type_sizes}
    head = b"".join(pickle.dumps(x, protocol=2) for x in (LEGACY_MAGIC, 1001, sys_info))
    return head + main_pickle


def write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def assert_refused(path, *fragments: str) -> CheckpointError:
    with pytest.raises(CheckpointError) as info:
        read_nvidia_pickle(path)
    message = str(info.value)
    assert path.name in message
    for fragment in fragments:
        assert fragment in message, message
    return info.value


def assert_state_equal(state: dict, reference: dict[str, np.ndarray]) -> None:
    assert list(state) == list(reference)
    for key, ref in reference.items():
        t = state[key]
        assert t.dtype == torch.float32 and t.is_contiguous() and not t.requires_grad, key
        assert tuple(t.shape) == ref.shape, key
        assert np.array_equal(t.numpy(), ref), key  # max |diff| 0


# --------------------------------------------------------------------------------------------
# Conformance


@pytest.fixture(scope="module")
def snapshots() -> dict[str, NvidiaSnapshot]:
    return {name: read_nvidia_pickle(fixture_path(f"{name}.pkl")) for name in NV_FIXTURES}


@pytest.mark.parametrize("name", NV_FIXTURES)
def test_g_ema_matches_fixture(snapshots, name):
    snap = snapshots[name]
    kwargs = load_json(f"{name}.kwargs.json")
    assert isinstance(snap, NvidiaSnapshot)
    assert snap.path == str(fixture_path(f"{name}.pkl"))
    assert set(snap.networks) == {"G", "G_ema", "D"}
    g_ema = snap.networks["G_ema"]
    assert isinstance(g_ema, NetworkRecord)
    assert_state_equal(g_ema.state_dict, load_npz(f"{name}.G_ema_state.npz"))
    assert list(g_ema.state_dict) == kwargs["state_dict_keys_in_order"]
    assert g_ema.class_name == kwargs["class_name"] == "training.networks.Generator"
    assert g_ema.init_kwargs == kwargs["init_kwargs"]
    assert json.loads(json.dumps(g_ema.init_kwargs)) == g_ema.init_kwargs  # plain data only
    assert type(g_ema.init_kwargs["mapping_kwargs"]) is dict  # EasyDict became dict
    assert g_ema.init_args == tuple(kwargs["init_args"]) == ()
    assert g_ema.source_sha256 == PLACEHOLDER_SHA
    assert snap.training_set_kwargs == kwargs["training_set_kwargs"]
    assert snap.other_keys == ("augment_pipe",)


@pytest.mark.parametrize("name", NV_FIXTURES)
def test_g_differs_from_g_ema(snapshots, name):
    g, g_ema = snapshots[name].networks["G"], snapshots[name].networks["G_ema"]
    assert g.class_name == g_ema.class_name and g.init_kwargs == g_ema.init_kwargs
    assert list(g.state_dict) == list(g_ema.state_dict)
    differing = [k for k in g.state_dict if not torch.equal(g.state_dict[k], g_ema.state_dict[k])]
    assert differing
    assert all(not k.endswith(("w_avg", "noise_const", "resample_filter")) for k in differing)


@pytest.mark.parametrize("name", NV_WITH_D)
def test_d_matches_fixture(snapshots, name):
    d = snapshots[name].networks["D"]
    kwargs = load_json(f"{name}.kwargs.json")
    assert_state_equal(d.state_dict, load_npz(f"{name}.D_state.npz"))
    assert d.class_name == kwargs["D"]["class_name"] == "training.networks.Discriminator"
    assert d.init_kwargs == kwargs["D"]["init_kwargs"]
    assert d.source_sha256 == PLACEHOLDER_SHA


@pytest.mark.parametrize("protocol", [2, 3, 5])
def test_other_pickle_protocols_load(tmp_path, protocol):
    name = "nv_b_uncond32_map2"
    data = dump(stub_tree(name), protocol)
    assert data[:2] == bytes([0x80, protocol])
    if protocol == 2:  # protocol 2 spells bytes and sets through builtins: exercised here
        assert b"_codecs\nencode" in data and b"__builtin__\nset" in data
    snap = read_nvidia_pickle(write(tmp_path, f"p{protocol}.pkl", data))
    assert_state_equal(snap.networks["G_ema"].state_dict, load_npz(f"{name}.G_ema_state.npz"))
    assert snap.networks["G_ema"].init_kwargs == load_json(f"{name}.kwargs.json")["init_kwargs"]


def test_without_torch_1x_absent_hooks_and_plain_modules(tmp_path):
    """Old torch pickles lack most hook dicts; a child may be a plain torch module."""
    name = "nv_b_uncond32_map2"
    top = stub_tree(name)

    def strip(record):
        state = record.state if record.newobj else meta_of(record)["state"]
        for key in [k for k in state if "hooks" in k or k == "_non_persistent_buffers_set"]:
            del state[key]
        for child in state["_modules"].values():
            if child is not None:
                strip(child)

    strip(top["G_ema"])
    # Re-home mapping.fc0 as a plain torch module (NEWOBJ + BUILD of its __dict__).
    linear = fake_global("torch.nn.modules.linear", "Linear")
    plain = linear.__new__(linear)
    plain.state = meta_of(submodule(top["G_ema"], "mapping.fc0"))["state"]
    meta_of(submodule(top["G_ema"], "mapping"))["state"]["_modules"]["fc0"] = plain
    snap = read_nvidia_pickle(write(tmp_path, "old.pkl", dump(top, 3)))
    assert_state_equal(snap.networks["G_ema"].state_dict, load_npz(f"{name}.G_ema_state.npz"))


def test_non_persistent_buffers_are_left_out(tmp_path):
    top = stub_tree("nv_d_uncond16_clamp")
    meta_of(submodule(top["G_ema"], "mapping"))["state"]["_non_persistent_buffers_set"] = {"w_avg"}
    snap = read_nvidia_pickle(write(tmp_path, "np.pkl", dump(top)))
    assert "mapping.w_avg" not in snap.networks["G_ema"].state_dict
    assert "mapping.w_avg" in snap.networks["G"].state_dict


def test_numpy2_scalar_path_and_real_source_hash(tmp_path):
    name = "nv_d_uncond16_clamp"
    top = stub_tree(name)
    source = "import torch\n\nclass Generator(torch.nn.Module):\n    pass\n"
    meta_of(top["G"])["module_src"] = source
    data = dump(top, 3)  # unframed, so the text of a GLOBAL opcode can be edited in place
    assert b"cnumpy.core.multiarray\nscalar\n" in data
    data = data.replace(b"cnumpy.core.multiarray\nscalar\n", b"cnumpy._core.multiarray\nscalar\n")
    snap = read_nvidia_pickle(write(tmp_path, "np2.pkl", data))
    assert snap.networks["G"].source_sha256 == hashlib.sha256(source.encode()).hexdigest()
    assert snap.networks["G"].class_name == "training.networks.Generator"
    assert_state_equal(snap.networks["G_ema"].state_dict, load_npz(f"{name}.G_ema_state.npz"))


def test_snapshot_with_only_g_ema(tmp_path):
    top = stub_tree("nv_d_uncond16_clamp")
    top = {"G_ema": top["G_ema"], "progress": {"cur_nimg": 1000}}
    snap = read_nvidia_pickle(write(tmp_path, "only.pkl", dump(top)))
    assert set(snap.networks) == {"G_ema"}
    assert snap.training_set_kwargs is None
    assert snap.other_keys == ("progress",)


# --------------------------------------------------------------------------------------------
# Hostile files: nothing may run, and each is refused with a CheckpointError.


def _hostile_payloads(canary) -> dict[str, bytes]:
    c = str(canary)
    py_touch = f"open({c!r}, 'w').close()"
    shell = f"touch {c}"
    system_call = R(os.system, (shell,))
    evil_legacy = legacy_stream(pickle.dumps(system_call, protocol=2))
    getattr_chain = R(R(builtins.getattr, (R(builtins.__import__, ("os",)), "system")), (shell,))
    object_dtype = call("numpy", "dtype", "O8", False, True)
    persistence = ("torch_utils.persistence", "_reconstruct_persistent_obj")
    from_bytes = ("torch.storage", "_load_from_bytes")
    scalar = ("numpy.core.multiarray", "scalar")
    hostile_meta = {
        "type": "class",
        "version": 6,
        "module_src": f"import os\n{py_touch}\nos.system('touch {c}')\n",
        "class_name": "Generator",
        "state": {"__setstate__": "pwn"},
    }
    return {
        "os_system": pickle.dumps({"G": system_call}, protocol=4),
        "builtins_eval": pickle.dumps(R(builtins.eval, (py_touch,)), protocol=4),
        "builtins_exec": pickle.dumps({"G_ema": R(builtins.exec, (py_touch,))}, protocol=3),
        "getattr_chain": pickle.dumps(getattr_chain, protocol=2),
        "subprocess_popen": pickle.dumps(R(subprocess.Popen, (["touch", c],)), protocol=4),
        "posix_via_global_opcode": (
            b"\x80\x02cposix\nsystem\nX"  # PROTO 2, GLOBAL posix.system, BINUNICODE ...
            + len(shell).to_bytes(4, "little")
            + shell.encode()
            + b"\x85R."  # TUPLE1, REDUCE, STOP
        ),
        "torch_function": dump({"G": call("torch", "load", c)}),
        "numpy_function": dump({"G": call("numpy", "load", c, True)}),
        "persistence_top_level": dump({"G": call(*persistence, hostile_meta)}),
        "load_from_bytes_legacy": dump({"G": call(*from_bytes, evil_legacy)}),
        "load_from_bytes_plain": dump({"G": call(*from_bytes, pickle.dumps(system_call, 2))}),
        "numpy_object_dtype": pickle.dumps({"G": np.dtype(object)}, protocol=4),
        "numpy_object_array": pickle.dumps({"G": np.array([1, "a"], dtype=object)}, protocol=4),
        "numpy_object_scalar": dump({"G": call(*scalar, object_dtype, b"\0" * 8)}),
        "persistent_id": b"\x80\x02Pevil\n.",
        "stylegan3_global": dump({"G": call("training.networks_stylegan3", "Generator")}),
    }


HOSTILE = list(_hostile_payloads("/nonexistent").keys())


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_pickles_are_refused(tmp_path, kind):
    canary = tmp_path / "canary"
    path = write(tmp_path, f"{kind}.pkl", _hostile_payloads(canary)[kind])
    err = assert_refused(path)
    assert not canary.exists()
    reason = err.reason
    if kind in ("os_system", "posix_via_global_opcode"):
        assert "refuses to load global 'posix.system'" in reason
        assert "tries to run code or is not a StyleGAN2 pickle" in reason
    elif kind in ("builtins_eval", "builtins_exec", "getattr_chain"):
        assert "refuses to load global 'builtins." in reason
    elif kind == "subprocess_popen":
        assert "'subprocess.Popen'" in reason
    elif kind.startswith("load_from_bytes"):
        assert "could not be read safely" in reason and "posix.system" in reason
    elif kind.startswith("numpy_object"):
        assert "numpy dtype 'O8' is not a plain numeric type" in reason
    elif kind in ("torch_function", "numpy_function"):
        assert "refuses to load global '" in reason
    elif kind == "persistence_top_level":
        assert "unexpected structure" in reason
    elif kind == "persistent_id":
        assert "persistent ids" in reason
    elif kind == "stylegan3_global":
        assert "StyleGAN3 is not supported yet" in reason


def test_hostile_payloads_are_live(tmp_path):
    """The payloads above really run code when loaded without restriction (so the tests bite)."""
    live = ["os_system", "builtins_eval", "builtins_exec", "getattr_chain"]
    live.append("posix_via_global_opcode")
    for kind in live:
        canary = tmp_path / f"canary_{kind}"
        pickle.loads(_hostile_payloads(canary)[kind])  # trusted here: we wrote it, in tmp_path
        assert canary.exists(), kind


def test_hostile_global_nested_deep_in_real_snapshot(tmp_path):
    canary = tmp_path / "canary"
    top = stub_tree("nv_b_uncond32_map2")
    fc0_state = meta_of(submodule(top["G_ema"], "mapping.fc0"))["state"]
    fc0_state["activation"] = call("posix", "system", f"touch {canary}")
    path = write(tmp_path, "nested.pkl", dump(top))
    assert_refused(path, "refuses to load global 'posix.system'")
    assert not canary.exists()


def test_embedded_module_source_is_never_run(tmp_path):
    """A source string is data: a snapshot whose sources would make a canary loads without it."""
    canary = tmp_path / "canary"
    evil = f"import os\nopen({str(canary)!r}, 'w').close()\nos.system('touch {canary}')\n"
    top = stub_tree("nv_b_uncond32_map2")
    meta_of(top["G_ema"])["module_src"] = evil
    meta_of(submodule(top["G_ema"], "mapping"))["module_src"] = evil
    snap = read_nvidia_pickle(write(tmp_path, "src.pkl", dump(top)))
    assert not canary.exists()
    assert snap.networks["G_ema"].source_sha256 == hashlib.sha256(evil.encode()).hexdigest()
    reference = load_npz("nv_b_uncond32_map2.G_ema_state.npz")
    assert_state_equal(snap.networks["G_ema"].state_dict, reference)


def test_stylegan3_record_is_refused(tmp_path):
    top = stub_tree("nv_d_uncond16_clamp")
    meta = meta_of(top["G_ema"])
    meta["module_src"] = meta["module_src"].replace("networks.py", "networks_stylegan3.py")
    path = write(tmp_path, "sg3.pkl", dump(top))
    assert_refused(path, "StyleGAN3 is not supported yet", "training.networks_stylegan3.Generator")


def test_forged_tensor_size_is_refused(tmp_path):
    top = stub_tree("nv_d_uncond16_clamp")
    b4 = submodule(top["G_ema"], "synthesis.b4")
    rebuild = meta_of(b4)["state"]["_parameters"]["const"]  # _rebuild_parameter(tensor, ...)
    tensor = rebuild.args[0]
    tensor.args = (tensor.args[0], 0, (1 << 40,), (0,), *tensor.args[4:])
    assert_refused(write(tmp_path, "big.pkl", dump(top)), "larger than the storage")
    tensor.args = (tensor.args[0], 1, (16, 16), (16, 1), *tensor.args[4:])  # 257 > 256 elements
    assert_refused(write(tmp_path, "oob.pkl", dump(top)), "past the end of its storage")
    # BUILD on a rebuilt tensor would reach Tensor.__setstate__ (legacy `set_`) if not boxed.
    tensor.args = (tensor.args[0], 0, (16, 4, 4), (16, 4, 1), *tensor.args[4:])
    tensor.state = (tensor.args[0], 0, (1 << 20,), (1,))
    assert_refused(write(tmp_path, "build.pkl", dump(top)), "a tensor was given extra state")


# --------------------------------------------------------------------------------------------
# Files that are not snapshots


def test_not_snapshots(tmp_path):
    nv_b = fixture_path("nv_b_uncond32_map2.pkl").read_bytes()
    zip_buf, legacy_buf = io.BytesIO(), io.BytesIO()
    torch.save({"w": torch.ones(3)}, zip_buf)
    torch.save({"w": torch.ones(3)}, legacy_buf, _use_new_zipfile_serialization=False)
    persistence = ("torch_utils.persistence", "_reconstruct_persistent_obj")
    bad_meta = {"type": "class", "version": 6, "module_src": "", "class_name": "Generator"}
    bad_meta["state"] = {"_parameters": {}}
    cases = {
        "empty.pkl": (b"", "empty"),
        "random.pkl": (random.Random(0).randbytes(4096), "not a pickle"),
        "random_after_header.pkl": (b"\x80\x04" + random.Random(1).randbytes(4096), ""),
        "truncated.pkl": (nv_b[: len(nv_b) // 2], "truncated"),
        "text.pkl": (b"this is a text file\n" * 10, "not a pickle"),
        "zip.pt": (zip_buf.getvalue(), "zip archive"),
        "legacy.pt": (legacy_buf.getvalue(), "legacy torch.save"),
        "list.pkl": (pickle.dumps([1, 2, 3], protocol=4), "holds a list"),
        "protocol0.pkl": (pickle.dumps({"G": 1}, protocol=0), "not a pickle"),
        "no_networks.pkl": (pickle.dumps({"training_set_kwargs": {}}), "no 'G' or 'G_ema'"),
        "not_a_record.pkl": (pickle.dumps({"G": {"weight": 1}}), "not a persistent NVIDIA network"),
        "bad_state.pkl": (dump({"G": call(*persistence, bad_meta)}), "no _buffers dict"),
    }
    for name, (data, fragment) in cases.items():
        err = assert_refused(write(tmp_path, name, data), fragment)
        assert err.path == str(tmp_path / name)


def test_not_a_regular_file(tmp_path):
    assert_refused(tmp_path, "not a regular file")
    assert_refused(tmp_path / "missing.pkl", "no such file")


def test_accepts_pathlike_and_str():
    path = fixture_path("nv_d_uncond16_clamp.pkl")
    a, b = read_nvidia_pickle(path), read_nvidia_pickle(str(path))
    assert a.path == b.path
    assert list(a.networks["G_ema"].state_dict) == list(b.networks["G_ema"].state_dict)


def test_module_import_has_no_side_effects():
    code = (
        "import sys, latentshop.checkpoints.nvidia\n"
        "roots = ('torch_utils', 'dnnlib', 'training')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in roots))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
