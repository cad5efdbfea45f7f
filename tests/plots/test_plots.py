"""Every view builds from small synthetic results (or the tiny model), is titled, and shows its input."""

import re
import shutil
import subprocess

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from plotly.offline import get_plotlyjs

from circuitcut.contexts import top_activating_contexts
from circuitcut.masks import Mask
from circuitcut.plots import (
    drop_curves, importance_heatmap, importance_scatter, jaccard_matrix, neuron_contexts, neurons_per_layer,
    overlap_counts, overlap_per_layer, pruning_curves, save_figure, selection_curves, subnetwork_anatomy, subnetwork_effect,
    tradeoff, training_curves,
)
from circuitcut.plots.subnetworks import DATASET_LABELS
from circuitcut.pruning import PruningConfig, PruningResult
from circuitcut.pruning.report import drop
from circuitcut.sites import ModelShape, hook_name

SHAPE = ModelShape("synthetic", n_layers=4, d_model=16, d_mlp=12, n_heads=4, n_key_value_heads=2, d_head=4)


def _axis_titles(fig):
    return [fig.layout[k].title.text for k in fig.layout.to_plotly_json() if k.startswith(("xaxis", "yaxis"))]


def _titled(fig):
    assert fig.layout.title.text
    titles = [t for t in _axis_titles(fig) if t]
    assert any(k.startswith("x") for k in titles) or len(titles) >= 2, f"axis titles missing: {titles}"
    return fig


def _major_log_ticks(axis):
    """Explicit ticks at powers of ten only, each labelled with its value: plotly's automatic log ticks
    label the minor ones with a bare leading digit ('2, 10, 9, ... 1, 9')."""
    exponents = np.log10(np.asarray(axis.tickvals, dtype=float))
    assert axis.type == "log" and len(exponents) >= 3 and np.allclose(exponents, exponents.round())
    assert [float(t.replace(",", "")) for t in axis.ticktext] == pytest.approx(list(axis.tickvals))
    return [int(e) for e in exponents.round()]


def _metrics(top1, ppl):
    return {"top1": top1, "top10": top1 + 20, "top1_skip": top1 - 5, "top10_skip": top1 + 10, "loss": 1.0,
            "perplexity": ppl, "n_tokens": 100}


@pytest.fixture()
def result():
    """Three steps of 2 % each way: selective hits forget harder, random hits both a little."""
    torch.manual_seed(0)
    history = [{"method": "original", "step": 0, "fraction": {"mlp": 0.0}, "per_layer": {},
                "forget": _metrics(50.0, 10.0), "retain": _metrics(40.0, 20.0)}]
    masks = {}
    for method, forget, retain in (("selective", [30.0, 15.0, 10.0], [39.0, 36.0, 30.0]),
                                   ("random", [49.0, 47.0, 45.0], [39.5, 38.0, 36.0])):
        mlp, attn_v = torch.zeros(4, 12, dtype=torch.bool), torch.zeros(4, 8, dtype=torch.bool)
        for step, (f, r) in enumerate(zip(forget, retain), start=1):
            mlp.view(-1)[torch.randperm(48)[:2]] = True
            history.append({"method": method, "step": step, "fraction": {"mlp": 0.02 * step},
                            "per_layer": {"mlp": mlp.sum(1).tolist(), "attn_v": attn_v.sum(1).tolist()},
                            "forget": _metrics(f, 10 + 5 * step), "retain": _metrics(r, 20 + step)})
        attn_v[1, :3] = True
        masks[method] = Mask.from_kinds(SHAPE, {"mlp": mlp, "attn_v": attn_v})
    importances = {"forget.mlp": torch.rand(4, 12) + 0.01, "retain.mlp": torch.rand(4, 12)}
    importances["retain.mlp"][2, 5] = 0.0  # a zero must survive the log scale
    return PruningResult(PruningConfig(steps=3), history, masks, importances)


def test_neurons_per_layer_counts_and_percent(result):
    fig = _titled(neurons_per_layer(result.masks))
    bars = {(t.name, t.yaxis): t.y for t in fig.data}
    sel = result.masks["selective"].by_kind()
    assert list(bars[("selective · mlp", "y")]) == sel["mlp"].sum(1).tolist()
    assert np.allclose(bars[("selective · attn_v", "y2")], 100 * sel["attn_v"].sum(1).numpy() / 8)
    assert "one feeds every query head" in fig.layout.annotations[-1].text  # grouped-query note for attn_v
    assert "selective: " in fig.layout.title.text


