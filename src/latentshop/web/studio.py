"""The studio's state and actions, without any user interface.

:class:`Studio` holds the loaded models (each with its edit catalogue and the sliders it gets) and one
:class:`Session` per browser tab. Every action calls the main job's owner, :mod:`latentshop.pipeline`, over each
model's :class:`~latentshop.checkpoints.ModelBundle` (:func:`latentshop.load_model`) — and keeps what a tab made (its photo, its latents, its downloads) in that
session's own folder under the studio's private temporary root, which is removed when the tab closes
(:meth:`Studio.end_session`) and when the studio stops (:meth:`Studio.close`). The Gradio page in
:mod:`latentshop.web.app` only wires these methods to widgets, so they are tested here without a
browser.

Files are only ever opened from two kinds of place: uploads, which must lie inside the studio's own
upload folder (where the web server stored them), and the example photos, picked by name from a list
the server made. A path sent by a client is never opened.
"""

from __future__ import annotations

import re
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from latentshop.errors import ConfigError, ImageError, LatentshopError
from latentshop.registry import edit_groups

__all__ = [
    "EXAMPLE_SUFFIXES",
    "GROUPS",
    "MAX_UPLOAD_BYTES",
    "MAX_UPLOAD_PIXELS",
    "ModelEntry",
    "Session",
    "SliderSpec",
    "Studio",
    "StudioError",
    "find_models",
]

#: slider groups, in the order the page shows them: every registered edit family's control groups
GROUPS = tuple(g for g, _ in edit_groups())
GROUP_TITLES = dict(edit_groups())
MAX_UPLOAD_BYTES = 10 * 2**20  # larger uploads are refused before they are decoded
MAX_UPLOAD_PIXELS = 40_000_000  # larger images are refused before their pixels are decoded
EXAMPLE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
MODEL_SUFFIXES = (".pkl", ".pt", ".pth")
SESSION_TTL_S = 6 * 3600  # a tab idle this long is dropped even if the browser never said goodbye
MAX_SESSIONS = 256  # beyond this many open tabs, the longest idle one is dropped


class StudioError(LatentshopError):
    """Something a person can fix from the page (the message says what)."""


@dataclass(frozen=True)
class SliderSpec:
    """One slider: the catalogue edit it drives and its range in that edit's units."""

    group: str
    name: str  # an edit name of the model's catalogue ("happiness", "ganspace:3", "stylespace:happiness:0")
    label: str
    limit: float = 5.0  # the slider runs from -limit to +limit


@dataclass
class ModelEntry:
    """A loaded model: its bundle (generator, encoders, edits) and the sliders its edits give."""

    name: str
    bundle: Any  # checkpoints.ModelBundle
    sliders: dict[str, list[SliderSpec]]
    fast_method: str | None  # encoder method for a quick first code (None: the model has no encoder)
    refine_method: str  # optimisation run by "refine"
    faces: bool  # photos are face-aligned by default

    @property
    def G(self) -> Any:
        return self.bundle.G

    @property
    def catalog(self) -> Any:
        return self.bundle.edits

    def __post_init__(self) -> None:
        self.by_name = {sp.name: sp for g in GROUPS for sp in self.sliders.get(g, [])}

    def slider(self, group: str, index: int) -> SliderSpec | None:
        specs = self.sliders.get(group, [])
        return specs[index] if 0 <= index < len(specs) else None

    def edit_names(self) -> list[str]:
        return list(self.by_name)


@dataclass
class Session:
    """What one browser tab has made. Only its own :class:`Studio` methods touch it."""

    id: str
    folder: Path
    model: str
    latent: Any = None  # latents.Latent of the current picture (the reconstruction or the sample)
    target: np.ndarray | None = None  # uint8 [R, R, C] of the aligned photo, when the picture came from one
    photo: Any = None  # the photo as pipeline.Target (for refining and the records), when there is one
    name: str = "image"  # base name of downloads
    source: str = ""  # what the picture is, for the page ("photo face.jpg, e4e code", "seed 12")
    mix: Any = None  # latents.Latent of the style-mixing source
    mix_name: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    touched: float = field(default_factory=time.monotonic)
    views: int = 0  # pictures written for the page so far (names them)


def _is_model_file(p: Path) -> bool:
    return (p.is_file() and p.suffix.lower() in MODEL_SUFFIXES) or (p.is_dir() and (p / "config.json").is_file()
                                                                    and (p / "model.safetensors").is_file())


