"""The shipped atlas on the embedded model: an entry re-evaluated reproduces its stored figures."""

from __future__ import annotations

import pytest

from circuitcut.atlas import load
from circuitcut.atlas.functional import verify


@pytest.mark.real
def test_a_shipped_entry_reproduces_its_stored_targetkg_and_controlkg_dppl(smollm2):
    atlas = load()
    target = atlas.targets[0]
    frame = verify(smollm2, atlas, target, "weight")
    assert list(frame.dataset) == ["target", "control", "control_new"]
    assert frame.ok.all(), frame.to_string()
    stored = atlas.run(target)["metrics"]["change"]["target"]["dppl"]
    assert stored > 100  # an entry worth checking: its own facts are gone