def test_importance_heatmap_hover_and_sort(result):
    forget, retain = result.importances["forget.mlp"], result.importances["retain.mlp"]
    fig = _titled(importance_heatmap(forget, retain))
    z = np.asarray(fig.data[0].z)
    assert z.shape == (4, 12)
    assert np.allclose(z, np.log10((forget / (retain + 1e-3)).numpy()), atol=1e-5)
    assert "forget importance" in fig.data[0].hovertemplate and "neuron" in fig.data[0].hovertemplate
    fig = importance_heatmap(forget, retain, show="retain", sort=True)
    z, custom = np.asarray(fig.data[0].z), np.asarray(fig.data[0].customdata)
    assert np.isfinite(z).all() and (np.diff(z, axis=1) <= 1e-6).all()  # sorted, and the zero stayed finite
    layer, rank = 0, 0
    neuron = int(custom[layer, rank, 0])  # the hover names the neuron's own index, not its rank
    assert custom[layer, rank, 2] == pytest.approx(float(retain[layer, neuron]))
    assert neuron == int(retain[layer].argmax())


def test_importance_scatter_highlights_pruned(result):
    forget, retain = result.importances["forget.mlp"], result.importances["retain.mlp"]
    pruned = result.masks["selective"].by_kind()["mlp"]
    fig = _titled(importance_scatter(forget, retain, pruned))
    kept, removed = fig.data[0], fig.data[1]
    assert type(kept).__name__ == "Scattergl" and len(kept.x) == 48 - int(pruned.sum())
    assert len(removed.x) == int(pruned.sum())  # every neuron drawn once: the two sets split the cloud
    assert np.allclose(sorted(removed.y), sorted(forget[pruned].numpy()))
    assert np.asarray(kept.marker.color).max() <= 3 and kept.marker.cmax == 3  # coloured by layer
    # Rings larger than the points (the old 'circle-open', size 7) hid 46k neurons under 4.6k pruned ones:
    # the pruned set is drawn as filled points no larger than the cloud's, translucent.
    assert removed.marker.symbol in (None, "circle") and removed.marker.size <= kept.marker.size
    assert removed.marker.opacity < 1
    assert _major_log_ticks(fig.layout.xaxis) == _major_log_ticks(fig.layout.yaxis)  # one range: diagonal corner to corner


def test_pruning_curves_mark_the_selectivity_step(result):
    fig = _titled(pruning_curves(result))
    forget_sel = next(t for t in fig.data if t.name.startswith("forget") and "selective" in t.name and t.yaxis == "y")
    assert list(forget_sel.y) == [50.0, 30.0, 15.0, 10.0]
    assert list(forget_sel.x) == pytest.approx([0, 2, 4, 6])
    best = result.selectivity("selective")
    star = next(t for t in fig.data if t.name.startswith("max"))
    h = result.steps("selective")[best["step"]]
    assert list(star.y) == [h["forget"]["top1"], h["retain"]["top1"]]
    assert f"{best['selectivity']:.1f}" in star.name
    assert fig.layout.yaxis2.type == "log" and fig.layout.yaxis2.tickvals  # explicit ticks, every one labelled
    assert fig.layout.yaxis2.ticktext == ("10", "20")  # perplexity 10 to 25: too short for powers of ten


def test_drop_curves_are_relative_drops(result):
    fig = _titled(drop_curves({"mlp": result, "again": result}))
    line = next(t for t in fig.data if t.name == "mlp selective")
    assert list(line.y) == pytest.approx([0, *(drop(50.0, f) for f in (30.0, 15.0, 10.0))])
    assert list(line.x) == pytest.approx([0, *(drop(40.0, r) for r in (39.0, 36.0, 30.0))])
    assert sum(t.name.endswith("random") for t in fig.data) == 2


def _units(seed, layers=(2, 3), matrices=("attn.q", "mlp.in"), p=0.3):
    g = torch.Generator().manual_seed(seed)
    return {f"blocks.{layer}.{m}": torch.rand(6, 5, generator=g) < p for layer in layers for m in matrices}


