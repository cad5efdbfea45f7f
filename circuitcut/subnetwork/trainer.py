"""Learning a knowledge-critical subnetwork: the trainer (scores, optimizer, checkpoints) and one training step.

Only mask scores are trained; the model's weights are frozen and never change. One step samples
one straight-through mask, runs the remaining model on the TargetKG facts, a batch of ControlKG
facts and a batch of ControlLM windows (one backward pass each, so only one forward's activations
are alive at a time), and adds the sparsity term. Every ``validate_every`` steps the evaluation
mask is validated and offered to the selection rule (:mod:`~circuitcut.subnetwork.selection`);
with ``early_stop`` training ends once the rule has held that many validations in a row and the
mask has settled. Every forward starts at the first masked layer from the frozen prefix
(:mod:`~circuitcut.subnetwork.prefix`).

Memory, for a weight run's 53 M scores (212 MB each in float32): the scores and Adam's two moments
stay; a step adds its sample (whose buffer becomes keep = 1 - m, then the masked weights) and that
product's gradient, which becomes the scores' gradient, and frees them before the next. Nothing else
the size of the scores is kept: the sample's gradient draws its noise again, the sparsity term's
gradient is added one site at a time, and the diagnostics read a strided subset.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from jaxtyping import Bool
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from circuitcut import distributed
from circuitcut.evaluate import percent, sparsity_text
from circuitcut.memory import large_blocks_mapped
from circuitcut.runs import atomic_path
from circuitcut.sites import ModelShape
from circuitcut.subnetwork.config import SubnetworkConfig, check_same_config
from circuitcut.subnetwork.data import SubnetworkData
from circuitcut.subnetwork.diagnostics import Push, diagnose
from circuitcut.subnetwork.mask import Remover, remover
from circuitcut.subnetwork.objective import Reference, kg_logits, kl_to_reference, reference, suppression, tail_rank, topk_kl
from circuitcut.subnetwork.parametrize import MaskScores
from circuitcut.subnetwork.prefix import FrozenPrefix
from circuitcut.subnetwork.schedules import learning_rate, noise_scale, sparsity_weight
from circuitcut.subnetwork.selection import Selector
from circuitcut.subnetwork.units import Indices, as_indices, dense


@contextmanager
def frozen(model: TransformerBridge) -> Iterator[None]:
    """Model weights get no gradient while scores train; the flags are restored afterwards."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


