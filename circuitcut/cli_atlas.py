"""``circuitcut atlas build|pack|targets|compare|verify``: the atlas's commands, added to the main parser by
:func:`atlas_args` (:mod:`circuitcut.cli`). Each command imports what it runs."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from circuitcut.cli_args import load_model_of, model_args, threads_arg


def cmd_atlas_build(args) -> None:
    from circuitcut.atlas.build import build_atlas
    from circuitcut.atlas.config import AtlasConfig
    from circuitcut.config_args import config_overrides, fields_as_flags

    with fields_as_flags(AtlasConfig):
        config = AtlasConfig(**config_overrides(args, AtlasConfig))
    start = time.perf_counter()
    folders = build_atlas(config, args.out, model_name=args.model, device=args.device)
    print(f"{len(folders)} runs finished in {args.out} ({time.perf_counter() - start:.0f} s); pack them into an "
          f"atlas with `circuitcut atlas pack {args.out}`")


def cmd_atlas_pack(args) -> None:
    from circuitcut.atlas.store import MASKS, RUNS, finished_runs, pack_atlas

    folders = finished_runs(args.runs_dir)
    out = pack_atlas(folders, args.to)
    size = sum((out / name).stat().st_size for name in (MASKS, RUNS))
    print(f"packed {len(folders)} runs into {out} ({size / 1e6:.2f} MB)")


def cmd_atlas_targets(args) -> None:
    from circuitcut.atlas.targets import DEFAULT_TARGETS, check_targets, describe_targets, format_checks

    targets = tuple(t for t in args.targets.split(",") if t) or DEFAULT_TARGETS
    print(describe_targets(targets))
    if args.check:
        print()
        print(format_checks(check_targets(load_model_of(args), targets)))


def cmd_atlas_compare(args) -> None:
    from circuitcut import plots
    from circuitcut.atlas import AtlasError, load
    from circuitcut.atlas.compare import seed_agreement, targets_of
    from circuitcut.atlas.findings import compare_atlas, findings, findings_markdown, runs_markdown, seeds_markdown
    from circuitcut.atlas.views import atlas_figures
    from circuitcut.figures import replace_captions

    atlas = load(args.atlas)
    if not targets_of(atlas, None, args.granularity, args.seed):  # named before the model loads
        raise AtlasError(f"The atlas {atlas.folder} holds no {args.granularity} masks under seed {args.seed}: build "
                         f"them with `circuitcut atlas build --granularity {args.granularity} --seeds {args.seed}`.")
    start = time.perf_counter()
    if args.saved:
        comparisons, path = atlas.comparisons(args.granularity, args.seed), "nothing (--saved)"
    else:
        comparisons = compare_atlas(load_model_of(args), atlas, args.granularity, args.seed, args.random_seeds)
        path = comparisons.save(atlas.folder)
    found = findings(comparisons)
    print(runs_markdown(atlas, args.granularity, args.seed), "\n")
    print(findings_markdown(found), "\n")
    if seeds := seeds_markdown(seed_agreement(atlas, args.granularity)):
        print(f"The same family under mask seeds 0 and 1 ({args.granularity} masks):\n{seeds}\n")
    figures = atlas_figures(atlas, comparisons, found)
    for name, (figure, _) in figures.items():
        plots.save_figure(figure, args.figures, name, png=not args.no_png)
    replace_captions(Path(args.figures) / "CAPTIONS.md", {name: caption for name, (_, caption) in figures.items()})
    print(f"wrote {path} and the atlas figures into {args.figures} ({time.perf_counter() - start:.0f} s)")


def cmd_atlas_verify(args) -> int:
    from circuitcut.atlas import load
    from circuitcut.atlas.functional import verify

    atlas = load(args.atlas)
    targets = [atlas.target(args.target)] if args.target else [
        r["target"] for r in atlas.runs.values() if r["granularity"] == args.granularity and r["seed"] == args.seed]
    atlas.run(targets[0], args.granularity, args.seed)  # an entry the atlas lacks is named before the model loads
    model, failed = load_model_of(args), 0
    for target in targets:
        frame = verify(model, atlas, target, args.granularity, args.seed)
        failed += int((~frame.ok).sum())
        lines = "; ".join(f"{r.dataset} dPPL stored {r.stored:+.1f} %, measured {r.measured:+.1f} %"
                          f"{'' if r.ok else ' (DIFFERS)'}" for r in frame.itertuples())
        print(f"{target} {args.granularity} seed {args.seed}: {lines}")
    print("every figure reproduced within 1 %" if not failed else f"{failed} figures differ by more than 1 %")
    return 1 if failed else 0


def atlas_args(atlas: argparse.ArgumentParser, formatter, common: argparse.ArgumentParser) -> None:
    """``circuitcut atlas build|pack|targets``; ``common``: the flags every command takes (--debug)."""
    from circuitcut.atlas.config import FLAG_GROUPS, AtlasConfig
    from circuitcut.config_args import add_config_args

    sub = atlas.add_subparsers(dest="atlas_command", required=True, metavar="COMMAND")

    def command(name: str, func, summary: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:],
                           formatter_class=formatter, parents=[common])
        p.set_defaults(func=func)
        return p

    p = command("build", cmd_atlas_build, "subnetwork runs for a list of targets, one resumable folder each: two at "
                                          "a time on a CPU, one by one on CUDA")
    p.add_argument("--out", required=True, metavar="FOLDER", help="folder of the run folders (a rerun continues it)")
    p.add_argument("--model", default="smollm2", help="embedded name, local checkpoint folder or hub name")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    threads_arg(p)
    groups = {name: p.add_argument_group(name, description) for name, description in FLAG_GROUPS.items()}
    add_config_args(groups, AtlasConfig, shown=AtlasConfig())

    p = command("pack", cmd_atlas_pack, "pack finished run folders into an atlas (masks as indices, runs as JSON)")
    p.add_argument("runs_dir", metavar="RUNS_DIR", help="a 'circuitcut atlas build' folder")
    p.add_argument("--to", default=None, metavar="FOLDER",
                   help="where the atlas goes (default: the package's, which circuitcut.atlas.load() reads)")

    p = command("compare", cmd_atlas_compare, "compare the atlas's targets with the model (cross-criticality of every "
                                              "pair, unions, overlaps), ship the comparisons beside it, draw figures")
    p.add_argument("--atlas", default=None, metavar="FOLDER", help="an atlas folder (default: the shipped one)")
    p.add_argument("--granularity", default="weight", choices=["weight", "neuron"], help="which masks (default: weight)")
    p.add_argument("--seed", type=int, default=0, help="which mask seed (default: 0)")
    p.add_argument("--random-seeds", type=int, default=1, metavar="N",
                   help="random masks of each subnetwork's size per site, the cross-criticality baseline (default: 1)")
    p.add_argument("--figures", default="figures", metavar="FOLDER",
                   help="where the cross-criticality heatmap and the tree go, captions in its CAPTIONS.md "
                        "(default: figures)")
    p.add_argument("--no-png", action="store_true", help="HTML only (PNG export needs chromium)")
    p.add_argument("--saved", action="store_true",
                   help="print the findings and draw the figures from the comparisons saved beside the atlas, "
                        "without the model (seconds)")
    model_args(p)

    p = command("verify", cmd_atlas_verify, "re-evaluate atlas entries on the model: their stored TargetKG and "
                                            "ControlKG dPPL, reproduced within 1 percent or not (exit status 1)")
    p.add_argument("target", nargs="?", default=None, metavar="TARGET",
                   help="one target, e.g. food.n.01 (default: every target of --granularity and --seed)")
    p.add_argument("--granularity", default="weight", choices=["weight", "neuron"], help="which entry (default: weight)")
    p.add_argument("--seed", type=int, default=0, help="which entry's mask seed (default: 0)")
    p.add_argument("--atlas", default=None, metavar="FOLDER", help="an atlas folder (default: the shipped one)")
    model_args(p)

    p = command("targets", cmd_atlas_targets, "the default targets as a WordNet tree; --check counts the facts "
                                              "the model knows of each")
    p.add_argument("--targets", default="", metavar="SPEC,...", help="other targets (default: the default list)")
    p.add_argument("--check", action="store_true",
                   help="load the model and count each target's known facts, as a run samples and scores them")
    model_args(p)
