"""A model and everything that belongs to it, read once: :func:`load_model` → :class:`ModelBundle`.

In the spirit of diffusers' ``from_pretrained``: one call takes a model name or any checkpoint a
user has (an NVIDIA ``.pkl``, a rosinality ``.pt``, a latentshop folder) and gives the generator
and, beside it, what the main job needs — the discriminator, the encoders trained for this
generator, its edit catalog, its evaluators. Each file is read once, here, on first use; a part the
model does not have is ``None`` (or an empty mapping), and the call that needs it says how to get it.

Where the parts are found:

- **encoders** — ``<folder>/encoders/<kind>/`` (``<file>.encoders/<kind>/`` beside a ``.pkl``/``.pt``),
  then any bundled or ``$LATENTSHOP_MODELS`` encoder trained for this generator (by fingerprint);
- **edits** — ``<folder>/edits/*.npz`` (``<file>.edits/``), stale files of another generator skipped,
  plus the files given as ``edit_files`` (refused with an error when they do not fit);
- **evaluators** — ``<folder>/evaluators.json``: ``{role: evaluator name or folder}``, e.g. the
  ``labels`` evaluator that scores samples for InterFaceGAN and StyleSpace, and ``parts`` (the part
  segmenter) for locality; ``evaluators=`` overrides or adds roles.

Example:
    >>> bundle = load_model("synthetic", device="cpu")
    >>> bundle.G.img_resolution, sorted(bundle.encoders)
    (64, ['e4e', 'psp'])
    >>> "smile" in bundle.edits.names(), sorted(bundle.evaluator_names)
    (True, ['labels', 'parts'])
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from latentshop.checkpoints.edit_files import edit_files_beside, read_edit_sets
from latentshop.checkpoints.encoders import cached_load_encoder, list_encoder_files, no_encoder_error
from latentshop.checkpoints.evaluators import Evaluator, load_evaluator
from latentshop.checkpoints.loader import Checkpoint, network_from_checkpoint, read_checkpoint, resolve_checkpoint_path
from latentshop.errors import CheckpointError, ConfigError
from latentshop.models.encoders import Encoder
from latentshop.models.stylegan2 import Discriminator, Generator
from latentshop.registry import EditCatalog
from latentshop.runtime import resolve_device

__all__ = ["EVALUATORS_FILE", "ModelBundle", "load_model"]

#: the file in a model folder that names its evaluators by role
EVALUATORS_FILE = "evaluators.json"


@dataclass(eq=False)
class ModelBundle:
    """A generator and its assets. Build it with :func:`load_model`.

    Attributes:
        name: what the model was asked for by (a bundled name or the path given).
        path: the checkpoint file or folder it was read from.
        G: the generator (``G_ema`` where the file has one), in eval mode.
        device: where the networks live.
    """

    name: str
    path: Path
    G: Generator
    device: torch.device
    checkpoint: Checkpoint | None = field(default=None, repr=False)
    encoder_files: dict[str, Path] = field(default_factory=dict)
    evaluator_names: dict[str, str] = field(default_factory=dict)
    edit_files: list[Path] = field(default_factory=list)
    explicit_edit_files: list[Path] = field(default_factory=list)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    # ---- the discriminator ---------------------------------------------------------------------
    @property
    def D(self) -> Discriminator | None:
        """The discriminator, built on first use from the same read of the file (``None``: the file has none)."""
        if "D" not in self._cache:
            D = None
            if self.checkpoint is not None and any(s.kind == "discriminator" for s in self.checkpoint.networks.values()):
                D = network_from_checkpoint(self.checkpoint, "discriminator", which="D", device=self.device)
            self._cache["D"] = D
        return self._cache["D"]

    def discriminator(self) -> Discriminator:
        """The discriminator, or a clear error when the checkpoint has none."""
        D = self.D
        if D is None:
            raise CheckpointError(self.path, "holds no discriminator (NVIDIA pickles and rosinality train.py "
                                             "checkpoints do; a G-only export does not)")
        return D

    # ---- encoders ------------------------------------------------------------------------------
    @property
    def encoder_kinds(self) -> list[str]:
        """The encoders this model has, by kind (``psp``, ``e4e``...), without loading them."""
        return sorted(self.encoder_files)

    def encoder(self, kind: str) -> Encoder:
        """The ``kind`` encoder (loaded once), or a clear error that says how to train one."""
        if kind not in self.encoder_files:
            raise no_encoder_error(kind, self.encoder_files)
        key = f"encoder:{kind}"
        if key not in self._cache:
            self._cache[key] = cached_load_encoder(self.encoder_files[kind], self.G)
        return self._cache[key]

    @property
    def encoders(self) -> dict[str, Encoder]:
        """Every encoder of this model by kind (each loaded once; empty when it has none)."""
        return {k: self.encoder(k) for k in self.encoder_kinds}

    def use_encoder(self, path: str | os.PathLike) -> Encoder:
        """Load an encoder folder for this generator (refused if trained for another) and make it the
        bundle's encoder of its kind."""
        E = cached_load_encoder(Path(path), self.G)
        self.encoder_files[E.kind] = Path(path)
        self._cache[f"encoder:{E.kind}"] = E
        return E

    # ---- evaluators ----------------------------------------------------------------------------
    def evaluator(self, role: str = "labels") -> Evaluator:
        """The evaluator of ``role`` (``labels``: scores samples; ``parts``: the part segmenter), loaded once."""
        if role not in self.evaluator_names:
            raise ConfigError(f"this model has no {role!r} evaluator: pass --evaluator NAME|FOLDER "
                              f"(shipped evaluators: synthetic, expression, parts; or train one with `latentshop evaluator train`)")
        key = f"evaluator:{role}"
        if key not in self._cache:
            self._cache[key] = load_evaluator(self.evaluator_names[role], device=self.device)
        return self._cache[key]

    @property
    def evaluators(self) -> dict[str, Evaluator]:
        """Every evaluator of this model by role (each loaded once)."""
        return {r: self.evaluator(r) for r in self.evaluator_names}

    # ---- edits ---------------------------------------------------------------------------------
    @property
    def edits(self) -> EditCatalog:
        """The edit catalog: the model's edit files (stale ones skipped) plus ``edit_files`` given, read once."""
        if "edits" not in self._cache:
            sets = read_edit_sets(self.G, self.edit_files, explicit=False)
            sets += read_edit_sets(self.G, self.explicit_edit_files, explicit=True)
            self._cache["edits"] = EditCatalog(sets, self.G)
        return self._cache["edits"]

    def add_edit_files(self, paths: Sequence[str | os.PathLike]) -> EditCatalog:
        """Add edit files to the catalog (each must belong to this generator: an error says why not)."""
        new = [Path(p) for p in paths if Path(p) not in self.explicit_edit_files]
        if new:
            catalog = self.edits
            catalog.sets.extend(read_edit_sets(self.G, new, explicit=True))
            self.explicit_edit_files.extend(new)
        return self.edits


