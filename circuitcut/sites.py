"""Neuron sites: where in a TransformerLens model a family of neurons lives.

A *site kind* names a hook point per layer and the shape of one layer's neurons there:

==========  ============================  ==========================  =============================
kind        hook point                    neurons per layer           weights a neuron owns
==========  ============================  ==========================  =============================
``mlp``     ``blocks.L.mlp.hook_post``    ``(d_mlp,)``                row of in/gate (+ bias), column of out
``attn_v``  ``blocks.L.attn.hook_v``      ``(n_key_value_heads, d_head)``  row of W_V (+ bias)
``attn_z``  ``blocks.L.attn.hook_z``      ``(n_heads, d_head)``       column of W_O
==========  ============================  ==========================  =============================

With grouped-query attention (SmolLM2: 9 query heads, 3 key/value heads) one value neuron feeds
``n_heads // n_key_value_heads`` query heads, so removing it removes that dimension from all of them.

Every per-neuron quantity in circuitcut (statistics, scores, masks) is stored per kind as a
``[n_layers, n_neurons]`` tensor with the layer's neurons flattened in hook order, so that
``neuron_index = head * d_head + dim`` for attention sites.

Pruning removes *units*: a neuron of a site kind, or (kind ``heads``) a whole attention head, its
``d_head`` consecutive ``attn_z`` neurons together; a removed head is those neurons removed, so every mask
stays a neuron mask.

Every site name, a neuron site's hook or a weight matrix (``blocks.L.mlp.in``), is
``blocks.<layer>.<part>``; :func:`site_name` writes one and :func:`parse_site` reads one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # the command line reads this module (site kinds, matrices) before torch is imported
    from transformer_lens.model_bridge import TransformerBridge

SiteKind = Literal["mlp", "attn_v", "attn_z"]
SITE_KINDS: tuple[SiteKind, ...] = ("mlp", "attn_v", "attn_z")
_HOOKS = {"mlp": "mlp.hook_post", "attn_v": "attn.hook_v", "attn_z": "attn.hook_z"}
DESCRIPTIONS = {
    "mlp": "feed-forward neurons (mlp.hook_post)",
    "attn_v": "attention value neurons (attn.hook_v; one feeds every query head of its group)",
    "attn_z": "attention pre-out neurons (attn.hook_z)",
}
UnitKind = Literal["mlp", "attn_v", "attn_z", "heads"]
UNIT_KINDS: tuple[UnitKind, ...] = (*SITE_KINDS, "heads")
"""What pruning removes one at a time: a neuron of a site kind, or ``heads``, a whole attention head."""
_UNIT_SITES: dict[str, SiteKind] = {"heads": "attn_z"}
Granularity = Literal["weight", "neuron"]
GRANULARITIES: tuple[Granularity, ...] = ("weight", "neuron")
"""What a mask removes: single weights of weight matrices, or whole neurons of neuron sites."""
Fill = Literal["zero", "mean"]
FILLS: tuple[Fill, ...] = ("zero", "mean")
"""What a removed neuron's activation becomes: zero, or its mean over a reference corpus (mean ablation)."""
Importance = Literal["freq", "abs", "rms", "std", "sqrt", "mean"]
IMPORTANCES: tuple[Importance, ...] = ("freq", "abs", "rms", "std", "sqrt", "mean")
"""How a neuron's importance to a dataset is read from its statistics (:meth:`~circuitcut.stats.NeuronStats.importance`;
named here, with no torch, for the command line)."""
MATRICES: tuple[str, ...] = ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.gate", "mlp.in", "mlp.out")
"""The weight-matrix parts of a block that weight masks can mask (``blocks.L.mlp.in``)."""


def _listed(kinds: str | list[str] | tuple[str, ...], allowed: tuple[str, ...]) -> tuple:
    """Kinds given as a list or a comma-separated string, each one of ``allowed``, without repeats."""
    if isinstance(kinds, str):
        kinds = [k.strip() for k in kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in allowed]
    if unknown or not kinds:
        raise ValueError(f"Unknown site kind(s) {unknown or kinds}: choose from {', '.join(allowed)}.")
    return tuple(dict.fromkeys(kinds))


def check_kinds(kinds: str | list[str] | tuple[str, ...]) -> tuple[SiteKind, ...]:
    """Validate site kinds given as a list or a comma-separated string."""
    return _listed(kinds, SITE_KINDS)