def find_models(folder: str | Path) -> list[Path]:
    """Checkpoints in ``folder``: NVIDIA pickles, rosinality ``.pt`` files and our model folders.

    Raises:
        ConfigError: the folder does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"--models-dir {folder}: no such folder")
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and _is_model_file(p))


def _shown_name(path: Path) -> str:
    """The upload's file name as the page shows it (the server keeps the visitor's name; never a path)."""
    name = re.sub(r"[^\w .()-]+", "_", path.name)[:60]
    return name or "the upload"


def _default_examples() -> Path | None:
    # the repository's examples/ folder (a wheel has none; --examples names one)
    p = Path(__file__).resolve().parents[3] / "examples"
    return p if p.is_dir() else None


class Studio:
    """Models, sessions and the actions of the studio page.

    Args:
        models: model names or checkpoint paths offered in the model picker (the first is the default;
            ``None``: ``default`` and every other model :func:`~latentshop.checkpoints.zoo.list_models` knows).
        models_dir: a folder whose checkpoints are offered too.
        device: where the models run (``"auto"``, ``"cpu"``, ``"cuda"``).
        examples: a folder of example photos (default: the repository's ``examples/``).
        root: the private temporary folder (default: a new one; removed by :meth:`close`).
        max_upload_bytes: uploads larger than this are refused.
        max_upload_pixels: images with more pixels than this are refused before decoding.
        threads: CPU threads each action uses. Actions run on the web server's worker threads, and
            PyTorch's CPU kernels in several threads with a thread team each run slower than one
            thread apiece (on 2 cores: a render 21 ms against 15, a 100-step refine 9.8 s against
            5.4); one each also lets a render and a refine share the cores.

    Example:
        >>> studio = Studio(["synthetic"], device="cpu")
        >>> tab = studio.new_session("tab1")
        >>> studio.random_face(tab, seed=3).shape
        (64, 64, 3)
        >>> studio.render(tab, {"smile": 2.0}).dtype
        dtype('uint8')
        >>> studio.close()
    """

    def __init__(self, models: Sequence[str] | None = None, *, models_dir: str | Path | None = None,
                 device: str = "auto", examples: str | Path | None = None, root: str | Path | None = None,
                 max_upload_bytes: int = MAX_UPLOAD_BYTES, max_upload_pixels: int = MAX_UPLOAD_PIXELS,
                 threads: int = 1):
        from latentshop.runtime import resolve_device

        if models is None:
            from latentshop.checkpoints.zoo import canonical_name, list_models

            models = ["default"] + [m for m in list_models() if canonical_name(m) != canonical_name("default")]
        names = [str(m) for m in models]
        if models_dir is not None:
            names += [str(p) for p in find_models(models_dir)]
        names = list(dict.fromkeys(names))
        if not names:
            raise ConfigError("the studio needs at least one model (--model NAME or --models-dir FOLDER)")
        self.model_names = names
        self.device = resolve_device(device)
        ex = Path(examples) if examples is not None else _default_examples()
        if examples is not None and not ex.is_dir():
            raise ConfigError(f"--examples {ex}: no such folder")
        self.examples: dict[str, Path] = {}
        if ex is not None:
            self.examples = {p.name: p for p in sorted(ex.iterdir())
                             if p.is_file() and p.suffix.lower() in EXAMPLE_SUFFIXES}
        self.threads = max(1, int(threads))
        self.max_upload_bytes = int(max_upload_bytes)
        self.max_upload_pixels = int(max_upload_pixels)
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="latentshop-studio-")) if root is None else Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        # The web server's file cache is the whole root: uploads land in root/<hash>/ and are deleted
        # once read; everything a session shows or offers for download is written to its own folder
        # under root/sessions/, which the server then serves from where it is.
        self.uploads = self.root
        self.sessions_dir = self.root / "sessions"
        self.sessions_dir.mkdir(exist_ok=True)
        self._models: dict[str, ModelEntry] = {}
        self.load_errors: dict[str, str] = {}  # models dropped from the picker by load_all, and why
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()

    # ---------------------------------------------------------------------------------------------
    # models

    def _compute(self) -> None:
        # OpenMP keeps the thread count per calling thread: set it on whichever thread runs the action
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)

    def model(self, name: str) -> ModelEntry:
        """The loaded model ``name`` (loaded once; only names from the picker are accepted)."""
        self._compute()
        if name not in self.model_names:
            raise StudioError(f"unknown model {name!r}; this studio offers {', '.join(self.model_names)}")
        with self._model_lock:
            if name not in self._models:
                self._models[name] = self._load_model(name)
            return self._models[name]

    def _load_model(self, name: str) -> ModelEntry:
        from latentshop.checkpoints import load_model
        from latentshop.pipeline import choose_method

        bundle = load_model(name, device=self.device)
        bundle.G.requires_grad_(False)  # shared by every session's thread: inversions leave it as they find it
        sliders: dict[str, list[SliderSpec]] = {g: [] for g in GROUPS}
        for c in bundle.edits.controls():
            sliders.setdefault(c.group, []).append(SliderSpec(c.group, c.name, c.label, c.limit))
        fast = choose_method(bundle, purpose="quick") if bundle.encoder_kinds else None
        refine = choose_method(bundle, purpose="refine")
        return ModelEntry(name, bundle, sliders, fast, refine, faces=name != "synthetic")

    def load_all(self) -> dict[str, str]:
        """Load every offered model; one that fails (a broken or foreign checkpoint) is dropped from the
        picker, and ``{name: reason}`` of those is returned.

        Raises:
            ConfigError: no model could be loaded.
        """
        for name in list(self.model_names):
            try:
                self.model(name)
            except LatentshopError as e:
                self.load_errors[name] = str(e)
                self.model_names.remove(name)
        if not self.model_names:
            raise ConfigError("no model could be loaded: " + "; ".join(f"{k}: {v}" for k, v in self.load_errors.items()))
        return dict(self.load_errors)

    def slot_counts(self) -> dict[str, int]:
        """How many sliders each group needs across every offered model (loads them: :meth:`load_all`)."""
        self.load_all()
        return {g: max(len(self.model(m).sliders[g]) for m in self.model_names) for g in GROUPS}

    # ---------------------------------------------------------------------------------------------
    # sessions

    def new_session(self, session_id: str | None = None, model: str | None = None) -> Session:
        """A fresh session (a tab) with its own folder."""
        sid = session_id or secrets.token_hex(8)
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", sid):
            raise StudioError("bad session id")
        self.sweep_sessions()
        with self._lock:
            crowd = sorted(self._sessions.values(), key=lambda x: x.touched)[:max(0, len(self._sessions) - MAX_SESSIONS + 1)]
        for x in crowd:
            self.end_session(x.id)
        with self._lock:
            old = self._sessions.pop(sid, None)
            if old is not None:
                shutil.rmtree(old.folder, ignore_errors=True)
            folder = self.sessions_dir / sid
            folder.mkdir(parents=True, exist_ok=True)
            s = Session(sid, folder, model or self.model_names[0])
            self._sessions[sid] = s
            return s

    def session(self, session_id: str) -> Session:
        """The session of a tab, made on first use."""
        with self._lock:
            s = self._sessions.get(session_id)
        if s is None:
            return self.new_session(session_id)
        s.touched = time.monotonic()
        return s

    def end_session(self, session_id: str) -> None:
        """Forget a tab and delete its folder (called when the tab closes)."""
        with self._lock:
            s = self._sessions.pop(session_id, None)
        if s is not None:
            s.cancel.set()
            shutil.rmtree(s.folder, ignore_errors=True)

    def sweep_sessions(self, *, ttl_s: float = SESSION_TTL_S) -> None:
        """Drop sessions idle for longer than ``ttl_s`` seconds."""
        now = time.monotonic()
        with self._lock:
            stale = [sid for sid, s in self._sessions.items() if now - s.touched > ttl_s]
        for sid in stale:
            self.end_session(sid)

    def session_ids(self) -> list[str]:
        with self._lock:
            return list(self._sessions)

    def close(self) -> None:
        """End every session and remove the temporary root (when the studio made it)."""
        for sid in self.session_ids():
            self.end_session(sid)
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def set_model(self, s: Session, name: str) -> ModelEntry:
        """Switch a session to another model; its pictures belong to the old one and are dropped."""
        entry = self.model(name)
        s.model, s.latent, s.target, s.photo, s.mix, s.mix_name, s.source = name, None, None, None, None, "", ""
        return entry

    # ---------------------------------------------------------------------------------------------
    # pictures in

    def upload_path(self, path: str | Path | None) -> Path:
        """Check that ``path`` is a file the web server stored in the studio's upload folder."""
        if not path:
            raise StudioError("no file was uploaded")
        p = Path(path).resolve()
        if not p.is_relative_to(self.uploads.resolve()) or p.is_relative_to(self.sessions_dir.resolve()) or not p.is_file():
            raise StudioError("that file is not an upload of this studio")
        return p

    def _forget_upload(self, path: Path) -> None:
        # an upload (checked by upload_path) is read once: delete it, and the server's folder for it,
        # so no photo outlives its use
        path.unlink(missing_ok=True)
        if path.parent != self.uploads.resolve():
            try:
                path.parent.rmdir()
            except OSError:
                pass

    def example_path(self, name: str) -> Path:
        """An example photo, by its name in :attr:`examples`."""
        if name not in self.examples:
            raise StudioError(f"unknown example {name!r}; examples are {', '.join(self.examples) or 'none'}")
        return self.examples[name]

    def _read_photo(self, path: Path, label: str) -> Any:
        from latentshop.data.dataset import open_image

        size = path.stat().st_size
        if size > self.max_upload_bytes:
            raise StudioError(f"{label} is too large: {size / 2**20:.1f} MB; the studio takes photos up to "
                              f"{self.max_upload_bytes / 2**20:.0f} MB. Use a smaller photo (a face needs no more than a few megapixels).")
        try:
            return open_image(path, max_pixels=self.max_upload_pixels)
        except ImageError as e:
            reason = str(e).split(": ", 1)[-1]  # without the server's path
            if e.kind in ("not-an-image", "empty"):
                raise StudioError(f"{label} is not an image ({reason}). Upload a JPEG, PNG or WebP photo.") from None
            if e.kind == "too-large":
                raise StudioError(f"{label} is too large: {reason}. Use a smaller photo.") from None
            raise StudioError(f"{label} cannot be read: {reason}. Upload another photo.") from None

    def _target(self, entry: ModelEntry, path: Path, label: str, align: bool) -> Any:
        """The photo as the model's input (a :class:`~latentshop.pipeline.Target`), face-aligned with ``align``."""
        from latentshop.data.align import NoFaceError
        from latentshop.pipeline import load_target

        img = self._read_photo(path, label)
        try:
            return load_target(entry.bundle, img, align=align, name=Path(label).stem)
        except NoFaceError:
            raise StudioError(f"No face found in {label}. The studio needs a visible, roughly frontal face at least "
                              "about 80 px across. Try a closer photo, or untick 'Align face' if the image is "
                              "already a face crop.") from None

    def _invert(self, entry: ModelEntry, target: Any, method: str, **kw: Any) -> Any:
        from latentshop.pipeline import invert_targets

        return invert_targets(entry.bundle, [target], method=method, **kw).latent

    def _quick_code(self, entry: ModelEntry, upload: str | Path | None, example: str | None,
                    align: bool) -> tuple[Any, str, Any]:
        """(aligned photo, its name for the page, its quick code) of an upload or an example; the
        upload is deleted once read, whatever the outcome."""
        path = self.upload_path(upload) if example is None else self.example_path(example)
        label = example if example is not None else _shown_name(path)
        try:
            target = self._target(entry, path, label, align)
        finally:
            if example is None:
                self._forget_upload(path)
        if entry.fast_method is not None:
            return target, label, self._invert(entry, target, entry.fast_method)
        return target, label, self._invert(entry, target, "w+", steps=50)

    def load_photo(self, s: Session, *, upload: str | Path | None = None, example: str | None = None,
                   align: bool = True) -> np.ndarray:
        """Take a photo (an upload or an example), align it and give it a quick code.

        The code comes from the model's encoder (ReStyle, a few milliseconds); a model without one is
        inverted with a short ``w+`` run instead. Returns the aligned photo, uint8 ``[R, R, C]``.
        """
        entry = self.model(s.model)
        target, label, lat = self._quick_code(entry, upload, example, align)
        how = entry.fast_method or "w+ (50 steps; this model has no encoder)"
        with s.lock:
            s.latent, s.target, s.photo = lat, target.uint8(), target
            s.name = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(label).stem)[:40] or "photo"
            s.source = f"{label}, {how} code"
        return s.target

    def refine(self, s: Session, *, steps: int | None = None, callback: Callable[[int, int], None] | None = None,
               preview: Callable[[Any], None] | None = None, preview_every: int = 10) -> bool:
        """Refine the current photo's code by optimisation (the model's hybrid or ``w+``).

        ``callback(step, total)`` reports progress and ``preview(latent)`` gets the code so far every
        ``preview_every`` steps (for a live picture); :meth:`cancel` stops the run, and the code found
        so far is kept. A cancel that came before the run is honoured too: clear ``s.cancel`` when the
        person asks for the run (the page does). Returns False when it was cancelled.
        """
        entry = self.model(s.model)
        if s.photo is None:
            raise StudioError("refine needs a photo: upload one or pick an example first")
        target = s.photo

        def report(state: Any) -> None:
            if callback is not None:
                callback(state.step, state.total)
            if preview is not None and state.stage == "latent" and (state.step % max(1, preview_every) == 0):
                preview(state.latent())

        from latentshop.inversion import InversionError

        try:
            lat = self._invert(entry, target, entry.refine_method, steps=steps, callback=report, cancel=s.cancel)
        except InversionError:
            if s.cancel.is_set():  # stopped before it began: keep the code the photo has
                return False
            raise
        cancelled = bool(lat.meta.get("cancelled"))
        with s.lock:
            if s.photo is target:  # the tab did not load another photo meanwhile
                s.latent = lat
                s.source = s.source.split(",")[0] + f", refined with {entry.refine_method}" + (" (stopped early)" if cancelled else "")
        return not cancelled

    def cancel(self, s: Session) -> None:
        """Ask a running :meth:`refine` of this session to stop."""
        s.cancel.set()

    def random_face(self, s: Session, *, seed: int | None = None) -> np.ndarray:
        """Make the picture a sample of the model (``seed``: which; default a random one)."""
        entry = self.model(s.model)
        seed = secrets.randbelow(2**31) if seed is None else int(seed)
        lat = self._seed_latent(entry, seed)
        with s.lock:
            s.latent, s.target, s.photo, s.name, s.source = lat, None, None, f"seed{seed}", f"seed {seed}"
        return self.render(s, {})

    def _seed_latent(self, entry: ModelEntry, seed: int) -> Any:
        from latentshop.pipeline import seed_latent

        if entry.G.c_dim:
            raise StudioError("random faces need an unconditional model")
        return seed_latent(entry.bundle, int(seed) % 2**32)

    def set_mix_source(self, s: Session, *, seed: int | None = None, upload: str | Path | None = None,
                       example: str | None = None, align: bool = True) -> np.ndarray | None:
        """The second picture of style mixing: a seed, an uploaded photo or an example (quick code).

        With none of them the mixing source is cleared. Returns the source's rendering.
        """
        entry = self.model(s.model)
        if seed is None and upload is None and example is None:
            s.mix, s.mix_name = None, ""
            return None
        if seed is not None:
            lat, name = self._seed_latent(entry, seed), f"seed {int(seed)}"
        else:
            _, name, lat = self._quick_code(entry, upload, example, align)
        s.mix, s.mix_name = lat, name
        return self._picture(entry, lat)

    # ---------------------------------------------------------------------------------------------
    # pictures out

    def view_file(self, s: Session, img: np.ndarray | None, slot: str, *, keep: int = 4) -> Path | None:
        """Write a picture the page shows into the session's folder (a new name each time, so the
        browser fetches it; the last ``keep`` of each slot are kept). Returns its path."""
        from latentshop.data.images import save_image

        if img is None:
            return None
        if not re.fullmatch(r"[a-z]{1,16}", slot):
            raise StudioError("bad picture slot")
        folder = s.folder / "view"
        folder.mkdir(parents=True, exist_ok=True)
        with s.lock:
            s.views += 1
            path = folder / f"{slot}-{s.views:06d}.png"
        save_image(img, path)
        for old in sorted(folder.glob(f"{slot}-*.png"))[:-keep]:
            old.unlink(missing_ok=True)
        return path

    @staticmethod
    def _picture(entry: ModelEntry, latent: Any, edits: Sequence[Any] = ()) -> np.ndarray:
        """One synthesis pass of ``latent`` with ``edits``: uint8 ``[R, R, C]``."""
        from latentshop.pipeline import render

        return render(entry.bundle, latent, edits)[0]

    def edits_for(self, s: Session, values: Mapping[str, float], *, truncation: float = 1.0,
                  mix_layers: str | None = None) -> list[Any]:
        """The library edits that slider ``values`` (slider name -> strength) stand for, in order:
        style mixing, truncation, then the catalogue's edits (a StyleSpace slider is signed so that
        positive raises its attribute)."""
        from latentshop.editing.edits import StyleMix, Truncate, layer_groups

        entry = self.model(s.model)
        out: list[Any] = []
        if mix_layers and mix_layers != "none" and s.mix is not None:
            groups = layer_groups(entry.G)
            if mix_layers not in groups:
                raise StudioError(f"unknown layer group {mix_layers!r}; groups are {', '.join(groups)}")
            out.append(StyleMix(s.mix, groups[mix_layers]))
        if not np.isfinite(truncation) or not 0.0 <= truncation <= 2.0:
            raise StudioError("truncation must be between 0 and 2")
        if truncation != 1.0:
            out.append(Truncate(float(truncation)))
        for name, v in values.items():
            if name not in entry.by_name:
                raise StudioError(f"unknown edit {name!r} for model {s.model}")
            v = float(v)
            if not np.isfinite(v):
                raise StudioError(f"{name}: the strength must be a number")
            if v != 0.0:
                out.append(entry.catalog.make(entry.G, name, v))
        return out

    def render(self, s: Session, values: Mapping[str, float], *, truncation: float = 1.0,
               mix_layers: str | None = None) -> np.ndarray:
        """The edited picture: one synthesis pass from the session's cached latent. uint8 ``[R, R, C]``."""
        if s.latent is None:
            raise StudioError("nothing to edit yet: upload a photo, pick an example or press 'Random face'")
        edits = self.edits_for(s, values, truncation=truncation, mix_layers=mix_layers)
        return self._picture(self.model(s.model), s.latent, edits)

    def before(self, s: Session, latent: Any = None) -> np.ndarray | None:
        """The unedited picture: of the session's code (the reconstruction of the photo, or the
        sample), or of ``latent`` (e.g. a refinement's code so far)."""
        lat = s.latent if latent is None else latent
        return None if lat is None else self._picture(self.model(s.model), lat)

    def export(self, s: Session, values: Mapping[str, float], *, truncation: float = 1.0, mix_layers: str | None = None,
               sweep: str | None = None, sweep_range: float = 3.0, sweep_frames: int = 9) -> dict[str, Path]:
        """Write the downloads into the session's folder: the edited PNG, its latent (``.npz``, for
        ``latentshop edit``/``render``) and a GIF sweeping ``sweep`` from ``-sweep_range`` to
        ``+sweep_range`` on top of the other edits. Returns ``{"png", "latent", "gif"}`` paths."""
        from latentshop.data.video import write_gif
        from latentshop.pipeline import Source, edit_photo

        entry = self.model(s.model)
        if s.latent is None:
            raise StudioError("nothing to download yet: upload a photo, pick an example or press 'Random face'")
        edits = self.edits_for(s, values, truncation=truncation, mix_layers=mix_layers)
        sweep = sweep or (entry.edit_names() or [None])[0]
        result = edit_photo(entry.bundle, Source(s.latent, s.name, target=s.photo, text=s.source), edits)
        result.record.update(source=s.source, studio=True, sweep=sweep)
        written = result.save(s.folder)
        out = {"png": written["edited"], "latent": written["latent"], "gif": s.folder / f"{s.name}-sweep.gif"}
        if sweep is None:
            out.pop("gif")
            return out
        if sweep not in entry.edit_names():
            raise StudioError(f"unknown edit {sweep!r} for the sweep")
        if not 2 <= int(sweep_frames) <= 61 or not 0 < float(sweep_range) <= 10:
            raise StudioError("a sweep has 2-61 frames and a range of at most 10")
        rest = {k: v for k, v in values.items() if k != sweep}
        strengths = np.linspace(-sweep_range, sweep_range, int(sweep_frames))
        frames = [self._picture(entry, s.latent, self.edits_for(s, {**rest, sweep: float(v)}, truncation=truncation,
                                                                 mix_layers=mix_layers))
                  for v in np.concatenate([strengths, strengths[-2:0:-1]])]  # there and back: loops smoothly
        write_gif(np.stack(frames), out["gif"], fps=12, min_size=256)
        return out
