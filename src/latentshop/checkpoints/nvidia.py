"""Read NVIDIA StyleGAN2 snapshot pickles without running anything from the file.

This module reads the ``network-snapshot-*.pkl`` files written by NVIDIA's
``stylegan2-ada-pytorch`` and ``stylegan3`` (StyleGAN2 configs) training loops: a pickled
``dict`` holding ``G``, ``D``, ``G_ema``, ``augment_pipe`` and ``training_set_kwargs``.
Each network in such a file is a ``torch_utils.persistence`` record: the module source
code, a class name and the ``nn.Module.__dict__`` of the instance. NVIDIA's own loader
executes that embedded source; this reader never executes, compiles or imports anything
from the file. It unpickles with a restricted ``pickle.Unpickler`` whose ``find_class``
hands out inert stand-ins from a short allow-list (see ``_ALLOWED``), turns every other
global into a :class:`~latentshop.errors.CheckpointError`, and rebuilds tensor storages
with ``torch.load(..., weights_only=True)``.

The result is plain data: for each network, its class name, constructor arguments and
``state_dict()``; building the actual modules is the job of ``latentshop.models``.

Example (needs a checkpoint file)::

    snap = read_nvidia_pickle("network-snapshot-000000.pkl")
    snap.networks["G_ema"].class_name  # 'training.networks.Generator'
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import pickle
import re
import stat
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from latentshop.errors import CheckpointError

__all__ = ["NetworkRecord", "NvidiaSnapshot", "read_nvidia_pickle"]

_NETWORK_KEYS = ("G", "D", "G_ema")
_ZIP_MAGIC = b"PK\x03\x04"
# The first pickle of a legacy (non-zip) torch.save file: the magic number 0x1950a86a20f9469cfc6c.
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_MAX_MODULE_DEPTH = 64  # StyleGAN2 networks nest 4 levels deep; anything far deeper is not one.
_MAX_TENSOR_DIMS = 16
_MAX_VIEW_EXPANSION = 64  # a tensor may hold at most this many times its storage's elements

# numpy dtype codes that may appear in scalars and arrays: plain numbers only, never objects.
_SAFE_NUMPY_DTYPES = frozenset(
    ["b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8"]
)

# Module sources whose sha256 we know, and the module they are (the placeholders in the test
# fixtures carry the same hashes).
_KNOWN_SOURCES = {
    "53b4e1ec457171d4e2c1454d48013765ab626141c35cdd383b020950effe11a5": "training.networks",
    "77eb17876bc7ba87cdc9281caf925daf507ce0937b84d0f32134d4d08e13061e": "training.augment",
}
_PLACEHOLDER_RE = re.compile(r"^# source removed \((?P<body>[^\n]*)\)\s*$")
_PLACEHOLDER_SHA_RE = re.compile(r"sha256 (?P<sha>[0-9a-fA-F]{64})")
_PLACEHOLDER_PATH_RE = re.compile(r"(?:^|:)(?P<path>[A-Za-z0-9_./-]+)\.py(?:,|$)")
_DOTTED_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")
_IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class NetworkRecord:
    """One network of a snapshot, as plain data.

    Attributes:
        class_name: dotted class name, e.g. ``"training.networks.Generator"`` (or
            ``"training.networks_stylegan2.Generator"`` from the stylegan3 repository).
        init_kwargs: the constructor keyword arguments as plain nested dicts, lists, str,
            int, float, bool and None.
        init_args: the positional constructor arguments (normally empty).
        state_dict: what ``module.state_dict()`` would return: parameters, then persistent
            buffers, then submodules, recursively, with dotted names and ``None`` entries
            skipped. Floating-point tensors are float32; all are contiguous CPU copies.
        source_sha256: sha256 of the embedded module source, or the hash named by a
            ``# source removed (... sha256 X)`` placeholder; ``None`` if unknown.
    """

    class_name: str
    init_kwargs: dict
    init_args: tuple
    state_dict: OrderedDict[str, torch.Tensor]
    source_sha256: str | None


@dataclass(frozen=True)
class NvidiaSnapshot:
    """The readable content of an NVIDIA snapshot pickle.

    Attributes:
        path: the file that was read.
        networks: the networks present (not ``None``), keyed by ``"G"``, ``"G_ema"``, ``"D"``.
        training_set_kwargs: the dataset options the run used, as plain data, or ``None``.
        other_keys: top-level keys that were not interpreted (``"augment_pipe"``,
            ``"progress"``, ...), in file order.
    """

    path: str
    networks: dict[str, NetworkRecord]
    training_set_kwargs: dict | None
    other_keys: tuple[str, ...]


# --------------------------------------------------------------------------------------------
# Stand-ins handed out by the restricted unpickler. None of them runs code from the file; each
# checks its arguments and builds plain data or a tensor.


class _Refusal(Exception):
    """Raised inside the unpickler; turned into a CheckpointError naming the file."""


class _PersistentRecord:
    """What ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` becomes: the meta."""

    __slots__ = ("class_name", "module_src", "state", "version")

    def __init__(self, class_name: str, module_src: str, state: dict, version: int):
        self.class_name = class_name
        self.module_src = module_src
        self.state = state
        self.version = version

    def __setstate__(self, state: object) -> None:
        raise _Refusal("a persistent network record was given extra state")


def _reconstruct_persistent_obj(meta: object = None, *extra: object) -> _PersistentRecord:
    if extra or not isinstance(meta, dict):
        raise _Refusal("a persistent network record is not a single meta dict")
    missing = {"type", "version", "module_src", "class_name", "state"} - set(meta)
    if missing:
        raise _Refusal(f"a persistent network record lacks {sorted(missing)}")
    if meta["type"] != "class":
        raise _Refusal(f"a persistent record has type {meta['type']!r}; only 'class' is known")
    if not isinstance(meta["version"], int) or isinstance(meta["version"], bool):
        raise _Refusal("a persistent record has a non-integer version")
    class_name, module_src, state = meta["class_name"], meta["module_src"], meta["state"]
    if not isinstance(class_name, str) or not _IDENTIFIER_RE.match(class_name):
        raise _Refusal(f"a persistent record has an invalid class name {class_name!r}")
    if not isinstance(module_src, str):
        raise _Refusal(f"the persistent record of {class_name} has no source string")
    if not isinstance(state, dict):
        raise _Refusal(f"the persistent record of {class_name} has no state dict")
    return _PersistentRecord(class_name, module_src, state, meta["version"])


class _EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a plain dict subclass with no behaviour."""

    __slots__ = ()

    def __setstate__(self, state: object) -> None:
        # EasyDict keeps its content in the dict items; an instance __dict__ carries nothing.
        if state is not None and not isinstance(state, dict):
            raise _Refusal("an EasyDict was given non-dict state")


def _ordered_dict(*args: object) -> OrderedDict:
    if len(args) > 1:
        raise _Refusal("OrderedDict was called with more than one argument")
    if args and not isinstance(args[0], (list, tuple)):
        raise _Refusal("OrderedDict was called with something other than a list of pairs")
    return OrderedDict(*args)


def _plain_set(*args: object) -> set:
    if len(args) > 1 or (args and not isinstance(args[0], (list, tuple))):
        raise _Refusal("set() was called with something other than a list")
    return set(*args)


def _plain_frozenset(*args: object) -> frozenset:
    return frozenset(_plain_set(*args))


def _plain_bytes(*args: object) -> bytes:
    # Protocol 2 writes b"" as bytes(); anything else could allocate at will.
    if args:
        raise _Refusal("bytes() was called with arguments")
    return b""


def _latin1_encode(text: object = None, encoding: object = None, *extra: object) -> bytes:
    # Protocol 2 writes bytes objects as _codecs.encode(str, 'latin1').
    if extra or not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refusal("_codecs.encode was called other than as a protocol-2 bytes literal")
    return text.encode("latin1")


class _Storage:
    """A tensor storage rebuilt from a nested legacy ``torch.save`` stream: a flat 1-D tensor."""

    __slots__ = ("flat",)

    def __init__(self, flat: torch.Tensor):
        self.flat = flat

    def __setstate__(self, state: object) -> None:
        raise _Refusal("a tensor storage was given extra state")


class _TensorBox:
    """A tensor rebuilt from the file, boxed so that later pickle opcodes cannot reach it.

    A bare ``torch.Tensor`` would let BUILD call ``Tensor.__setstate__`` (which can re-point
    its storage) and SETITEMS call ``Tensor.__setitem__``; the box has no such methods.
    """

    __slots__ = ("tensor",)

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor

    def __setstate__(self, state: object) -> None:
        raise _Refusal("a tensor was given extra state")


def _load_from_bytes(data: object = None, *extra: object) -> _Storage:
    """Stand-in for ``torch.storage._load_from_bytes``: safe, weights-only deserialisation."""
    if extra or not isinstance(data, (bytes, bytearray)):
        raise _Refusal("a tensor storage payload is not a bytes object")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(io.BytesIO(bytes(data)), weights_only=True, map_location="cpu")
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, ... for bad payloads
        raise _Refusal(
            f"a tensor storage inside the pickle could not be read safely "
            f"({_torch_load_reason(exc)})"
        ) from exc
    if isinstance(obj, torch.storage.TypedStorage):
        dtype = obj.dtype
        untyped = obj._untyped_storage
    elif isinstance(obj, torch.UntypedStorage):
        dtype, untyped = torch.uint8, obj
    else:
        raise _Refusal(f"a tensor storage payload holds a {type(obj).__name__}, not a storage")
    itemsize = dtype.itemsize
    flat = torch.empty(0, dtype=dtype)
    flat.set_(untyped, 0, (untyped.nbytes() // itemsize,), (1,))
    return _Storage(flat)


def _check_int_seq(value: object, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or len(value) > _MAX_TENSOR_DIMS:
        raise _Refusal(f"a tensor {what} is not a short tuple of integers")
    for v in value:
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise _Refusal(f"a tensor {what} holds {v!r}, not a non-negative integer")
    return tuple(value)


def _no_hooks(hooks: object) -> None:
    if hooks is not None and (not isinstance(hooks, dict) or len(hooks) > 0):
        raise _Refusal("a tensor carries backward hooks")


def _rebuild_tensor_v2(
    storage: object = None,
    storage_offset: object = 0,
    size: object = (),
    stride: object = (),
    requires_grad: object = False,
    backward_hooks: object = None,
    metadata: object = None,
    *extra: object,
) -> _TensorBox:
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: a bounds-checked contiguous copy."""
    if extra or not isinstance(storage, _Storage):
        raise _Refusal("a tensor is not built over a storage from this file")
    if type(storage_offset) is not int or storage_offset < 0:
        raise _Refusal("a tensor has an invalid storage offset")
    size_t = _check_int_seq(size, "size")
    stride_t = _check_int_seq(stride, "stride")
    if len(size_t) != len(stride_t):
        raise _Refusal("a tensor's size and stride differ in length")
    _no_hooks(backward_hooks)
    if metadata is not None and (not isinstance(metadata, dict) or metadata):
        raise _Refusal("a tensor carries metadata this reader does not know")
    flat = storage.flat
    numel = math.prod(size_t)
    if numel == 0:
        return _TensorBox(torch.empty(size_t, dtype=flat.dtype))
    # Checked before allocating, so that a forged size or zero stride cannot ask for
    # unbounded memory (views that overlap themselves are allowed a little room).
    if numel > _MAX_VIEW_EXPANSION * flat.numel():
        raise _Refusal("a tensor is far larger than the storage it is built over")
    last = storage_offset + sum((n - 1) * s for n, s in zip(size_t, stride_t))
    if last >= flat.numel():
        raise _Refusal("a tensor reaches past the end of its storage")
    out = torch.empty(size_t, dtype=flat.dtype)
    out.copy_(torch.as_strided(flat, size_t, stride_t, storage_offset))
    return _TensorBox(out)


def _rebuild_parameter(
    data: object = None,
    requires_grad: object = False,
    backward_hooks: object = None,
    *extra: object,
) -> _TensorBox:
    """Stand-in for ``torch._utils._rebuild_parameter``: the plain tensor, no autograd."""
    if extra or not isinstance(data, _TensorBox):
        raise _Refusal("a parameter is not built over a tensor from this file")
    _no_hooks(backward_hooks)
    return data


class _SafeDtype:
    """A plain numeric numpy dtype, described by its code and byte order."""

    __slots__ = ("code", "byteorder")

    def __init__(self, code: str):
        self.code = code
        self.byteorder = "="

    def __setstate__(self, state: object) -> None:
        # numpy writes (version, byteorder, subarray, names, fields, elsize, alignment, flags)
        # and, for dtypes with metadata, a ninth item.
        if not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4):
            raise _Refusal("a numpy dtype has a state this reader does not know")
        if state[1] not in ("<", ">", "|", "="):
            raise _Refusal("a numpy dtype has an invalid byte order")
        if any(v is not None for v in state[2:5]) or (len(state) == 9 and state[8] is not None):
            raise _Refusal("a numpy dtype has fields, a subarray or metadata (not a plain number)")
        self.byteorder = state[1]

    def to_numpy(self) -> np.dtype:
        dtype = np.dtype(self.code)
        return dtype if self.byteorder in ("=", "|") else dtype.newbyteorder(self.byteorder)


def _numpy_dtype(
    code: object = None, align: object = False, copy: object = False, *extra: object
) -> _SafeDtype:
    """Stand-in for ``numpy.dtype(code, align, copy)`` restricted to plain numeric codes."""
    if extra or not isinstance(code, str) or code not in _SAFE_NUMPY_DTYPES:
        raise _Refusal(f"numpy dtype {code!r} is not a plain numeric type")
    return _SafeDtype(code)


def _numpy_scalar(dtype: object = None, data: object = None, *extra: object) -> int | float | bool:
    """Stand-in for ``numpy.core.multiarray.scalar``: returns the Python number."""
    if extra or not isinstance(dtype, _SafeDtype) or not isinstance(data, (bytes, bytearray)):
        raise _Refusal("a numpy scalar is not a plain number")
    np_dtype = dtype.to_numpy()
    if len(data) != np_dtype.itemsize:
        raise _Refusal("a numpy scalar has the wrong number of bytes")
    return np.frombuffer(bytes(data), dtype=np_dtype)[0].item()


class _NdarrayType:
    """Stand-in for the class ``numpy.ndarray``; only ever an argument of ``_reconstruct``."""

    __slots__ = ()

    def __new__(cls, *args: object) -> _NdarrayType:
        raise _Refusal("numpy.ndarray was called directly")


class _Array:
    """A plain numeric numpy array; created empty by ``_reconstruct`` and filled by BUILD."""

    __slots__ = ("array",)

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: object) -> None:
        if self.array is not None:
            raise _Refusal("a numpy array was filled twice")
        if not isinstance(state, tuple) or len(state) != 5 or state[0] != 1:
            raise _Refusal("a numpy array has a state this reader does not know")
        _, shape, dtype, fortran, raw = state
        shape_t = _check_int_seq(shape, "shape")
        if not isinstance(dtype, _SafeDtype) or not isinstance(raw, (bytes, bytearray)):
            raise _Refusal("a numpy array is not a plain numeric array")
        np_dtype = dtype.to_numpy()
        if len(raw) != math.prod(shape_t) * np_dtype.itemsize:
            raise _Refusal("a numpy array has the wrong number of bytes")
        flat = np.frombuffer(bytes(raw), dtype=np_dtype)
        self.array = flat.reshape(shape_t, order="F" if fortran else "C").copy()


def _numpy_reconstruct(
    subtype: object = None, shape: object = None, code: object = None, *extra: object
) -> _Array:
    """Stand-in for ``numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b')``."""
    if extra or subtype is not _NdarrayType:
        raise _Refusal("numpy _reconstruct was called for something other than an ndarray")
    return _Array()


class _PlainModule:
    """Stand-in for a plain ``torch.nn.modules`` class; keeps the ``__dict__`` given by BUILD."""

    __slots__ = ("state",)
    qualified_name = "torch.nn.Module"

    def __new__(cls, *args: object, **kwargs: object) -> _PlainModule:
        obj = super().__new__(cls)
        obj.state = None
        return obj

    def __setstate__(self, state: object) -> None:
        if not isinstance(state, dict) or self.state is not None:
            raise _Refusal(f"the torch module {self.qualified_name} has an unexpected state")
        self.state = state


def _plain_module_class(qualified_name: str) -> type[_PlainModule]:
    name = qualified_name.rsplit(".", 1)[1]
    return type(name, (_PlainModule,), {"__slots__": (), "qualified_name": qualified_name})


_NUMPY_SCALAR_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")

# The allow-list: (module, name) as written in the pickle -> the stand-in returned for it.
_ALLOWED: dict[tuple[str, str], Callable[..., Any] | type] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy", "ndarray"): _NdarrayType,
    # Protocol 2 and 3 write sets, and protocol 2 writes bytes, through these builtins.
    ("builtins", "set"): _plain_set,
    ("builtins", "frozenset"): _plain_frozenset,
    ("builtins", "bytes"): _plain_bytes,
    ("_codecs", "encode"): _latin1_encode,
}
for _module in _NUMPY_SCALAR_MODULES:
    _ALLOWED[(_module, "scalar")] = _numpy_scalar
    _ALLOWED[(_module, "_reconstruct")] = _numpy_reconstruct

# Python 2 names that protocol-2 pickles may use for the same builtins.
_RENAMED_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


def _torch_load_reason(exc: BaseException) -> str:
    """The informative part of a failed weights-only ``torch.load`` message.

    torch wraps the actual cause in advice about re-running with ``weights_only=False``,
    which is exactly what must not be done with an untrusted file; keep only the cause.
    """
    text = str(exc)
    if "Weights only load failed" in text:
        for marker in ("WeightsUnpickler error:", "trusted source."):
            if marker in text:
                text = text.split(marker, 1)[1]
                break
        detail = " ".join(text.split("Check the documentation", 1)[0].split())
        if detail:
            return f"weights-only unpickler: {detail}"
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that only knows the stand-ins above and refuses everything else."""

    def __init__(self, file: io.BufferedIOBase, path: str):
        super().__init__(file)
        self._path = path
        self._plain_modules: dict[str, type[_PlainModule]] = {}

    def find_class(self, module: str, name: str) -> Any:
        module = _RENAMED_MODULES.get(module, module)
        found = _ALLOWED.get((module, name))
        if found is not None:
            return found
        if (
            module.startswith("torch.nn.modules.")
            and _DOTTED_NAME_RE.match(module)
            and _IDENTIFIER_RE.match(name)
            and name[:1].isupper()
        ):
            qualified = f"{module}.{name}"
            if qualified not in self._plain_modules:
                self._plain_modules[qualified] = _plain_module_class(qualified)
            return self._plain_modules[qualified]
        raise CheckpointError(self._path, _refusal_message(module, name))

    def persistent_load(self, pid: object) -> Any:
        raise CheckpointError(
            self._path,
            "the pickle uses persistent ids, which NVIDIA snapshot pickles never do; "
            "this is not a StyleGAN2 pickle",
        )


def _refusal_message(module: str, name: str) -> str:
    qualified = f"{module}.{name}"
    if module.startswith("training.networks_stylegan3"):
        return (
            f"the pickle references the StyleGAN3 class '{qualified}'; StyleGAN3 is not "
            "supported yet (only StyleGAN2 networks can be read)"
        )
    if module.startswith("dnnlib.tflib"):
        return (
            f"refuses to load global '{qualified}': this is a TensorFlow StyleGAN/StyleGAN2 "
            "pickle, which this reader does not read; convert it to a PyTorch snapshot first"
        )
    return (
        f"the NVIDIA pickle reader refuses to load global '{qualified}', which is not on its "
        "allow-list of tensor and plain-data constructors: this file tries to run code or is "
        "not a StyleGAN2 pickle"
    )


# --------------------------------------------------------------------------------------------
# Interpreting the unpickled data.


def _module_state(obj: object, where: str) -> tuple[dict, str]:
    """The ``nn.Module.__dict__`` of a record or plain module, and its short class name."""
    if isinstance(obj, _PersistentRecord):
        return obj.state, obj.class_name
    if isinstance(obj, _PlainModule):
        if obj.state is None:
            raise _Refusal(f"{where} is a torch module without state")
        return obj.state, obj.qualified_name
    raise _Refusal(f"{where} is a {type(obj).__name__}, not a network module")


def _as_float32(t: torch.Tensor) -> torch.Tensor:
    t = t.detach()
    if t.is_floating_point() and t.dtype != torch.float32:
        t = t.to(torch.float32)
    return t.contiguous()


def _collect_state_dict(
    obj: object,
    prefix: str,
    out: OrderedDict[str, torch.Tensor],
    seen: set[int],
    depth: int,
) -> None:
    where = prefix.rstrip(".") or "(root)"
    if depth > _MAX_MODULE_DEPTH:
        raise _Refusal(f"modules nest more than {_MAX_MODULE_DEPTH} levels deep at {where}")
    if id(obj) in seen:
        raise _Refusal(f"module {where} contains itself")
    seen.add(id(obj))
    state, _ = _module_state(obj, where)
    for key in ("_parameters", "_buffers", "_modules"):
        if not isinstance(state.get(key), dict):
            raise _Refusal(f"module {where} has no {key} dict")
    non_persistent = state.get("_non_persistent_buffers_set") or set()
    if not isinstance(non_persistent, (set, frozenset, list, tuple)):
        raise _Refusal(f"module {where} has an invalid _non_persistent_buffers_set")

    def add(kind: str, name: object, value: object) -> None:
        if not isinstance(name, str):
            raise _Refusal(f"module {where} has a {kind} named {name!r}")
        if value is None:
            return
        if not isinstance(value, _TensorBox):
            raise _Refusal(f"{kind} {prefix}{name} is a {type(value).__name__}, not a tensor")
        full = prefix + name
        if full in out:
            raise _Refusal(f"the name {full} appears twice")
        out[full] = _as_float32(value.tensor)

    for name, value in state["_parameters"].items():
        add("parameter", name, value)
    for name, value in state["_buffers"].items():
        if name not in non_persistent:
            add("buffer", name, value)
    for name, child in state["_modules"].items():
        if not isinstance(name, str):
            raise _Refusal(f"module {where} has a submodule named {name!r}")
        if child is not None:
            _collect_state_dict(child, f"{prefix}{name}.", out, seen, depth + 1)
    seen.discard(id(obj))


def _plain(value: object, where: str, depth: int = 0) -> Any:
    """Convert unpickled kwargs (EasyDict, OrderedDict, tuples, arrays) into JSON-like data."""
    if depth > _MAX_MODULE_DEPTH:
        raise _Refusal(f"{where} nests too deeply")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                raise _Refusal(f"{where} has a key of type {type(k).__name__}")
            out[k] = _plain(v, where, depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v, where, depth + 1) for v in value]
    if isinstance(value, _Array) and value.array is not None:
        return value.array.tolist()
    if isinstance(value, _TensorBox):
        raise _Refusal(f"{where} holds a tensor, which is not plain data")
    raise _Refusal(f"{where} holds a {type(value).__name__}, which is not plain data")


def _source_info(module_src: str, class_name: str) -> tuple[str, str | None]:
    """The dotted module a persistent class came from, and its source hash.

    Placeholders name both. A real source is hashed and matched against known hashes, then,
    for unknown versions, recognised by the classes it defines (plain text search: the source
    is never executed, compiled or parsed as Python).
    """
    match = _PLACEHOLDER_RE.match(module_src.strip())
    if match:
        body = match.group("body")
        sha = _PLACEHOLDER_SHA_RE.search(body)
        path = _PLACEHOLDER_PATH_RE.search(body)
        module = path.group("path").strip("/").replace("/", ".") if path else "unknown"
        if not _DOTTED_NAME_RE.match(module):
            module = "unknown"
        return module, sha.group("sha").lower() if sha else None
    sha256 = hashlib.sha256(module_src.encode("utf-8", errors="surrogatepass")).hexdigest()
    module = _KNOWN_SOURCES.get(sha256)
    if module is None:
        if "class SynthesisInput(" in module_src:
            module = "training.networks_stylegan3"
        elif "class AugmentPipe(" in module_src:
            module = "training.augment"
        elif "networks_stylegan2" in module_src:
            module = "training.networks_stylegan2"
        elif f"class {class_name}(" in module_src:
            module = "training.networks"
        else:
            module = "unknown"
    return module, sha256


def _uses_stylegan3(obj: object, depth: int = 0) -> bool:
    if depth > _MAX_MODULE_DEPTH:
        return False
    if isinstance(obj, _PersistentRecord) and obj.class_name == "SynthesisInput":
        return True
    try:
        state, _ = _module_state(obj, "")
    except _Refusal:
        return False
    children = state.get("_modules")
    if not isinstance(children, dict):
        return False
    return any(_uses_stylegan3(c, depth + 1) for c in children.values() if c is not None)


def _network_record(path: str, key: str, obj: object) -> NetworkRecord:
    if not isinstance(obj, (_PersistentRecord, _PlainModule)):
        raise CheckpointError(
            path,
            f"snapshot['{key}'] is a {type(obj).__name__}, not a persistent NVIDIA network; "
            "this is not a StyleGAN2 snapshot pickle",
        )
    if isinstance(obj, _PersistentRecord):
        module, sha = _source_info(obj.module_src, obj.class_name)
        class_name = f"{module}.{obj.class_name}"
    else:
        class_name, sha = obj.qualified_name, None
    if class_name.startswith("training.networks_stylegan3.") or _uses_stylegan3(obj):
        raise CheckpointError(
            path,
            f"snapshot['{key}'] is a StyleGAN3 network ({class_name}); StyleGAN3 is not "
            "supported yet (only StyleGAN2 networks, including stylegan3's --cfg=stylegan2, "
            "can be read)",
        )
    try:
        state, _ = _module_state(obj, f"snapshot['{key}']")
        init_args = state.get("_init_args", ())
        init_kwargs = state.get("_init_kwargs", {})
        if not isinstance(init_args, (list, tuple)):
            raise _Refusal(f"snapshot['{key}'] has _init_args that are not a tuple")
        if not isinstance(init_kwargs, dict):
            raise _Refusal(f"snapshot['{key}'] has _init_kwargs that are not a dict")
        state_dict: OrderedDict[str, torch.Tensor] = OrderedDict()
        _collect_state_dict(obj, "", state_dict, set(), 0)
        return NetworkRecord(
            class_name=class_name,
            init_kwargs=_plain(init_kwargs, f"{key} init kwargs"),
            init_args=tuple(_plain(list(init_args), f"{key} init args")),
            state_dict=state_dict,
            source_sha256=sha,
        )
    except _Refusal as exc:
        raise CheckpointError(path, f"unexpected structure in snapshot['{key}']: {exc}") from None


# --------------------------------------------------------------------------------------------


def _check_file(path: str) -> None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise CheckpointError(path, "no such file") from None
    except OSError as exc:
        raise CheckpointError(path, f"cannot be read ({_first_line(exc)})") from None
    if not stat.S_ISREG(info.st_mode):
        raise CheckpointError(path, "is not a regular file; give the path of a .pkl snapshot")
    if info.st_size == 0:
        raise CheckpointError(path, "the file is empty; expected an NVIDIA snapshot pickle")


def _check_header(path: str, head: bytes) -> None:
    if head.startswith(_ZIP_MAGIC):
        raise CheckpointError(
            path,
            "this is a zip archive (as torch.save writes), not an NVIDIA snapshot pickle; "
            "for rosinality .pt files or latentshop checkpoints use their own readers",
        )
    if head.startswith(_LEGACY_TORCH_MAGIC):
        raise CheckpointError(
            path,
            "this is a legacy torch.save file, not an NVIDIA snapshot pickle; "
            "for rosinality .pt files use their own reader",
        )
    if len(head) < 2 or head[0] != 0x80 or not 2 <= head[1] <= 5:
        raise CheckpointError(
            path,
            f"not a pickle of protocol 2-5 (it starts with {head[:8]!r}); expected an NVIDIA "
            "StyleGAN2 snapshot such as network-snapshot-000000.pkl",
        )


def read_nvidia_pickle(path: str | os.PathLike) -> NvidiaSnapshot:
    """Read an NVIDIA StyleGAN2 snapshot pickle as plain data, executing nothing from it.

    Args:
        path: a ``.pkl`` written by NVIDIA's ``stylegan2-ada-pytorch`` or ``stylegan3``
            (StyleGAN2 configs) training loop, or a re-encoding of one at pickle protocol 2-5.

    Returns:
        The snapshot's networks (``G``, ``G_ema`` and ``D``, whichever are present), its
        ``training_set_kwargs`` and the names of the top-level keys not interpreted.

    Raises:
        CheckpointError: the file is missing, empty, truncated, not a pickle, a
            ``torch.save`` file, a StyleGAN3 or TensorFlow pickle, structured otherwise than
            a snapshot, or references any code outside the allow-list (it may be hostile).

    Example (needs a checkpoint file)::

        snap = read_nvidia_pickle("ffhq.pkl")
        sorted(snap.networks)  # ['D', 'G', 'G_ema']
    """
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    _check_file(path)
    try:
        with open(path, "rb") as f:
            _check_header(path, f.read(len(_LEGACY_TORCH_MAGIC)))
            f.seek(0)
            top = _RestrictedUnpickler(f, path).load()
    except CheckpointError:
        raise
    except _Refusal as exc:
        raise CheckpointError(
            path, f"{exc}: this file tries to run code or is not a StyleGAN2 pickle"
        ) from None
    except (EOFError, pickle.UnpicklingError) as exc:
        raise CheckpointError(
            path, f"the pickle is truncated or corrupt ({type(exc).__name__}: {_first_line(exc)})"
        ) from None
    except RecursionError:
        raise CheckpointError(path, "the pickle nests too deeply to be a snapshot") from None
    except MemoryError:
        raise CheckpointError(path, "the pickle asks for more memory than is available") from None
    except OSError as exc:
        raise CheckpointError(path, f"cannot be read ({_first_line(exc)})") from None
    except Exception as exc:  # any other decoding failure of untrusted bytes
        raise CheckpointError(
            path, f"not a valid pickle ({type(exc).__name__}: {_first_line(exc)})"
        ) from None
    return _interpret(path, top)


def _interpret(path: str, top: object) -> NvidiaSnapshot:
    if not isinstance(top, dict):
        raise CheckpointError(
            path,
            f"the pickle holds a {type(top).__name__}, but an NVIDIA snapshot is a dict with "
            "'G', 'D', 'G_ema' and 'training_set_kwargs'",
        )
    if any(not isinstance(k, str) for k in top):
        raise CheckpointError(path, "the snapshot dict has non-string keys; not an NVIDIA snapshot")
    if top.get("G") is None and top.get("G_ema") is None:
        raise CheckpointError(
            path,
            f"the pickle has no 'G' or 'G_ema' network (keys: {sorted(top)}); "
            "not an NVIDIA StyleGAN2 snapshot",
        )
    networks = {}
    for key in _NETWORK_KEYS:
        if top.get(key) is not None:
            networks[key] = _network_record(path, key, top[key])
    tsk = top.get("training_set_kwargs")
    try:
        training_set_kwargs = None if tsk is None else _plain(tsk, "training_set_kwargs")
    except _Refusal as exc:
        raise CheckpointError(path, f"unexpected structure: {exc}") from None
    if training_set_kwargs is not None and not isinstance(training_set_kwargs, dict):
        raise CheckpointError(path, "training_set_kwargs is not a dict")
    interpreted = set(_NETWORK_KEYS) | {"training_set_kwargs"}
    other = tuple(k for k in top if k not in interpreted)
    return NvidiaSnapshot(
        path=path,
        networks=networks,
        training_set_kwargs=training_set_kwargs,
        other_keys=other,
    )
