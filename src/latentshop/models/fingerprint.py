"""Which generator is which: a fingerprint of the weights, and the lineage of tuned copies.

A latent, an edit file and an encoder only mean something to the weights they were made for, so
each records :func:`generator_fingerprint` of its generator and is refused by any other. A *tuned*
generator (pivotal tuning, hypernetworks: a copy of a base model whose weights moved for one photo)
has a fingerprint of its own and remembers its base's: its lineage. The rules:

- an edit (direction, StyleSpace channel, channel set, flow) made for the base applies to every
  generator tuned from it — tuning keeps the latent space the edits were found in;
- a latent found for the base (the pivot of a tuning) renders with the tuned generator;
- a latent found for a tuned generator needs that generator: the base and other tunings refuse it;
- an unrelated generator refuses all of them.

Example:
    >>> import torch
    >>> from latentshop.models.stylegan2 import Generator
    >>> G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3,
    ...               synthesis_kwargs=dict(channel_base=64, channel_max=8))
    >>> T = tuned_copy(G)
    >>> with torch.no_grad():
    ...     _ = T.synthesis.b4.conv1.weight.add_(0.1)
    >>> generator_fingerprint(T) != generator_fingerprint(G)
    True
    >>> generator_lineage(T) == (generator_fingerprint(T), generator_fingerprint(G))
    True
    >>> accepts(T, generator_fingerprint(G)), accepts(G, generator_fingerprint(T))
    (True, False)
"""

from __future__ import annotations

import copy
import hashlib
import json

import torch
from torch import nn

__all__ = ["accepts", "generator_fingerprint", "generator_lineage", "mark_tuned", "tuned_copy"]


def generator_fingerprint(G: nn.Module) -> str:
    """A short hash of ``G``'s architecture arguments and weights (cached on the module).

    Two generators share a fingerprint only if they compute the same function, so a latent file
    can check it is being rendered by the network it was found for. Fine-tuning changes it (see
    :func:`generator_lineage` for what a tuned copy still accepts).
    """
    cached = getattr(G, "_latentshop_fingerprint", None)
    if cached is not None and cached[0] == _version_key(G):
        return cached[1]
    h = hashlib.sha256(json.dumps(getattr(G, "init_kwargs", {}), sort_keys=True, default=str).encode())
    for name, t in sorted(G.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    digest = h.hexdigest()[:16]
    G._latentshop_fingerprint = (_version_key(G), digest)
    return digest


def _version_key(G: nn.Module) -> tuple:
    # In-place updates bump a tensor's version, and a copy (copy.deepcopy, .to(), a load with
    # assign=True) has new storage whose counters restart at 0: key by both, over the buffers too
    # (w_avg and the noise maps change what the network renders), so any change is re-hashed.
    return tuple((t.data_ptr(), int(t._version)) for t in (*G.parameters(), *G.buffers()))


def mark_tuned(G: nn.Module, base: str | nn.Module) -> nn.Module:
    """Record that ``G`` was tuned from ``base`` (a generator or its fingerprint); returns ``G``.

    The base's own lineage is kept, so a tuning of a tuning still accepts the original's edits.
    """
    if isinstance(base, nn.Module):
        chain = generator_lineage(base)
    else:
        chain = (str(base),)
    G._latentshop_base = tuple(dict.fromkeys(chain))
    return G


def tuned_copy(G: nn.Module) -> nn.Module:
    """A copy of ``G`` to tune, marked as tuned from ``G`` (the copy's weights are its own)."""
    T = copy.deepcopy(G)
    return mark_tuned(T, G)


def generator_lineage(G: nn.Module) -> tuple[str, ...]:
    """``(G's fingerprint, its base's, the base's base's, ...)``: whose latents and edits ``G`` accepts.

    A generator that was never tuned has a lineage of one. A tuned copy whose weights have not
    moved yet has its base's fingerprint, and the lineage holds it once.
    """
    own = generator_fingerprint(G)
    return tuple(dict.fromkeys((own,) + tuple(getattr(G, "_latentshop_base", ()))))


def accepts(G: nn.Module, fingerprint: str | None) -> bool:
    """Whether something made for the generator ``fingerprint`` may be used with ``G``."""
    return fingerprint is not None and str(fingerprint) in generator_lineage(G)