def check_units(kinds: str | list[str] | tuple[str, ...]) -> tuple[UnitKind, ...]:
    """Validate pruning unit kinds given as a list or a comma-separated string; two kinds made of the same
    neurons (``heads`` and ``attn_z``) are refused, since each step removes a count of each."""
    units = _listed(kinds, UNIT_KINDS)
    for site in SITE_KINDS:
        sharing = [k for k in units if unit_site(k) == site]
        if len(sharing) > 1:
            raise ValueError(f"{' and '.join(sharing)} both remove {site} neurons, and each step removes a count "
                             f"of each from the same neurons: prune one of them.")
    return units


def unit_site(kind: UnitKind) -> SiteKind:
    """The site kind whose neurons a unit of ``kind`` is made of (``heads`` -> ``attn_z``)."""
    return _UNIT_SITES.get(kind, kind)  # type: ignore[return-value]


@dataclass(frozen=True)
class ModelShape:
    """The dimensions that decide neuron sites; saved beside every mask to refuse another model."""

    name: str
    n_layers: int
    d_model: int
    d_mlp: int
    n_heads: int
    n_key_value_heads: int
    d_head: int

    @classmethod
    def of(cls, model: TransformerBridge) -> ModelShape:
        cfg = model.cfg
        return cls(
            name=getattr(model, "circuitcut_name", None) or cfg.model_name,
            n_layers=cfg.n_layers,
            d_model=cfg.d_model,
            d_mlp=cfg.d_mlp,
            n_heads=cfg.n_heads,
            n_key_value_heads=getattr(cfg, "n_key_value_heads", None) or cfg.n_heads,
            d_head=cfg.d_head,
        )

    def neuron_shape(self, kind: SiteKind) -> tuple[int, ...]:
        """Shape of one layer's neurons of this kind, as the hook sees them after (batch, pos)."""
        return {
            "mlp": (self.d_mlp,),
            "attn_v": (self.n_key_value_heads, self.d_head),
            "attn_z": (self.n_heads, self.d_head),
        }[kind]

    def n_neurons(self, kind: SiteKind) -> int:
        n = 1
        for d in self.neuron_shape(kind):
            n *= d
        return n

    def unit_size(self, kind: UnitKind) -> int:
        """Neurons per unit: ``d_head`` for a head, 1 for a neuron."""
        return self.d_head if kind == "heads" else 1

    def n_units(self, kind: UnitKind) -> int:
        """Units of ``kind`` per layer (``n_heads`` for heads)."""
        return self.n_neurons(unit_site(kind)) // self.unit_size(kind)

    def describe(self) -> str:
        lines = [
            f"model        {self.name}",
            f"layers       {self.n_layers}",
            f"d_model      {self.d_model}",
            f"heads        {self.n_heads} query, {self.n_key_value_heads} key/value, d_head {self.d_head}",
            "neuron sites:",
        ]
        for kind in SITE_KINDS:
            shape = " x ".join(map(str, self.neuron_shape(kind)))
            lines.append(
                f"  {kind:7s} {hook_name(kind, 0).replace('.0.', '.L.'):26s} {shape:>9s} per layer, "
                f"{self.n_neurons(kind) * self.n_layers:>7d} in all - {DESCRIPTIONS[kind]}"
            )
        return "\n".join(lines)


def site_name(layer: int, part: str) -> str:
    """``(15, "mlp.in")`` -> ``blocks.15.mlp.in``."""
    return f"blocks.{layer}.{part}"


def parse_site(name: str) -> tuple[int, str]:
    """``blocks.15.mlp.in`` -> ``(15, "mlp.in")``."""
    parts = name.split(".", 2) if isinstance(name, str) else []  # hook filters may be functions
    if len(parts) != 3 or parts[0] != "blocks" or not parts[1].isdigit() or not parts[2]:
        raise ValueError(f"'{name}' is not a site name of the form blocks.<layer>.<part>.")
    return int(parts[1]), parts[2]


def hook_name(kind: SiteKind, layer: int) -> str:
    """The HookedTransformer-style hook name of a site kind at a layer."""
    return site_name(layer, _HOOKS[kind])


def neuron_site(name: str) -> tuple[int, SiteKind]:
    """``blocks.3.mlp.hook_post`` -> ``(3, "mlp")``; a ValueError for a name that is no neuron site."""
    layer, part = parse_site(name)
    for kind, hook in _HOOKS.items():
        if part == hook:
            return layer, kind  # type: ignore[return-value]
    raise ValueError(f"'{name}' is not a neuron site.")