def test_subnetwork_anatomy_per_layer_and_matrix():
    units = _units(0)
    fig = _titled(subnetwork_anatomy(Mask(SHAPE, "weight", units)))
    heat, bars = fig.data
    assert list(heat.x) == ["q", "in"] and list(heat.y) == [2, 3]
    assert np.asarray(heat.z)[1, 1] == pytest.approx(100 * units["blocks.3.mlp.in"].float().mean().item())
    assert list(bars.x) == [int(units[f"blocks.{layer}.attn.q"].sum() + units[f"blocks.{layer}.mlp.in"].sum())
                            for layer in (2, 3)]


def test_jaccard_matches_the_subnetwork_mask():
    sets = {name: Mask(SHAPE, "weight", _units(seed)) for name, seed in (("a", 0), ("b", 1), ("c", 2))}
    fig = _titled(jaccard_matrix(sets))
    z = np.asarray(fig.data[0].z)
    assert np.allclose(np.diag(z), 1) and np.allclose(z, z.T)
    assert z[0, 1] == pytest.approx(sets["a"].jaccard(sets["b"])["overall"])
    per_layer = _titled(overlap_per_layer(sets, pairs=[("a", "c")]))
    expected = sets["a"].jaccard(sets["c"])["per_layer"]
    assert list(per_layer.data[0].y) == pytest.approx([expected[2], expected[3]])
    assert 0 < per_layer.data[1].y[0] < 1  # the random-set level


def test_overlap_counts_selective_against_a_learned_neuron_mask():
    selective = Mask.empty(SHAPE, ["mlp"])
    selective.removed[hook_name("mlp", 2)][:4] = True
    selective.removed[hook_name("mlp", 0)][:4] = True  # a layer the learned mask does not cover: left out
    learned = Mask(SHAPE, "neuron", {hook_name("mlp", layer): torch.zeros(12, dtype=torch.bool) for layer in (2, 3)})
    learned.removed[hook_name("mlp", 2)][2:6] = True
    learned.removed[hook_name("mlp", 3)][0] = True
    fig = _titled(overlap_counts(selective, learned))
    only_sel, both, only_learned = (list(t.y) for t in fig.data)
    assert (only_sel, both, only_learned) == ([2, 0], [2, 0], [2, 1])
    assert "Jaccard 0.286" in fig.layout.title.text and "<sup>" in fig.layout.title.text
    assert selective.removed.keys() >= learned.removed.keys()


def test_top_activating_contexts_on_the_tiny_model(tiny_model, tmp_path):
    tokens = torch.randint(0, 2000, (5, 24), generator=torch.Generator().manual_seed(0))
    contexts = top_activating_contexts(tiny_model, tokens, layer=1, neuron=7, k=3, before=4, after=2)
    _, cache = tiny_model.run_with_cache(tokens, names_filter=lambda n: n == hook_name("mlp", 1))
    acts = cache[hook_name("mlp", 1)][..., 7]
    peak, _ = acts.max(dim=1)
    assert [w for w, _, _ in contexts.peaks] == peak.topk(3).indices.tolist()
    w, p, a = contexts.peaks[0]
    assert a == pytest.approx(float(acts[w, p]), rel=1e-4)
    assert contexts.activations[0, 4] == pytest.approx(a, rel=1e-4)  # column 4 is offset 0
    assert contexts.tokens[0][4].replace("·", " ") == tiny_model.tokenizer.decode([int(tokens[w, p])]).replace("\n", "↵")
    fig = _titled(neuron_contexts(contexts))
    assert list(fig.data[0].x) == [-4, -3, -2, -1, 0, 1, 2]
    ranked = {}
    for rank_by, key in (("min", -acts), ("abs", acts.abs())):
        ranked[rank_by] = top_activating_contexts(tiny_model, tokens, layer=1, neuron=7, k=3, rank_by=rank_by)
        strength, position = key.max(dim=1)
        assert [w for w, _, _ in ranked[rank_by].peaks] == strength.topk(3).indices.tolist()
        w, p, a = ranked[rank_by].peaks[0]
        assert p == int(position[w]) and a == pytest.approx(float(acts[w, p]), rel=1e-4)  # signed, not |a|
    assert "most negative" in neuron_contexts(ranked["min"]).layout.title.text
    with pytest.raises(ValueError, match="rank_by 'median'.*max, min, abs"):
        top_activating_contexts(tiny_model, tokens, layer=1, neuron=7, rank_by="median")
    value_contexts = top_activating_contexts(tiny_model, tokens, layer=0, neuron=17, kind="attn_v", k=2)
    assert "query head" in neuron_contexts(value_contexts).layout.title.text
    paths = save_figure(fig, tmp_path, "contexts", png=False)
    assert paths[0].stat().st_size < 50_000  # plotly.js is not in it