def _evaluator_roles(path: Path) -> dict[str, str]:
    f = path / EVALUATORS_FILE if path.is_dir() else path.with_name(path.name + "." + EVALUATORS_FILE)
    if not f.is_file():
        return {}
    try:
        roles = json.loads(f.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f, f"not a readable evaluator list ({e}); expected {{\"labels\": \"NAME|FOLDER\"}}") from None
    if not isinstance(roles, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in roles.items()):
        raise CheckpointError(f, "expected a JSON object of role -> evaluator name or folder, e.g. {\"labels\": \"expression\"}")
    out = {}
    for role, value in roles.items():
        # a relative folder is relative to the model; a bare name is a shipped evaluator
        candidate = (f.parent / value)
        out[role] = str(candidate) if (os.sep in value or "/" in value) and candidate.is_dir() else value
    return out


def load_model(name_or_path: str | os.PathLike, *, device: str | torch.device = "cpu", which: str = "G_ema",
               edit_files: Sequence[str | os.PathLike] = (), evaluators: Mapping[str, str] | None = None,
               encoder: str | os.PathLike | None = None) -> ModelBundle:
    """Load a model and find its assets (see the module docstring).

    Args:
        name_or_path: a bundled model's name (``default``, ``synthetic``) or a checkpoint: an NVIDIA
            ``.pkl``, a rosinality ``.pt`` or a latentshop folder.
        device: ``"cpu"``, ``"cuda"``, ``"auto"``...
        which: the generator to use: ``"G_ema"`` (the averaged weights) or ``"G"``.
        edit_files: extra edit files for the catalog (refused if made for another generator).
        evaluators: ``{role: name or folder}`` to use instead of, or besides, the model's own.
        encoder: an encoder folder to use for its kind instead of the model's own.

    Returns:
        A :class:`ModelBundle`; the generator is read now, every other part on first use.

    Raises:
        CheckpointError: the checkpoint cannot be read or holds no generator.
    """
    path = resolve_checkpoint_path(name_or_path)
    dev = resolve_device(device)
    ck = read_checkpoint(path)
    G = network_from_checkpoint(ck, "generator", which=which, device=dev)
    roles = _evaluator_roles(path)
    roles.update(dict(evaluators or {}))
    bundle = ModelBundle(name=str(name_or_path), path=path, G=G, device=dev, checkpoint=ck,
                         encoder_files=list_encoder_files(G, beside=path), evaluator_names=roles,
                         edit_files=edit_files_beside(path), explicit_edit_files=[Path(p) for p in edit_files])
    if encoder is not None:
        bundle.use_encoder(encoder)
    return bundle
