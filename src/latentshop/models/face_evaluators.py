"""Evaluators for real colour faces over an ImageNet MobileNetV2 trunk (:mod:`latentshop.models.mobilenet`).

- :class:`AttributeClassifier` — CelebA's 40 binary attributes (``Smiling``, ``Male``, ``Eyeglasses``,
  ...). The trunk stays as ImageNet trained it (frozen); the classifier is one linear layer per
  attribute over spatially pooled trunk features (the stride-16 map averaged on a 4 x 4 grid and the
  stride-32 map on a 2 x 2 grid, so that *where* a feature is — mouth or eyes — survives), fitted by
  logistic regression with balanced class weights on standardised features. A probability of 0.5 is
  therefore the balanced decision, not the base rate.
- :class:`IdentityEmbedder` — a differentiable face-identity embedding: the trunk fine-tuned with an
  additive angular margin loss (ArcFace: Deng et al., CVPR 2019) over the training persons, then a
  linear layer to ``dim`` features, batch norm and unit length. Cosine similarity of two embeddings
  is the identity similarity; ``1 - cos`` is the identity loss of the encoders and pivotal tuning.

Both take images ``[N, C, H, W]`` in ``[-1, 1]`` (C 1 or 3; grey is repeated), any size: they resize
to their input size (bilinear, antialiased) themselves. They are trained by
:mod:`latentshop.training.face_evaluators` and stored as evaluator folders
(:mod:`latentshop.checkpoints.evaluators`) with the trunk's weights inside, so a folder is self-contained.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from latentshop.errors import ConfigError, ShapeError
from latentshop.models.mobilenet import MobileNetV2

__all__ = ["EDIT_NAMES", "AttributeClassifier", "IdentityEmbedder", "mobilenet_trunk", "to_mobilenet_input"]

#: edit names for CelebA attributes: ``-`` negates (``age`` is the probability of *not* ``Young``)
EDIT_NAMES = {
    "smile": "Smiling", "age": "-Young", "gender": "Male", "glasses": "Eyeglasses", "beard": "-No_Beard",
    "bald": "Bald", "blond": "Blond_Hair", "bangs": "Bangs", "mouth_open": "Mouth_Slightly_Open",
    "makeup": "Heavy_Makeup", "hat": "Wearing_Hat",
}

#: trunk layers the attribute classifier pools, and the grid each is averaged on
ATTRIBUTE_POOLS = (("blocks.12", 4), ("blocks.16", 2))


def mobilenet_trunk() -> MobileNetV2:
    """A MobileNetV2 without its 1280-wide head and classifier (``stem`` ... ``blocks.16``)."""
    net = MobileNetV2()
    net.head = None
    net.logits = None
    return net


def to_mobilenet_input(img: torch.Tensor, size: int) -> torch.Tensor:
    """``[N, C, H, W]`` in ``[-1, 1]`` (C 1 or 3) to the trunk's input at ``size`` px.

    The TFLite input is ``(pixel - 128) / 128``, i.e. ``img * 127.5 / 128 - 1 / 256`` here.
    """
    if img.ndim != 4 or img.shape[1] not in (1, 3):
        raise ShapeError(f"expected images [N, 1 or 3, H, W], got {tuple(img.shape)}")
    x = img.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x * (127.5 / 128) - 1 / 256


class _TrunkEvaluator(nn.Module):
    kind = ""

    def __init__(self, size: int):
        super().__init__()
        if not 32 <= size <= 512:
            raise ConfigError(f"input size must be in [32, 512], got {size}")
        self.size = size
        self.channels = 3  # what :func:`latentshop.data.dataset.load_image` should give it
        self.trunk = mobilenet_trunk()
        self.metrics: dict = {}
        self.info: dict = {}

    @property
    def device(self) -> torch.device:
        return self.trunk.stem.weight.device

    def _batched(self, fn, img: torch.Tensor, batch: int) -> torch.Tensor:
        outs = [fn(img[i:i + batch].to(self.device)) for i in range(0, img.shape[0], batch)]
        return torch.cat(outs) if outs else torch.zeros(0)


class AttributeClassifier(_TrunkEvaluator):
    """Binary face attributes (CelebA's 40) from a frozen MobileNetV2 trunk and linear heads.

    Args:
        attributes: the attribute names, in logit order.
        size: the trunk's input size (images are resized to it).

    ``forward(img)`` gives logits ``[N, A]``; :meth:`predict_proba` probabilities;
    :meth:`attribute_scores` the InterFaceGAN interface. ``metrics["usable"]`` (set when trained)
    lists the attributes whose held-out AUC makes them worth editing or measuring with.

    Example:
        >>> net = AttributeClassifier(attributes=["Smiling", "Male"])
        >>> net(torch.zeros(2, 3, 128, 128)).shape
        torch.Size([2, 2])
    """

    kind = "attributes"

    def __init__(self, *, attributes: Sequence[str], size: int = 160):
        super().__init__(size)
        attributes = list(attributes)
        if not attributes or len(set(attributes)) != len(attributes):
            raise ConfigError(f"attributes must be distinct names, got {attributes}")
        self.attributes = attributes
        self.init_kwargs = dict(attributes=attributes, size=int(size))
        features = sum(self.trunk_width(name) * grid * grid for name, grid in ATTRIBUTE_POOLS)
        self.register_buffer("feature_mean", torch.zeros(features))
        self.register_buffer("feature_std", torch.ones(features))
        self.head = nn.Linear(features, len(attributes))
        self.trunk.requires_grad_(False)

    def trunk_width(self, layer: str) -> int:
        return self.trunk.blocks[int(layer.split(".")[1])].project.weight.shape[0]

    def pooled_features(self, img: torch.Tensor) -> torch.Tensor:
        """The unstandardised pooled trunk features ``[N, F]`` (what the heads are fitted on)."""
        maps = self.trunk.features(to_mobilenet_input(img.to(self.device), self.size), [n for n, _ in ATTRIBUTE_POOLS])
        return torch.cat([F.adaptive_avg_pool2d(maps[n], g).flatten(1) for n, g in ATTRIBUTE_POOLS], dim=1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.head((self.pooled_features(img) - self.feature_mean) / self.feature_std)

    @torch.no_grad()
    def predict_proba(self, img: torch.Tensor, *, batch: int = 128) -> torch.Tensor:
        """``[N, A]`` probabilities (balanced: 0.5 is the decision with equal class weights)."""
        return self._batched(lambda x: torch.sigmoid(self(x)).float().cpu(), img, batch)

    def default_attributes(self) -> list[str]:
        """What InterFaceGAN fits when not told: the edit names of :data:`EDIT_NAMES` whose attribute
        this classifier has and measured as usable (``metrics["usable"]``, all when unmeasured)."""
        usable = set(self.metrics.get("usable", self.attributes))
        return [name for name, src in EDIT_NAMES.items() if src.lstrip("-") in usable and src.lstrip("-") in self.attributes]

    def attribute_scores(self, images: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """``({name: probability [N]}, {name: "prob"})`` for InterFaceGAN and edit metrics: every
        attribute under its CelebA name, and the edit names of :data:`EDIT_NAMES` (``age`` =
        1 - P(``Young``), ``beard`` = 1 - P(``No_Beard``)) for the attributes this classifier has."""
        probs = self.predict_proba(images)
        scores = {a: probs[:, i] for i, a in enumerate(self.attributes)}
        for name, source in EDIT_NAMES.items():
            attr = source.lstrip("-")
            if attr in scores:
                scores[name] = 1 - scores[attr] if source.startswith("-") else scores[attr]
        return scores, {k: "prob" for k in scores}


class IdentityEmbedder(_TrunkEvaluator):
    """A face-identity embedding: unit vectors whose cosine similarity is high for the same person.

    Args:
        dim: embedding width.
        size: the trunk's input size (images are resized to it; 128 keeps a 4 x 4 stride-32 map).
        dropout: before the embedding layer, while training.

    Gradients flow to the input images, so ``1 - similarity(a, b)`` is a usable loss.

    Example:
        >>> net = IdentityEmbedder(dim=64).eval()
        >>> e = net(torch.zeros(2, 3, 128, 128))
        >>> e.shape, bool(torch.allclose(e.norm(dim=1), torch.ones(2)))
        (torch.Size([2, 64]), True)
    """

    kind = "identity"

    def __init__(self, *, dim: int = 256, size: int = 128, dropout: float = 0.2):
        super().__init__(size)
        if not 8 <= dim <= 2048:
            raise ConfigError(f"embedding width must be in [8, 2048], got {dim}")
        self.init_kwargs = dict(dim=int(dim), size=int(size), dropout=float(dropout))
        grid = -(-size // 32)  # TF 'SAME' padding: ceil(size / 32)
        self.grid = grid
        self.dropout = nn.Dropout(dropout)
        self.embed = nn.Linear(320 * grid * grid, dim)
        self.norm = nn.BatchNorm1d(dim)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = self.trunk.features(to_mobilenet_input(img.to(self.device), self.size), ["blocks.16"])["blocks.16"]
        return self.head_from(x, 17)

    def head_from(self, x: torch.Tensor, block: int) -> torch.Tensor:
        """The embedding from the output of trunk block ``block - 1`` (``block`` = 17: of the last one).

        Training freezes the early blocks and runs only the rest (see
        :func:`latentshop.training.face_evaluators.train_identity_embedder`).
        """
        for module in self.trunk.blocks[block:]:
            x = module(x)
        return F.normalize(self.norm(self.embed(self.dropout(x.flatten(1)))), dim=1)

    @torch.no_grad()
    def embed_images(self, img: torch.Tensor, *, batch: int = 128) -> torch.Tensor:
        """``[N, dim]`` unit embeddings, without gradients, batched."""
        return self._batched(lambda x: self(x).float().cpu(), img, batch)

    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Cosine similarity ``[N]`` of paired images (differentiable)."""
        return (self(a) * self(b)).sum(dim=1)