class SubnetworkTrainer:
    """Holds a run's scores, optimizer, random stream, history and selection; :meth:`train` runs it.

    With ``checkpoint`` the trainer saves there every ``checkpoint_every`` steps and, created again
    with the same config, resumes from it: the remaining steps are the ones an uninterrupted run takes.
    """

    def __init__(self, model: TransformerBridge, config: SubnetworkConfig, data: SubnetworkData,
                 checkpoint: str | Path | None = None):
        data.check()
        self.model, self.config, self.data = model, config, data
        self.device = next(model.parameters()).device
        self.scores = MaskScores(config.sites(model), config.init_p).to(self.device)
        # one score tensor at a time: the multi-tensor (foreach) step holds temporaries as large as all scores
        self.optimizer = torch.optim.Adam(self.scores.parameters(), lr=config.peak_lr, foreach=False)
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.selector = Selector(model, data, config)
        self.history: list[dict] = []
        self.step = 0
        self.seconds = 0.0
        """Training time so far, summed over every start of a resumed run (saved in checkpoints)."""
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self._previous: Indices | None = None
        self.push = Push()
        self.stopped = False
        """Whether the early stop ended training (the rule held and the mask settled); saved in checkpoints."""
        self._prefix: FrozenPrefix | None = None
        if self.checkpoint is not None and self.checkpoint.exists():
            self._resume()

    def train(self, *, progress: bool = True, on_step: Callable[[int, dict], None] | None = None) -> None:
        """Run the remaining steps; ``on_step(step, record)`` after each (live plots in notebooks)."""
        c = self.config
        if self.stopped:
            return
        prefix = self.frozen_prefix()
        with frozen(self.model), prefix.active():
            self.selector.measure_original()
            ref = reference(self.model, self.data.control, self.data.lm, top_k=c.lm_top_k)
            keep0 = {name: torch.ones((), device=s.device).expand(s.shape) for name, s in self.scores.items()}  # no memory
            bar = tqdm(range(self.step, c.steps), desc="subnetwork", initial=self.step, total=c.steps,
                       disable=not (progress and distributed.is_main_process()))
            # a step's freed logits and activations go back at once, not into a heap that creeps up step by step
            with remover(self.model, c.granularity, keep0) as masker, large_blocks_mapped():
                for step in bar:
                    started = time.perf_counter()
                    last = step == c.steps - 1
                    logged = step % c.log_every == 0 or last
                    sampled, record = self._train_step(step, ref, masker, logged)
                    if logged:
                        diagnostics, self._previous = diagnose(
                            self.scores, self.optimizer, self.push, weight=record["sparsity_weight"], mode=c.sparsity,
                            sampled=sampled, previous=self._previous)
                        self.history.append({**record, **diagnostics})
                        bar.set_postfix(loss=f"{record['loss']:.3g}", sparsity=f"{sparsity_text(record['sparsity'])}%")
                    if self.selector.enabled and ((step + 1) % c.validate_every == 0 or last):
                        self.selector.validate(step + 1, self.scores.hard(), masker)
                        self.stopped = c.early_stop is not None and self.selector.settled(c.early_stop, c.early_stop_change)
                    self.step = step + 1
                    self.seconds += time.perf_counter() - started
                    if self.checkpoint is not None and ((step + 1) % c.checkpoint_every == 0 or last or self.stopped):
                        self._save()
                    if on_step is not None:
                        on_step(step, record)
                    if self.stopped:
                        bar.close()
                        break

    def frozen_prefix(self) -> FrozenPrefix:
        """The residual streams entering the first masked layer for every sequence of the run's data
        (computed on first use; the final evaluation reuses them)."""
        if self._prefix is None:
            first = min(self.config.resolved_layers(ModelShape.of(self.model)))
            self._prefix = FrozenPrefix.of(self.model, first, self.data.sequences(), budget_mb=self.config.prefix_cache_mb)
        return self._prefix

    def final_mask(self) -> dict[str, Bool[Tensor, "..."]]:
        """The mask the selection rule chose (the last evaluation mask if nothing was validated)."""
        if self.selector.best_mask is not None:
            return dense(self.selector.best_mask, dict(self.scores.items()))
        return {n: m.cpu() for n, m in self.scores.hard().items()}

    def _train_step(self, step: int, ref: Reference, masker: Remover,
                    logged: bool = True) -> tuple[dict[str, Tensor] | None, dict]:
        """One step; returns the training sample as booleans (only when ``logged``: the diagnostics read it) and the record."""
        c, data, gen = self.config, self.data, self.generator
        terms, record = {}, {}
        lr = learning_rate(step, c.steps, c.peak_lr, c.warmup, c.lr_schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        noise = noise_scale(step, c.steps, c.noise_start, c.noise_end, c.noise_decay)
        # The sample's buffers become keep = 1 - m and then, for weights, the masked weights (the
        # remover takes them over); each term's backward gathers its gradient there, so the three
        # forward graphs never coexist; the straight-through gradient reaches the scores at the end.
        draws = self.scores.draw(temperature=c.temperature, noise=noise, generator=gen)
        states = {name: state for name, (_, state) in draws.items()}
        n_sampled = sum(int(m.sum()) for m, _ in draws.values())
        sampled = {name: m == 1 for name, (m, _) in draws.items()} if logged else None
        masker.start_step({name: m.neg_().add_(1) for name, (m, _) in draws.items()})
        del draws
        control = torch.randperm(len(data.control), generator=gen, device=gen.device)[: c.control_batch].cpu()
        windows = torch.randperm(len(data.lm), generator=gen, device=gen.device)[: c.lm_batch].cpu()
        # Under torchrun every rank draws the same mask and batches (same seed) and takes its share of
        # each batch; the gradients are averaged before the step, so all ranks take the same step.
        target, control, windows = (distributed.shard(i) for i in (torch.arange(len(data.target)), control, windows))

        if c.suppression_weight:
            batch = data.target[target]
            logits = kg_logits(self.model, batch)
            tail = batch.tail_token.to(logits.device)
            terms["suppression"] = suppression(logits, tail, c.suppression, c.suppress_rank)
            record["target_top10"] = percent(tail_rank(logits.detach(), tail) <= 10)
            (c.suppression_weight * terms["suppression"]).backward()
        if c.control_kg_weight:
            logits = kg_logits(self.model, data.control[control])
            terms["control_kg"] = kl_to_reference(ref.control_logp[control].to(logits.device), logits)
            (c.control_kg_weight * terms["control_kg"]).backward()
        if c.control_lm_weight:
            # one window at a time: a window's activations and its 128 x 49,152 logits are freed before the
            # next (the term is the mean over windows of equal length, so its gradient is the same)
            terms["control_lm"] = torch.zeros(())
            for w in windows.tolist():
                logits = self.model(data.lm[w : w + 1].to(self.device)).float()
                kl = topk_kl(ref.lm_index[w : w + 1].to(logits.device), ref.lm_logp[w : w + 1].to(logits.device), logits)
                (c.control_lm_weight * kl / len(windows)).backward()
                terms["control_lm"] += kl.detach().cpu() / len(windows)
        push = masker.end_step()  # -dL/dm, as m = 1 - keep
        self.push.update(push)
        self.scores.add_sample_grad(states, {n: g.neg_() for n, g in push.items()}, temperature=c.temperature, noise=noise)
        del push
        weight = sparsity_weight(step, c.steps, c.sparsity_start, c.sparsity_end)
        terms["sparsity_loss"] = self.scores.add_penalty_grad(weight, c.sparsity)
        distributed.all_reduce_grads(self.scores.parameters())
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)  # no gradient the size of the scores held between steps

        with torch.no_grad():
            outside = sum(int((s <= 0).sum()) for s in self.scores.scores)
        weights = {"suppression": c.suppression_weight, "control_kg": c.control_kg_weight,
                   "control_lm": c.control_lm_weight, "sparsity_loss": weight}
        return sampled, {
            "step": step,
            "lr": lr,
            "noise": noise,
            "sparsity_weight": weight,
            **{k: float(v.detach()) for k, v in terms.items()},
            "loss": sum(weights[k] * float(v.detach()) for k, v in terms.items()),
            **record,
            "sampled": 100 * n_sampled / self.scores.n_units(),
            "sparsity": 100 * outside / self.scores.n_units(),  # of the evaluation mask after this step
        }

    def _save(self) -> None:
        if not distributed.is_main_process():
            return
        state = {
            "config": self.config.to_dict(),
            "step": self.step,
            "seconds": self.seconds,
            "scores": self.scores.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "history": self.history,
            "previous": self._previous,
            "push": self.push.state_dict(),
            "selection": self.selector.state_dict(),
            "stopped": self.stopped,
        }
        with atomic_path(self.checkpoint) as tmp:
            torch.save(state, tmp)

    def _resume(self) -> None:
        state = torch.load(self.checkpoint, map_location="cpu", weights_only=False)
        check_same_config(SubnetworkConfig.from_dict(state["config"]), self.config, self.checkpoint)
        self.scores.load_state_dict(state["scores"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.step, self.history = state["step"], state["history"]
        self._previous = as_indices(state["previous"])
        self.seconds = state.get("seconds", 0.0)  # checkpoints written before it was kept hold none
        self.push.load_state_dict(state["push"])
        self.selector.load_state_dict(state["selection"])
        self.stopped = state.get("stopped", False)