def _saved(tmp_path, name):
    fig = go.Figure(go.Bar(x=["a", "b"], y=[1, 2]))
    fig.update_layout(title="offline")
    return save_figure(fig, tmp_path, name, png=False)[0]


def test_saved_html_loads_plotly_from_beside_it(tmp_path):
    first = _saved(tmp_path, "first")
    bundle = tmp_path / "plotly.min.js"
    written = bundle.stat().st_mtime_ns
    second = _saved(tmp_path, "second")
    for page in (first, second):
        html = page.read_text()
        # Offline, a script from a CDN leaves every plot blank: no network address anywhere in the page.
        assert "cdn.plot.ly" not in html and '<script src="http' not in html and not re.search(r"https?://", html)
        assert re.findall(r'<script[^>]* src="([^"]+)"', html) == ["plotly.min.js"]
    assert bundle.read_text(encoding="utf-8") == get_plotlyjs()
    assert bundle.stat().st_mtime_ns == written  # once per folder: the second figure reused it
    bundle.write_text("/* plotly.js v1.0.0, an older plotly's */")
    _saved(tmp_path, "third")
    assert bundle.read_text(encoding="utf-8") == get_plotlyjs()  # not kept when it is another version


@pytest.mark.skipif(not shutil.which("chromium"), reason="no chromium to render the page headless")
def test_saved_html_renders_without_a_network(tmp_path):
    page = _saved(tmp_path, "offline")
    # Every host name fails to resolve, so a page that needed a CDN would stay blank.
    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         f"--user-data-dir={tmp_path / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND", "--dump-dom",
         page.as_uri()], capture_output=True, text=True, timeout=60, check=True).stdout
    assert 'class="main-svg"' in dom and ">offline<" in dom  # plotly drew the figure and its title


def _kg(ppl, top10):
    return {"ppl": ppl, "ppl_first": ppl, "top1": top10, "top5": top10, "top10": top10, "mean_rank": 1.0,
            "median_rank": 1.0, "n": 10}


def _labels_do_not_collide(fig):
    """Dataset names side by side under the bars ran into each other: each sits on its own row of a
    vertical axis, with room for its lines."""
    assert {bar.orientation for bar in fig.data if bar.type == "bar"} == {"h"}
    labels = fig.data[0].y
    margin = fig.layout.margin
    row = (fig.layout.height - (margin.t or 100) - margin.b) / len(labels)
    font = fig.layout.template.layout.font.size or 12
    assert row >= 1.5 * font * max(label.count("<br>") + 1 for label in labels)


