"""Directions in W: InterFaceGAN (supervised), GANSpace and SeFa (unsupervised), as direction sets.

- :func:`interfacegan` — Shen et al. 2020, "Interpreting the Latent Space of GANs for Semantic Face
  Editing": sample ``z -> w``, render, score every attribute with an evaluator, keep the most and
  least extreme ``ratio`` of the samples per attribute, fit a linear SVM (scikit-learn) separating
  them, and take the unit normal of its hyperplane, pointing towards the high scores. Conditional
  manipulation (:meth:`DirectionSet.get` with ``keep=``) projects the normal onto the orthogonal
  complement of the other attributes' normals, so moving along it leaves their scores unchanged to
  first order.
- :func:`ganspace` — Härkönen et al. 2020: principal components of sampled ``w`` (scikit-learn
  PCA), applied to chosen layer ranges.
- :func:`sefa` — Shen & Zhou 2021, "Closed-Form Factorization of Latent Semantics in GANs": the
  leading eigenvectors of ``AᵀA`` for the style-affine weights ``A`` of the chosen layers (each
  affine output row normalised, as the authors' code does); no sampling.

Every set stores the covariance of the generator's ``w`` (from mapped samples), so the strength of
any direction — also a conditioned one — is expressed in standard deviations of ``w`` along it.

Example:
    >>> import torch
    >>> from latentshop.models.stylegan2 import Generator
    >>> G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
    ...               synthesis_kwargs=dict(channel_base=64, channel_max=8)).eval()
    >>> pcs = ganspace(G, n=2000, components=3)
    >>> pcs.names
    ('ganspace:0', 'ganspace:1', 'ganspace:2')
    >>> pcs.get("ganspace:0", 2.0, layers="coarse", G=G).layers
    (0, 1, 2, 3)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from latentshop.editing.edits import Direction, EditError, parse_layers, style_layer_ws
from latentshop.models.fingerprint import accepts, generator_fingerprint
from latentshop.registry import EditControl, EditFamily, register_edit_family
from latentshop.models.stylegan2 import Generator

__all__ = [
    "DIRECTION_METHODS",
    "DirectionSet",
    "attribute_scores",
    "condition",
    "ganspace",
    "interfacegan",
    "sample_ws",
    "sefa",
]

DIRECTION_METHODS = ("interfacegan", "ganspace", "sefa")


@dataclass(frozen=True, eq=False)
class DirectionSet:
    """Named unit directions of one generator's W.

    Args:
        method: how they were found (``interfacegan``, ``ganspace``, ``sefa``, or anything).
        generator: fingerprint of the generator.
        names: one name per direction.
        vectors: ``[K, w_dim]`` unit vectors.
        w_cov: ``[w_dim, w_dim]`` covariance of the generator's ``w`` (for strength units).
        layers: default ``ws`` indices per direction (``None``: all layers).
        aliases: extra names, e.g. ``{"smile": "happiness"}``.
        meta: notes: the model, sample counts, per-direction statistics (``meta["stats"][name]``).
    """

    method: str
    generator: str
    names: tuple[str, ...]
    vectors: torch.Tensor
    w_cov: torch.Tensor
    layers: tuple[tuple[int, ...] | None, ...] = ()
    aliases: Mapping[str, str] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        v = torch.as_tensor(self.vectors, dtype=torch.float32)
        if v.ndim != 2 or v.shape[0] != len(self.names):
            raise EditError(f"a direction set needs [K, w_dim] vectors for its {len(self.names)} names, got {tuple(v.shape)}")
        if len(set(self.names)) != len(self.names):
            raise EditError("direction names must be unique")
        norms = v.norm(dim=1, keepdim=True)
        if not torch.isfinite(v).all() or (norms == 0).any():
            raise EditError("direction vectors must be finite and non-zero")
        object.__setattr__(self, "vectors", v / norms)
        object.__setattr__(self, "w_cov", torch.as_tensor(self.w_cov, dtype=torch.float32))
        if not self.layers:
            object.__setattr__(self, "layers", (None,) * len(self.names))
        names = set(self.names)
        bad = {a: t for a, t in self.aliases.items() if t not in names or a in names}
        if bad:
            raise EditError(f"aliases must name existing directions and not shadow one: {bad}")

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.names or name in self.aliases

    def resolve(self, name: str) -> str:
        """The direction's own name for ``name`` (follows aliases)."""
        name = self.aliases.get(name, name)
        if name not in self.names:
            raise EditError(f"no direction {name!r} in this {self.method} set; it has {', '.join(self.all_names())}")
        return name

    def all_names(self) -> list[str]:
        return list(self.names) + sorted(self.aliases)

    def vector(self, name: str) -> torch.Tensor:
        return self.vectors[self.names.index(self.resolve(name))]

    def scale_of(self, vector: torch.Tensor) -> float:
        """Standard deviation of the generator's ``w`` along unit ``vector``."""
        v = vector.float() / vector.float().norm()
        return float(torch.sqrt((v @ self.w_cov @ v).clamp_min(1e-12)))

    def get(self, name: str, strength: float = 1.0, *, layers: str | Sequence[int] | None = None,
            keep: Sequence[str] = (), G: Generator | None = None) -> Direction:
        """The :class:`Direction` ``name`` at ``strength`` standard deviations.

        Args:
            name: a direction name or alias.
            strength: how far, in standard deviations of ``w`` along the (conditioned) direction.
            layers: ``ws`` indices or group names (default: the set's layers for ``name``).
            keep: names of directions of this set to leave unchanged (InterFaceGAN's conditional
                manipulation: ``name``'s vector is projected off their span).
            G: the generator, needed only to read group names in ``layers``.
        """
        key = self.resolve(name)
        v = self.vector(key)
        if keep:
            others = [self.vector(k) for k in keep if self.resolve(k) != key]
            if others:
                v = condition(v, torch.stack(others))
        if layers is None:
            chosen = self.layers[self.names.index(key)]
        elif isinstance(layers, str):
            if G is None:
                raise EditError("layer names like 'coarse' need the generator: pass G=")
            chosen = parse_layers(G, layers)
        else:
            chosen = tuple(int(i) for i in layers)
        label = key if not keep else f"{key}|keep:{','.join(keep)}"
        return Direction(label, v, strength, chosen, self.scale_of(v), self.generator)

    def check(self, G: Generator) -> None:
        if not accepts(G, self.generator):
            raise EditError(f"this {self.method} direction set was made for generator {self.generator}, not for the one in use "
                            f"({generator_fingerprint(G)}); compute it again with `latentshop directions compute`")

    # ---- the edit-family protocol (latentshop.registry.EditSet) ----------------------------------
    family = "directions"

    def edit_names(self) -> list[str]:
        return self.all_names()

    def describe(self) -> list[tuple[str, str]]:
        stats = (self.meta.get("stats") or {}) if isinstance(self.meta, Mapping) else {}
        rows = []
        for name in self.names:
            s = stats.get(name, {})
            note = f"{self.method}"
            if "val_accuracy" in s:
                note += f", SVM accuracy {s['val_accuracy']:.2f}"
            if "explained_variance_ratio" in s:
                note += f", {100 * s['explained_variance_ratio']:.1f} % of w variance"
            rows.append((name, note))
        rows += [(alias, f"= {target}") for alias, target in self.aliases.items()]
        return rows

    def make(self, G: Generator, name: str, strength: float, *, layers: str | None = None,
             keep: Sequence[str] = ()) -> Direction | None:
        """The direction ``name`` (``None`` if this set has no such name); ``keep``: the names among
        them that this set has are held fixed (conditional InterFaceGAN)."""
        if name not in self:
            return None
        extra = [k for k in keep if k in self]
        return self.get(name, strength, layers=parse_layers(G, layers) if layers else None, keep=extra)

    def controls(self) -> list[EditControl]:
        group = _GROUP_OF_METHOD.get(self.method, "attributes")
        stats = (self.meta.get("stats") or {}) if isinstance(self.meta, Mapping) else {}
        out = []
        for n in self.names:
            label = n
            if group == "attributes":
                alias = [a for a, t in self.aliases.items() if t == n]
                label = f"{n} ({', '.join(alias)})" if alias else n
            elif "explained_variance_ratio" in stats.get(n, {}):
                label = f"{n} ({100 * stats[n]['explained_variance_ratio']:.1f} % of w's variance)"
            out.append(EditControl(group, n, label))
        return out

    def to_record(self) -> tuple[str, dict[str, np.ndarray], dict[str, Any]]:
        """``(kind, arrays, meta)`` of this set's edit file (``checkpoints.save_edit_set`` writes it)."""
        meta = dict(self.meta)
        meta.update({"method": self.method, "names": list(self.names), "aliases": dict(self.aliases),
                     "layers": [None if layer is None else list(layer) for layer in self.layers]})
        return "directions", {"vectors": self.vectors.numpy().astype(np.float32),
                              "w_cov": self.w_cov.numpy().astype(np.float32)}, meta


