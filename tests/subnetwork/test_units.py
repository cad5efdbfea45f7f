"""Masks kept as flat indices: the same units as the dense booleans, and the same change counts."""

from __future__ import annotations

import torch

from circuitcut.subnetwork.units import as_indices, changed, dense


def random_masks(seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {"a": torch.rand(6, 7, generator=gen) < 0.3, "b": torch.rand(11, generator=gen) < 0.5}


def test_indices_round_trip_to_the_same_masks():
    masks = random_masks(0)
    back = dense(as_indices(masks), masks)
    assert all(torch.equal(back[n], m) and back[n].shape == m.shape for n, m in masks.items())
    assert as_indices(as_indices(masks))["a"].tolist() == masks["a"].flatten().nonzero().flatten().tolist()


def test_changed_counts_what_the_dense_masks_count():
    before, after = random_masks(1), random_masks(2)
    expected = sum(int((before[n] != after[n]).sum()) for n in before)
    assert expected > 0 and changed(as_indices(before), after) == expected
    assert changed(as_indices(after), after) == 0
