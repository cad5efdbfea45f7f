"""Choosing the final mask: validate the evaluation mask every few steps and keep the one a stated rule prefers.

The rule (fields of :class:`~circuitcut.subnetwork.config.SubnetworkConfig`): the sparsest validated
mask whose validation target rows keep the tail in the top 10 at most ``max_target_top10`` percent
of the time (counting only the rows the original model ranks in its top 10: the target facts are
known on their chosen template, often not on their other ones, and an unknown row would count as
suppressed from the start), and whose validation ControlKG and ControlLM whole-tail dPPL stay within
``max_control_dppl`` and ``max_lm_dppl``. If no mask keeps all three, the one that breaks them
least (the sum of the excesses, in percentage points) wins, the sparser on a tie. Validation uses
only validation data (:mod:`~circuitcut.subnetwork.data`), never what is reported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from jaxtyping import Bool
from torch import Tensor
from torch.nn.utils import parametrize
from transformer_lens.model_bridge import TransformerBridge

from circuitcut.data.kg import score_pairs
from circuitcut.evaluate import evaluate_tokens, percent
from circuitcut.subnetwork.data import SubnetworkData
from circuitcut.subnetwork.evaluation import TEXT_BATCH, kg_metrics
from circuitcut.subnetwork.mask import Remover
from circuitcut.subnetwork.units import Indices, as_indices, changed


@dataclass
class Validation:
    """The evaluation mask after ``step`` steps, on validation data."""

    step: int
    sparsity: float
    target_top10: float
    control_dppl: float
    lm_dppl: float
    excess: float
    """Sum of the amounts by which the three figures break their bounds (0: the rule holds)."""
    size: int = 0
    """Units in the mask."""
    changed: int | None = None
    """Units that entered or left the mask since the previous validation (``None`` at the first)."""

    def better_than(self, other: Validation | None) -> bool:
        if other is None:
            return True
        return (self.excess, -self.sparsity) < (other.excess, -other.sparsity)


class Selector:
    """Validates masks as training goes and holds the best one so far (part of a checkpoint)."""

    def __init__(self, model: TransformerBridge, data: SubnetworkData, config):
        self.model, self.data, self.config = model, data, config
        self.records: list[Validation] = []
        self.best: Validation | None = None
        self.best_mask: Indices | None = None
        self._original: dict | None = None
        self._last: Indices | None = None
        """The mask of the previous validation (what ``changed`` counts against)."""
        self._known: Bool[Tensor, " rows"] | None = None
        """Validation target rows whose tail the original model ranks in its top 10 (the rows counted)."""

    @torch.no_grad()
    def _measure(self) -> dict:
        """Validation figures of the model as it runs now (with whatever mask is set; the first call: the original)."""
        with parametrize.cached():  # a weight mask's W * keep once for every batch, not per forward
            rank = score_pairs(self.model, self.data.val_kg["target"]).rank
            if self._known is None:
                self._known = rank <= 10
            counted = rank[self._known] if self._known.any() else rank  # nothing known: every row counts (0 %)
            out = {"target_top10": percent(counted <= 10),
                   "control_ppl": kg_metrics(self.model, self.data.val_kg["control"])["ppl"]}
            out["lm_ppl"] = evaluate_tokens(self.model, self.data.val_lm, batch_size=TEXT_BATCH).perplexity
        return out

    @property
    def enabled(self) -> bool:
        """Whether the data has validation sets (data given by hand may have none: the last mask is then final)."""
        return bool(self.data.val_kg) and self.data.val_lm is not None

    def measure_original(self) -> None:
        """The unmasked model's figures, the reference of every dPPL (call before any mask is set)."""
        if self._original is None and self.enabled:
            self._original = self._measure()

    def validate(self, step: int, subnetwork: dict[str, Bool[Tensor, "..."]], masker: Remover) -> Validation:
        """Measure the remaining model without ``subnetwork`` (set through ``masker``) and offer it to the rule."""
        n_in = sum(int(m.sum()) for m in subnetwork.values())
        orig = self._original
        if n_in:
            masker.set_keep({n: (~m).float() for n, m in subnetwork.items()})
            now = self._measure()
        else:  # an empty mask is the original model, measured already
            now = orig
        c = self.config
        control = 100 * (now["control_ppl"] - orig["control_ppl"]) / orig["control_ppl"]
        lm = 100 * (now["lm_ppl"] - orig["lm_ppl"]) / orig["lm_ppl"]
        excess = (max(0.0, now["target_top10"] - c.max_target_top10) + max(0.0, control - c.max_control_dppl)
                  + max(0.0, lm - c.max_lm_dppl))
        n_units = sum(m.numel() for m in subnetwork.values())
        moved = None if self._last is None else changed(self._last, subnetwork)
        self._last = as_indices(subnetwork)
        record = Validation(step, 100 * (1 - n_in / n_units), now["target_top10"], control, lm, excess, n_in, moved)
        self.records.append(record)
        if record.better_than(self.best):
            self.best, self.best_mask = record, self._last
        return record

    def settled(self, validations: int, change: float) -> bool:
        """Whether the rule held at the last ``validations`` validations and, at each after the first of
        them, at most ``change`` of the mask's units entered or left it (the early stop)."""
        last = self.records[-validations:]
        if len(last) < validations or any(r.excess > 0 for r in last):
            return False
        return all(r.changed is not None and r.changed <= change * max(r.size, 1) for r in last[1:])

    def summary(self) -> dict:
        """What metrics.json says about the choice: the rule's bounds, every validation, the one chosen."""
        c = self.config
        return {
            "rule": {"max_target_top10": c.max_target_top10, "max_control_dppl": c.max_control_dppl,
                     "max_lm_dppl": c.max_lm_dppl},
            "chosen_step": self.best.step if self.best else None,
            "validated": self.enabled,
            "rule_met": bool(self.best and self.best.excess == 0),
            "target_rows": None if self._known is None else {"known": int(self._known.sum()), "all": len(self._known)},
            "validations": [asdict(r) for r in self.records],
        }

    def state_dict(self) -> dict:
        return {"records": [asdict(r) for r in self.records], "best": asdict(self.best) if self.best else None,
                "best_mask": self.best_mask, "original": self._original, "known": self._known, "last": self._last}

    def load_state_dict(self, state: dict) -> None:
        self.records = [Validation(**r) for r in state["records"]]
        self.best = Validation(**state["best"]) if state["best"] else None
        self._original, self._known = state["original"], state["known"]
        # checkpoints written before masks were kept as indices hold dense booleans; before early stopping no "last"
        self.best_mask, self._last = as_indices(state["best_mask"]), as_indices(state.get("last"))