def condition(vector: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """``vector`` projected onto the orthogonal complement of the rows of ``others`` (unit length).

    Example:
        >>> condition(torch.tensor([1.0, 1.0]), torch.tensor([[0.0, 1.0]])).tolist()
        [1.0, 0.0]
    """
    v = vector.double()
    b = others.double().reshape(-1, v.numel())
    coef = torch.linalg.lstsq(b.t(), v.unsqueeze(1)).solution  # least-squares projection onto span(others)
    r = v - (b.t() @ coef).squeeze(1)
    norm = float(r.norm())
    if norm < 1e-6 * float(v.norm()):
        raise EditError("the direction lies in the span of the directions to keep: nothing is left to move along")
    return (r / norm).float()


# ---- sampling -----------------------------------------------------------------------------------
def sample_ws(G: Generator, n: int, *, seed: int = 0, batch: int = 4096) -> torch.Tensor:
    """``w [n, w_dim]`` of ``n`` seeded ``z`` samples (no truncation), on the CPU."""
    gen = torch.Generator().manual_seed(int(seed))
    device = G.mapping.fc0.weight.device
    out = []
    with torch.no_grad():
        for start in range(0, n, batch):
            z = torch.randn([min(batch, n - start), G.z_dim], generator=gen)
            c = None
            if G.c_dim:
                c = torch.nn.functional.one_hot(torch.randint(G.c_dim, (z.shape[0],), generator=gen), G.c_dim).float()
            out.append(G.mapping(z.to(device), None if c is None else c.to(device))[:, 0].float().cpu())
    return torch.cat(out)


def _w_cov(ws: torch.Tensor) -> torch.Tensor:
    x = ws.double() - ws.double().mean(0)
    return (x.t() @ x / max(1, ws.shape[0] - 1)).float()


def attribute_scores(evaluator: torch.nn.Module, images: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """One continuous score per attribute an evaluator knows, and each score's kind.

    - factor regressor: float factors as values (``value``); circular hues as ``<hue>:cos`` and
      ``<hue>:sin`` (``value``); ``glasses`` as a probability (``prob``); every clothing pattern
      as ``clothing_pattern:<name>`` probability (``prob``);
    - expression classifier: every class's probability (``prob``);
    - any evaluator with its own ``attribute_scores(images)`` method (such as the landmark evaluator)
      answers for itself; its scores may hold NaN where an image cannot be measured.

    Returns:
        ``({name: [N]}, {name: "value" | "prob"})``.
    """
    from latentshop.models.evaluators import CIRCULAR_FACTORS, ExpressionClassifier, FactorRegressor

    own = getattr(evaluator, "attribute_scores", None)
    if callable(own):
        return own(images)
    scores: dict[str, torch.Tensor] = {}
    kinds: dict[str, str] = {}
    if isinstance(evaluator, FactorRegressor):
        pred = evaluator.predict(images)
        for name, fac in evaluator.factors.items():
            if fac.kind == "float" and name in CIRCULAR_FACTORS:
                angle = pred[name].double() * 2 * np.pi
                scores[f"{name}:cos"], scores[f"{name}:sin"] = angle.cos().float(), angle.sin().float()
                kinds[f"{name}:cos"] = kinds[f"{name}:sin"] = "value"
            elif fac.kind == "float":
                scores[name], kinds[name] = pred[name].float(), "value"
            elif fac.kind == "bool":
                scores[name], kinds[name] = pred[name].float(), "prob"
            else:
                for i, choice in enumerate(fac.choices):
                    key = f"{name}:{choice}"
                    scores[key], kinds[key] = pred[name + "_probs"][:, i].float(), "prob"
    elif isinstance(evaluator, ExpressionClassifier):
        probs = evaluator.predict_proba(images)
        for i, cls in enumerate(evaluator.classes):
            scores[cls], kinds[cls] = probs[:, i].float(), "prob"
    else:
        raise EditError(f"cannot score attributes with a {type(evaluator).__name__}; use a latentshop evaluator")
    return scores, kinds


def _render_scores(G: Generator, ws: torch.Tensor, evaluator: torch.nn.Module, *, batch: int,
                   progress: Callable[[int], None] | None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    device = G.mapping.fc0.weight.device
    parts: dict[str, list[torch.Tensor]] = {}
    kinds: dict[str, str] = {}
    with torch.no_grad():
        for start in range(0, ws.shape[0], batch):
            w = ws[start:start + batch].to(device)
            img = G.synthesis(w.unsqueeze(1).repeat(1, G.num_ws, 1), noise_mode="const", impl="fast").float().cpu()
            s, kinds = attribute_scores(evaluator, img)
            for k, v in s.items():
                parts.setdefault(k, []).append(v.cpu())
            if progress is not None:
                progress(w.shape[0])
    return {k: torch.cat(v) for k, v in parts.items()}, kinds


# ---- InterFaceGAN -------------------------------------------------------------------------------
def interfacegan(G: Generator, evaluator: torch.nn.Module, *, n: int = 20_000, ratio: float = 0.1, seed: int = 0,
                 attributes: Sequence[str] | None = None, aliases: Mapping[str, str] | None = None, batch: int = 256,
                 C: float = 1.0, progress: Callable[[int], None] | None = None, model: str | None = None) -> DirectionSet:
    """InterFaceGAN directions for every attribute ``evaluator`` scores (or ``attributes``).

    Args:
        G: the generator.
        evaluator: a latentshop evaluator (:func:`attribute_scores` lists what it scores).
        n: samples to render and score.
        ratio: fraction of the samples taken from each end of an attribute's scores as the
            positive and negative sets (for probabilities, at most the samples on each side of 0.5).
            Samples the evaluator could not measure (NaN score) are left out, per attribute, and
            counted in ``stats[name]["unmeasured"]``.
        seed: seeds the ``z`` samples and the train/validation split.
        attributes: a subset of the attribute names.
        aliases: extra names (``{"smile": "happiness"}``).
        batch: rendering batch.
        C: the SVM's regularisation.
        progress: called with the number of images rendered after each batch.
        model: where the generator came from (recorded).

    Returns:
        A :class:`DirectionSet`; ``meta["stats"][name]`` holds the SVM's validation accuracy (30 %
        of the selected samples held out), the sample counts and the score spread.
    """
    from sklearn.svm import LinearSVC

    if not 0 < ratio <= 0.5:
        raise EditError(f"ratio must be in (0, 0.5], got {ratio}")
    ws = sample_ws(G, n, seed=seed)
    scores, kinds = _render_scores(G, ws, evaluator, batch=batch, progress=progress)
    names = list(scores) if attributes is None else list(attributes)
    unknown = [a for a in names if a not in scores]
    if unknown:
        raise EditError(f"the evaluator does not score {unknown}; it scores {', '.join(scores)}")
    w_avg = G.mapping.w_avg.float().cpu()
    x_all = (ws - w_avg).numpy().astype(np.float64)
    x_all /= x_all.std()
    rng = np.random.default_rng(seed)
    vectors, stats, kept = [], {}, []
    for name in names:
        s = scores[name].double().numpy()
        valid = np.flatnonzero(np.isfinite(s))  # an evaluator may not measure every sample (NaN)
        k = int(ratio * len(valid))
        if kinds[name] == "prob":
            k = min(k, int((s[valid] > 0.5).sum()), int((s[valid] < 0.5).sum()))
        if k < 10:
            stats[name] = {"skipped": f"only {k} samples on one side", "unmeasured": n - len(valid)}
            continue
        order = valid[np.argsort(s[valid])]
        neg, pos = order[:k], order[-k:]
        idx = np.concatenate([pos, neg])
        y = np.concatenate([np.ones(k), np.zeros(k)])
        perm = rng.permutation(len(idx))
        split = int(0.7 * len(idx))
        tr, va = perm[:split], perm[split:]
        svm = LinearSVC(C=C, max_iter=20_000)
        svm.fit(x_all[idx[tr]], y[tr])
        acc = float((svm.predict(x_all[idx[va]]) == y[va]).mean())
        v = torch.from_numpy(svm.coef_[0]).float()
        vectors.append(v / v.norm())
        kept.append(name)
        stats[name] = {"val_accuracy": acc, "per_side": k, "score_low": float(s[neg].mean()), "score_high": float(s[pos].mean()),
                       "kind": kinds[name], "unmeasured": n - len(valid)}
    if not kept:
        raise EditError("no attribute had enough samples on both sides to fit a direction; sample more (n=)")
    aliases = {a: t for a, t in (aliases or {}).items() if t in kept}
    return DirectionSet("interfacegan", generator_fingerprint(G), tuple(kept), torch.stack(vectors), _w_cov(ws),
                        aliases=aliases, meta={"model": model, "samples": n, "ratio": ratio, "seed": seed, "C": C, "stats": stats})


# ---- GANSpace -----------------------------------------------------------------------------------
def ganspace(G: Generator, *, n: int = 100_000, components: int = 20, seed: int = 0, layers: str | Sequence[int] | None = None,
             model: str | None = None) -> DirectionSet:
    """GANSpace: the leading principal components of ``n`` sampled ``w``.

    ``meta["stats"][name]["explained_variance_ratio"]`` records each component's share; every
    component gets ``layers`` as its default layers (``None``: all).
    """
    from sklearn.decomposition import PCA

    ws = sample_ws(G, n, seed=seed)
    k = min(int(components), G.w_dim, n)
    pca = PCA(n_components=k, svd_solver="full", random_state=seed).fit(ws.double().numpy())
    vecs = torch.from_numpy(pca.components_).float()
    names = tuple(f"ganspace:{i}" for i in range(k))
    chosen = parse_layers(G, layers)
    stats = {name: {"explained_variance_ratio": float(r), "std": float(np.sqrt(v))}
             for name, r, v in zip(names, pca.explained_variance_ratio_, pca.explained_variance_)}
    return DirectionSet("ganspace", generator_fingerprint(G), names, vecs, _w_cov(ws), layers=(chosen,) * k,
                        meta={"model": model, "samples": n, "seed": seed, "stats": stats})


# ---- SeFa ---------------------------------------------------------------------------------------
def sefa(G: Generator, *, components: int = 20, layers: str | Sequence[int] | None = None, cov_samples: int = 20_000,
         seed: int = 0, model: str | None = None) -> DirectionSet:
    """SeFa: eigenvectors of ``AᵀA`` for the style affines ``A`` of the layers reading ``layers``.

    The directions use no samples; ``cov_samples`` mapped ``w`` only calibrate the strength unit.
    The directions are applied to the same layers they were computed from.
    """
    chosen = parse_layers(G, layers)
    layer_ws = style_layer_ws(G)
    use = [name for name, i in layer_ws.items() if chosen is None or i in chosen]
    rows = []
    for name in use:
        fc = G.synthesis.get_submodule(name).affine
        rows.append((fc.weight.detach().double().cpu() * fc.weight_gain))  # [C, w_dim]
    a = torch.cat(rows)
    a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)  # each output channel's weight row to unit length
    evals, evecs = torch.linalg.eigh(a.t() @ a)  # ascending
    order = torch.argsort(evals, descending=True)[: min(int(components), G.w_dim)]
    vecs = evecs[:, order].t().float()
    names = tuple(f"sefa:{i}" for i in range(vecs.shape[0]))
    ws = sample_ws(G, cov_samples, seed=seed)
    total = float(evals.sum())
    stats = {name: {"eigenvalue": float(evals[j]), "share": float(evals[j]) / total} for name, j in zip(names, order.tolist())}
    return DirectionSet("sefa", generator_fingerprint(G), names, vecs, _w_cov(ws), layers=(chosen,) * len(names),
                        meta={"model": model, "layers": None if chosen is None else list(chosen), "cov_samples": cov_samples,
                              "stats": stats})


# ---- files --------------------------------------------------------------------------------------
def _directions_from_record(header: Mapping[str, Any], arrays: Mapping[str, np.ndarray], path: str,
                            G: Generator | None = None) -> DirectionSet:
    """A direction set from an edit file's header and arrays (read by ``checkpoints.read_edit_file``)."""
    meta = dict(header.get("meta") or {})
    try:
        names = tuple(str(n) for n in meta.pop("names"))
        method = str(meta.pop("method"))
        aliases = {str(k): str(v) for k, v in (meta.pop("aliases", None) or {}).items()}
        layers = tuple(None if layer is None else tuple(int(i) for i in layer) for layer in meta.pop("layers"))
        vectors, w_cov = torch.from_numpy(arrays["vectors"]), torch.from_numpy(arrays["w_cov"])
    except (KeyError, TypeError, ValueError) as e:
        raise EditError(f"{path}: incomplete direction file ({e})") from None
    if w_cov.ndim != 2 or w_cov.shape[0] != w_cov.shape[1] or vectors.ndim != 2 or vectors.shape[1] != w_cov.shape[0]:
        raise EditError(f"{path}: direction and covariance shapes disagree ({tuple(vectors.shape)}, {tuple(w_cov.shape)})")
    if G is not None and vectors.shape[1] != G.w_dim:
        raise EditError(f"{path}: directions have {vectors.shape[1]} values, this model's w has {G.w_dim}")
    if G is not None:
        for layer in layers:
            if layer is not None and any(not 0 <= i < G.num_ws for i in layer):
                raise EditError(f"{path}: direction layers {list(layer)} are outside this model's ws 0..{G.num_ws - 1}")
    try:
        return DirectionSet(method, str(header["generator"]), names, vectors, w_cov, layers=layers, aliases=aliases, meta=meta)
    except EditError as e:
        raise EditError(f"{path}: {e}") from None


#: control group of each direction method's sliders (other methods' directions are attributes)
_GROUP_OF_METHOD = {"interfacegan": "attributes", "ganspace": "ganspace", "sefa": "sefa"}

register_edit_family(EditFamily(
    name="directions", file_kind="directions", from_record=_directions_from_record,
    groups=(("attributes", "Attributes (InterFaceGAN)"), ("ganspace", "GANSpace"), ("sefa", "SeFa")),
    aliases=lambda d: dict(d.aliases)))
