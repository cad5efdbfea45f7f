"""The front door: README short, docs shipped with the code, every link inside the repository, and README's demo
numbers those a demo run gives."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
# "**46.6 against 1.6** (at 6 % pruned: Python top-1 drops 60.0 %, prose 13.4 %)"
DEMO = re.compile(r"\*\*(-?[\d.]+) against (-?[\d.]+)\*\* \(at ([\d.]+) % pruned: Python top-1 drops (-?[\d.]+) %, "
                  r"prose (-?[\d.]+) %\)".replace(" ", r"\s+"))


def tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    paths = [ROOT / n for n in names if not n.endswith((".png", ".safetensors", ".gz", ".bin", ".ipynb"))]
    return [p for p in paths if p.is_file()] + sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_readme_is_short():
    assert len(README.read_text().splitlines()) <= 150, "README holds the front door; move results to docs/"


def test_docs_hold_metrics_results_and_cli():
    assert {p.name for p in DOCS} >= {"metrics.md", "results.md", "cli.md"}


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_links_resolve_inside_the_repository(path):
    for target in LINK.findall(path.read_text()):
        if "://" in target:
            continue
        resolved = (path.parent / target).resolve()
        assert resolved.is_relative_to(ROOT), f"{path.name} links outside the repository: {target}"
        assert resolved.exists(), f"{path.name} links to a missing file: {target}"


def test_no_file_refers_to_a_path_outside_the_repository():
    outside = []
    for path in tracked_text_files():
        text = path.read_text(errors="ignore")
        for match in re.finditer(r"(?:\.\./)+[\w.-]+", text):
            if not (path.parent / match.group()).resolve().is_relative_to(ROOT):
                outside.append(f"{path.relative_to(ROOT)}: {match.group()}")
        # the definitions developers once kept beside the repository now live in docs/metrics.md
        outside += [f"{path.relative_to(ROOT)}: {m.group()}" for m in re.finditer(r"(?<![\w/])METRICS\.md", text)]
    assert not outside, "\n".join(outside)


def test_every_results_section_names_its_command():
    sections = re.split(r"\n(?=##+ )", (ROOT / "docs" / "results.md").read_text())[1:]
    for section in sections:
        commands = re.findall(r"`(?:circuitcut|python scripts/\w+\.py|python -m circuitcut) [^`]*`", section)
        assert commands or "circuitcut figures" in section, f"no command regenerates: {section.splitlines()[0]}"


def readme_demo_numbers() -> dict[str, float]:
    match = DEMO.search(README.read_text())
    assert match, "README states the demo's selectivity (selective against random) and drops"
    keys = ("selective", "random", "fraction", "forget_drop", "retain_drop")
    return dict(zip(keys, map(float, match.groups())))


def test_readme_states_the_demo_numbers():
    numbers = readme_demo_numbers()
    assert numbers["forget_drop"] - numbers["retain_drop"] == pytest.approx(numbers["selective"], abs=0.11)


@pytest.mark.real
def test_demo_prints_readme_numbers(tmp_path, capsys):
    """The main job, run as README says, gives README's numbers (to 0.5 points: thread counts change float sums)."""
    from circuitcut.cli import main
    from circuitcut.pruning import PruningResult

    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    result = PruningResult.load(tmp_path / "demo")
    selective, random = result.selectivity("selective"), result.selectivity("random")
    stated = readme_demo_numbers()
    measured = {"selective": selective["selectivity"], "random": random["selectivity"],
                "fraction": 100 * selective["fraction"]["mlp"], "forget_drop": selective["forget_drop"],
                "retain_drop": selective["retain_drop"]}
    assert measured == pytest.approx(stated, abs=0.5), f"README says {stated}, the demo gave {measured}"
    assert f"{stated['selective']:.1f}" in capsys.readouterr().out
    html = (tmp_path / "demo" / "pruning_curves.html").read_text()
    assert "cdn.plot.ly" not in html, "the demo's plots must open offline"


def test_committed_figures_open_offline():
    pages = sorted((ROOT / "figures").glob("*.html"))
    assert pages and (ROOT / "figures" / "plotly.min.js").exists()
    online = [p.name for p in pages if re.search(r"https?://", p.read_text())]
    assert not online, f"these figures load something from the network: {online}"