def test_subnetwork_effect_training_and_selection_curves():
    metrics = {
        "target": "isa:animal", "sparsity": 90.0,
        "original": {"target": _kg(2.0, 60.0), "control": _kg(4.0, 50.0), "lm": {"ppl": 10.0, "top10": 40.0}},
        "remaining": {"target": _kg(200.0, 0.0), "control": _kg(5.0, 45.0), "lm": {"ppl": 12.0, "top10": 38.0}},
        "random": {"per_seed": [{"target": _kg(2.2, 55.0), "control": _kg(5.0, 44.0), "lm": {"ppl": 13.0, "top10": 37.0}},
                                {"target": _kg(1.8, 58.0), "control": _kg(6.0, 40.0), "lm": {"ppl": 11.0, "top10": 39.0}}]},
        "selection": {"rule": {"max_target_top10": 10.0, "max_control_dppl": 10.0, "max_lm_dppl": 5.0},
                      "chosen_step": 20, "rule_met": True,
                      "validations": [{"step": 10, "sparsity": 95.0, "target_top10": 30.0, "control_dppl": 2.0, "lm_dppl": 1.0},
                                      {"step": 20, "sparsity": 97.0, "target_top10": 5.0, "control_dppl": 4.0, "lm_dppl": 2.0}]},
    }
    fig = _titled(subnetwork_effect(metrics))
    learned, rand = fig.data[0], fig.data[1]
    assert list(learned.y) == ["TargetKG", "ControlKG<br>(trained)", "ControlLM<br>(text)"]
    assert list(learned.x) == pytest.approx([100.0, 1.25, 1.2])
    assert list(learned.customdata) == pytest.approx([9900.0, 25.0, 20.0])  # dPPL in percent
    assert list(rand.x) == pytest.approx([1.0, 1.375, 1.2])
    assert list(rand.error_x.array) == pytest.approx([0.1, 0.125, 0.1])
    assert _major_log_ticks(fig.layout.xaxis) == [0, 1, 2]  # 1, 10, 100
    assert "sparsity 90.00%" in fig.layout.title.text
    assert list(fig.data[-1].x) == pytest.approx([56.5, 42.0, 38.0])  # top-10 under random masks, mean of seeds
    every = {n: _kg(2.0, 50.0) for n in DATASET_LABELS}  # all seven datasets: the most labels
    _labels_do_not_collide(subnetwork_effect({"original": every, "remaining": every}))
    history = [{"step": s, "suppression": 1 / (s + 1), "control_kg": 0.1, "sparsity_loss": 0.4, "loss": 1.0,
                "sparsity": 50 + s} for s in range(5)]
    fig = _titled(training_curves(history))
    assert list(next(t for t in fig.data if t.name == "sparsity").y) == [50, 51, 52, 53, 54]
    assert {t.name for t in fig.data} >= {"suppression", "control_kg", "sparsity_loss", "loss"}
    fig = _titled(selection_curves(metrics))
    assert list(next(t for t in fig.data if t.name == "sparsity").y) == [95.0, 97.0]
    assert list(next(t for t in fig.data if t.name == "target rows in the top 10").y) == [30.0, 5.0]
    assert "step 20 (rule met)" in fig.layout.title.text

    worse = {**metrics, "remaining": {**metrics["remaining"], "target_paraphrase": _kg(9.0, 25.0)},
             "change": {"control_new": {"dppl": 12.5}}}
    fig = _titled(tradeoff({"a": {**metrics, "remaining": {**metrics["remaining"], "target_paraphrase": _kg(9.0, 5.0)},
                                  "change": {"control_new": {"dppl": 3.0}}}, "b": worse}))
    assert [list(t.x) for t in fig.data if t.mode == "lines+markers"] == [[30.0, 5.0]] * 2  # every validation
    chosen = [(t.name, list(t.x), list(t.y)) for t in fig.data if t.mode == "markers"]
    assert chosen == [("a", [5.0], [3.0]), ("b", [25.0], [12.5])]  # the worse template, never-seen controls
    assert [(r.x1, r.y1) for r in fig.layout.shapes] == [(10.0, 10.0)] * 2


def test_many_neurons_contexts_in_one_pass_equal_one_at_a_time(tiny_model):
    from circuitcut.contexts import many_contexts

    tokens = torch.randint(0, 2000, (5, 24), generator=torch.Generator().manual_seed(1))
    found = many_contexts(tiny_model, tokens, {("mlp", 1): [7, 3], ("mlp", 0): [11]}, k=2, before=3, after=1)
    assert set(found) == {("mlp", 1, 7), ("mlp", 1, 3), ("mlp", 0, 11)}
    for (kind, layer, neuron), contexts in found.items():
        alone = top_activating_contexts(tiny_model, tokens, layer, neuron, kind=kind, k=2, before=3, after=1)
        assert [(w, q) for w, q, _ in contexts.peaks] == [(w, q) for w, q, _ in alone.peaks]
        assert [a for *_, a in contexts.peaks] == pytest.approx([a for *_, a in alone.peaks], rel=1e-5)
        assert contexts.tokens == alone.tokens
        assert (contexts.layer, contexts.neuron) == (layer, neuron)
