"""Masks a run keeps beside its scores, held as the flat indices of their units instead of dense booleans.

A weight run keeps three masks between steps: the previous record's evaluation mask (what ``flips`` counts
against), the previous validation's (``changed``, the early stop) and the best validated so far (the final
mask), each in every checkpoint. As dense booleans over the top half's 53 M weights they take 53 MB apiece
(160 MB of the run's memory, and of every checkpoint written); as int64 indices of the 1,000-30,000 units a
mask holds, 8 B x 30,000 = 240 KB at most. A neuron run's masks are small either way.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Int64
from torch import Tensor

Indices = dict[str, Int64[Tensor, " units"]]
"""Per site, the ascending flat indices of the units in a mask."""


def as_indices(mask: dict[str, Bool[Tensor, "..."]] | Indices | None) -> Indices | None:
    """``mask``'s units as flat indices (on the CPU); indices and ``None`` are returned as they are (a checkpoint
    written before masks were kept as indices holds dense booleans, one before its first record none)."""
    if mask is None:
        return None
    return {name: (m.flatten().nonzero().flatten() if m.dtype == torch.bool else m).cpu() for name, m in mask.items()}


def changed(previous: Indices, mask: dict[str, Bool[Tensor, "..."]]) -> int:
    """Units that entered or left ``mask`` since ``previous``: |A| + |B| - 2 |A and B|, without a dense copy of A."""
    total = 0
    for name, m in mask.items():
        flat, before = m.flatten(), previous[name].to(m.device)
        total += len(before) + int(flat.sum()) - 2 * int(flat[before].sum())
    return total


def dense(indices: Indices, like: dict[str, Tensor]) -> dict[str, Bool[Tensor, "..."]]:
    """The boolean masks of ``indices``, each shaped as the tensor of its site in ``like`` (on the CPU)."""
    out = {}
    for name, t in like.items():
        m = torch.zeros(t.numel(), dtype=torch.bool)
        m[indices[name].cpu()] = True
        out[name] = m.view(t.shape)
    return out
