"""Linear probe: can the target attribute ("is an animal") still be read from the residual stream?

Removal may silence the facts while the representation that carries the attribute survives. For
subjects inside the target family (positives) and outside it (negatives: the sibling family and the
control facts), the residual stream after each masked layer is read at the subject's last token
(the subject alone, after a space, so that no relation template gives the answer away); a logistic
regression is trained and scored by k-fold cross-validation, per layer, for the original model,
the remaining model and random masks of the same size.
"""

from __future__ import annotations

import random

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from circuitcut.robustness.examples import Facts, subjects
from circuitcut.robustness.family import spread
from circuitcut.robustness.removal import Removal
from circuitcut.robustness.source import SubnetRun


def probe_accuracy(
    features: Float[Tensor, "n d"], labels: Int[Tensor, " n"], folds: int = 5, seed: int = 0, l2: float = 1e-2
) -> float:
    """Held-out accuracy (%) of an L2-regularised logistic regression, by ``folds``-fold cross-validation.

    Features are standardised with each training fold's mean and deviation only.
    """
    n = len(labels)
    if folds < 2 or n < folds:
        raise ValueError(f"{n} examples cannot be split into {folds} folds: use more subjects or fewer folds.")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    correct = 0
    for fold in order.chunk(folds):
        train = order[~torch.isin(order, fold)]
        mean, std = features[train].mean(0), features[train].std(0) + 1e-6
        x, y = (features[train] - mean) / std, labels[train].float()
        w = torch.zeros(x.shape[1] + 1, requires_grad=True)
        opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            logits = x @ w[:-1] + w[-1]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y) + l2 * w[:-1].square().sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            predicted = ((features[fold] - mean) / std @ w[:-1] + w[-1]) > 0
        correct += int((predicted == labels[fold].bool()).sum())
    return 100 * correct / n


@torch.inference_mode()
def subject_residuals(
    model: TransformerBridge, words: list[str], layers: list[int]
) -> dict[int, Float[Tensor, "n d_model"]]:
    """The residual stream after each of ``layers`` at the last token of each word (after a space)."""
    encoded = model.tokenizer([f" {w}" for w in words], add_special_tokens=False)["input_ids"]
    width = max(len(ids) for ids in encoded)
    pad = model.tokenizer.eos_token_id or 0
    tokens = torch.tensor([ids + [pad] * (width - len(ids)) for ids in encoded])
    last = torch.tensor([len(ids) - 1 for ids in encoded])
    names = [f"blocks.{layer}.hook_resid_post" for layer in layers]
    _, cache = model.run_with_cache(tokens.to(next(model.parameters()).device), names_filter=lambda n: n in names)
    rows = torch.arange(len(words))
    return {layer: cache[name][rows, last].float().cpu() for layer, name in zip(layers, names)}


def probe(model: TransformerBridge, run: SubnetRun, facts: dict[str, Facts], *, random_seeds: int = 3,
          folds: int = 5, seed: int = 0) -> dict:
    """Probe accuracy per masked layer: original, remaining and random-mask models (mean and sd over seeds).

    ``facts`` are :func:`~circuitcut.robustness.family.family_facts`: the target and held-out family
    subjects are positives; as many negatives are drawn from the sibling family and the controls.
    """
    positive = sorted(subjects(facts["target"].batch) | subjects(facts["family_heldout"].batch))
    others = [f for name, f in facts.items() if name.startswith("sibling")] + [Facts(run.eval_kg["control"])]
    negative = sorted(set().union(*(subjects(f.batch) for f in others)) - set(positive))
    negative = random.Random(seed).sample(negative, min(len(negative), len(positive)))
    words, labels = positive + negative, torch.tensor([1] * len(positive) + [0] * len(negative))
    layers = sorted({int(name.split(".")[1]) for name in run.mask.removed})
    removals = [Removal("original", None), Removal("learned", run.mask)] + [
        Removal(f"random {s}", run.mask.random_like(s)) for s in range(random_seeds)]
    accuracy = {}
    for removal in removals:
        with removal.held(model, "hooks"):
            residuals = subject_residuals(model, words, layers)
        accuracy[removal.name] = {layer: probe_accuracy(residuals[layer], labels, folds, seed) for layer in layers}
    random_runs = [accuracy.pop(r.name) for r in removals[2:]]
    return {
        "n_positive": len(positive), "n_negative": len(negative), "layers": layers,
        "original": accuracy["original"], "learned": accuracy["learned"],
        "random": {layer: spread([r[layer] for r in random_runs]) for layer in layers},
    }


def format_probe(report: dict) -> str:
    """One line per layer: probe accuracy of the original, remaining and random-mask models."""
    lines = [f"linear probe, {report['n_positive']} family subjects vs {report['n_negative']} others "
             f"(cross-validated accuracy %)", f"{'layer':>5s} {'original':>9s} {'learned':>8s} {'random':>12s}"]
    for layer in report["original"]:
        rand = report["random"][layer]
        lines.append(f"{layer!s:>5s} {report['original'][layer]:9.1f} {report['learned'][layer]:8.1f} "
                     f"{rand['mean']:6.1f}±{rand['std']:4.1f}")
    return "\n".join(lines)
