"""What ships beside the code: the licence, the citation file, and the typing marker in a built wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_citation_cites_circuitcut_and_both_papers():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software" and cff["title"] == "circuitcut"
    assert (cff["version"], cff["license"]) == (project["version"], project["license"])
    arxiv = {i["value"] for ref in cff["references"] for i in ref["identifiers"]}
    assert arxiv == {"arXiv:2403.01267", "arXiv:2310.03084"}
    authors = {ref["title"]: [a["family-names"] for a in ref["authors"]] for ref in cff["references"]}
    assert authors == {
        "Dissecting Language Models: Machine Unlearning via Selective Pruning": ["Pochinkov", "Schoots"],
        "Discovering Knowledge-Critical Subnetworks in Pretrained Language Models":
            ["Bayazit", "Foroutan", "Chen", "Weiss", "Bosselut"],
    }


def test_the_wheel_ships_py_typed_and_the_licence(tmp_path):
    """Built from a copy of the sources (no build folder left in the checkout), offline."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "circuitcut", source / "circuitcut", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-q", "-w", str(tmp_path / "dist")], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("circuitcut-*.whl")
    with zipfile.ZipFile(wheel) as files:
        names = set(files.namelist())
        metadata = files.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "circuitcut/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: Apache-2.0" in metadata and "Requires-Dist: pandas" in metadata
    licence = (ROOT / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
