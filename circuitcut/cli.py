"""The ``circuitcut`` command line: a thin layer over the same API the notebooks use.

Building the parser imports no torch, so ``circuitcut --help`` answers at once; each command imports
what it runs. ``docs/cli.md`` holds every command's help (``python -m circuitcut.cli_docs`` rewrites it).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import sys
import time
from pathlib import Path

import circuitcut
from circuitcut.cli_args import DTYPES, load_model_of, model_args, threads_arg
from circuitcut.cli_atlas import atlas_args

class _Formatter(argparse.HelpFormatter):
    """Help that shows each flag's default, except where there is none to show: a switch, a repeatable
    flag, an unset value (its help says what happens instead), a config field (its help holds the
    preset's value, see config_args)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        # `is`, not `in`: a default of 0 is one to show
        if action.default is None or action.default is False or action.default in ([], argparse.SUPPRESS):
            return action.help
        return f"{action.help} (default: %(default)s)"


def cmd_info(args) -> None:
    from circuitcut.sites import ModelShape

    print(ModelShape.of(load_model_of(args)).describe())


def cmd_ppl(args) -> None:
    from circuitcut.data.corpora import corpus_windows
    from circuitcut.evaluate import evaluate_tokens

    model = load_model_of(args)
    print(f"{'corpus':10s} {'tokens':>7s} {'top1':>6s} {'top10':>6s} {'loss':>6s} {'ppl':>7s}")
    for corpus in args.corpora.split(","):
        windows = corpus_windows(corpus, model.tokenizer, n_tokens=args.tokens, split="eval", seed=args.seed)
        m = evaluate_tokens(model, windows, progress=True, desc=corpus)
        print(f"{corpus:10s} {m.n_tokens:7d} {m.top1:5.1f}% {m.top10:5.1f}% {m.loss:6.3f} {m.perplexity:7.2f}")


DEMO = {"steps": 3, "tokens": 4096}
"""The demo's settings where they differ from PruningConfig's defaults (a short run)."""


def _pruning_config(args, defaults: dict):
    """The run's config (``defaults`` with the flags given laid over them), with both corpora checked before the
    model takes time to load."""
    from circuitcut.config_args import config_overrides, fields_as_flags
    from circuitcut.data.corpora import load_documents
    from circuitcut.pruning.config import PruningConfig

    with fields_as_flags(PruningConfig):
        config = PruningConfig(**{**defaults, **config_overrides(args, PruningConfig)})
    load_documents(config.forget), load_documents(config.retain)
    return config


def cmd_prune(args) -> None:
    from circuitcut.pruning import prune
    from circuitcut.runs import check_out_folder

    check_out_folder(args.out, resume=args.resume)
    config = _pruning_config(args, {})
    model = load_model_of(args)
    start = time.perf_counter()
    result = prune(model, config, out_dir=args.out, resume=args.resume)
    print(result.summary())
    print(f"wrote {args.out}/history.json and masks in {time.perf_counter() - start:.0f} s")


def cmd_demo(args) -> None:
    """The main job: the model's sites, then a short forget-code / retain-prose run vs random."""
    from circuitcut import plots
    from circuitcut.pruning import prune
    from circuitcut.runs import check_out_folder
    from circuitcut.sites import ModelShape

    check_out_folder(args.out)
    config = _pruning_config(args, DEMO)
    model = load_model_of(args)
    print(ModelShape.of(model).describe(), "\n")
    print(f"Selective pruning: forget {config.forget}, retain {config.retain}, {config.sites} neurons, "
          f"{config.importance} importance, {config.steps} steps of {config.frac_text()}, {config.tokens} tokens per split")
    start = time.perf_counter()
    # Resuming makes a repeated or interrupted demo pick up what is already in its folder.
    result = prune(model, config, out_dir=args.out, resume=True)
    print(result.summary())
    for name, fig in {"pruning_curves": plots.pruning_curves(result), "drop_curves": plots.drop_curves(result),
                      "neurons_per_layer": plots.neurons_per_layer(result.masks)}.items():
        plots.save_figure(fig, args.out, name, png=False)  # HTML: PNG export needs a browser
    print(f"run folder with plots (*.html): {args.out} ({time.perf_counter() - start:.0f} s)")


def _subnetwork_config(args):
    """The run's config (a preset with the flags given laid over it), its target checked before the model loads."""
    from circuitcut.config_args import config_overrides, fields_as_flags
    from circuitcut.subnetwork import SubnetworkConfig, preset
    from circuitcut.subnetwork.data import check_target

    with fields_as_flags(SubnetworkConfig):
        config = preset(args.preset, **config_overrides(args, SubnetworkConfig))
    check_target(config)
    return config


def cmd_subnet(args) -> None:
    from circuitcut.runs import check_out_folder
    from circuitcut.subnetwork import find_subnetwork, format_report

    check_out_folder(args.out, resume=args.resume)
    config = _subnetwork_config(args)
    model = load_model_of(args)
    result = find_subnetwork(model, config, args.out)
    print(format_report(result.metrics))
    print(f"wrote {args.out}/metrics.json, mask.safetensors, config.json")


def cmd_duel(args) -> None:
    from circuitcut import plots
    from circuitcut.config_args import config_overrides, fields_as_flags
    from circuitcut.data.corpora import load_documents
    from circuitcut.duel import DuelConfig, duel_caption, duel_markdown, run_duel
    from circuitcut.figures import replace_captions
    from circuitcut.runs import check_out_folder
    from circuitcut.subnetwork.data import check_target

    check_out_folder(args.out, resume=args.resume)
    with fields_as_flags(DuelConfig):
        config = DuelConfig(**config_overrides(args, DuelConfig))
    check_target(config.subnetwork())  # target and corpora refused before the model loads
    load_documents(config.forget), load_documents(config.retain)
    model = load_model_of(args)
    start = time.perf_counter()
    result = run_duel(model, config, args.out)
    table = duel_markdown(result)
    (Path(args.out) / "table.md").write_text(table + "\n")
    plots.save_figure(plots.duel_scatter(result), args.out, "duel", png=False)
    print(table)
    if args.figures:  # the figure and its caption where the README's figures are
        plots.save_figure(plots.duel_scatter(result), args.figures, "duel")
        replace_captions(Path(args.figures) / "CAPTIONS.md", {"duel": duel_caption(result)})
    print(f"wrote {args.out}/table.md and duel.html in {time.perf_counter() - start:.0f} s")


def cmd_figures(args) -> None:
    from circuitcut.figures import make_figures
    from circuitcut.runs import check_out_folder

    check_out_folder(args.out)
    runs = dict(item.split("=", 1) for item in args.subnetwork_run) or None
    make_figures(args.out, args.budget, runs_dir=args.runs_dir, pruning_run=args.pruning_run,
                 subnetwork_runs=runs, png=not args.no_png, only=[n for n in args.only.split(",") if n])


def cmd_relearn(args) -> None:
    from circuitcut import plots
    from circuitcut.robustness import (
        FamilyConfig, RelearnConfig, format_generalisation, format_probe, open_run, relearn,
    )

    facts = FamilyConfig(n_facts=args.facts, sibling=args.sibling, seed=args.seed)
    config = RelearnConfig(steps=args.steps, lr=args.lr, batch_size=args.batch_size, tokens=args.tokens,
                           eval_tokens=args.eval_tokens, hold=args.hold, train=args.train, step=args.step,
                           corpus=args.corpus, seed=args.seed, facts=facts)
    open_run(args.run_dir, step=config.step)  # an unfinished or foreign folder is refused before the model loads
    model = load_model_of(args)
    start = time.perf_counter()
    result = relearn(model, args.run_dir, config)
    if result.generalisation is not None:
        print(format_generalisation(result.generalisation), "\n")
        print(format_probe(result.probe), "\n")
    print(result.summary())
    plots.save_figure(plots.relearn_curves(result), args.run_dir, "relearn", png=False)
    print(f"wrote {args.run_dir}/relearn.json and relearn.html in {time.perf_counter() - start:.0f} s")


def _prune_args(p: argparse.ArgumentParser, defaults: dict, out: str, resume_flag: bool = True) -> None:
    """The run's own flags, then every PruningConfig field (its default laid over by ``defaults``), each in the
    group the field names."""
    from circuitcut.config_args import add_config_args
    from circuitcut.pruning.config import FLAG_GROUPS, PruningConfig

    groups = {name: p.add_argument_group(name, description) for name, description in FLAG_GROUPS.items()}
    run = groups["run"]
    model_args(run)
    run.add_argument("--out", default=out, metavar="FOLDER", help="run folder")
    if resume_flag:  # the demo always resumes its folder
        run.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    add_config_args(groups, PruningConfig, shown=PruningConfig(**defaults))


def _subnet_args(p: argparse.ArgumentParser) -> None:
    """The run's own flags, then every SubnetworkConfig field, each in the group the field names."""
    from circuitcut.config_args import add_config_args
    from circuitcut.subnetwork.config import FLAG_GROUPS, PRESETS, SubnetworkConfig, preset

    groups = {name: p.add_argument_group(name, description) for name, description in FLAG_GROUPS.items()}
    run = groups["run"]
    run.add_argument("--preset", default="default", choices=list(PRESETS),
                     help="named settings the other flags lay over; docs/cli.md lists what each sets")
    model_args(run)
    run.add_argument("--out", default="runs/subnet", metavar="FOLDER", help="run folder")
    run.add_argument("--resume", action="store_true", help="continue (or, finished, load) the run in --out")
    add_config_args(groups, SubnetworkConfig, shown=preset("default"))


def _duel_args(p: argparse.ArgumentParser) -> None:
    """The run's own flags, then every DuelConfig field, each in the group the field names."""
    from circuitcut.config_args import add_config_args
    from circuitcut.duel.config import FLAG_GROUPS, DuelConfig

    groups = {name: p.add_argument_group(name, description) for name, description in FLAG_GROUPS.items()}
    run = groups["run"]
    model_args(run)
    run.add_argument("--out", default="runs/duel", metavar="FOLDER", help="run folder")
    run.add_argument("--resume", action="store_true", help="continue (or, finished, load) the duel in --out")
    run.add_argument("--figures", default=None, metavar="FOLDER",
                     help="also draw the figure (PNG and HTML) into this folder, its caption in its CAPTIONS.md")
    add_config_args(groups, DuelConfig, shown=DuelConfig())


def build_parser(width: int | None = None) -> argparse.ArgumentParser:
    """The ``circuitcut`` parser; ``width``: help line width (default: the terminal's)."""
    formatter = functools.partial(_Formatter, width=width)
    parser = argparse.ArgumentParser(
        prog="circuitcut", formatter_class=formatter,
        description="Find, remove and compare the parts of a language model that carry a capability or a piece "
                    "of knowledge.",
        epilog="circuitcut COMMAND --help lists the flags of a command.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {circuitcut.__version__}")
    debug = "on an error, show the traceback, not one line"
    parser.add_argument("--debug", action="store_true", help=debug)
    # --debug after the command too; SUPPRESS, so the command's parser leaves a --debug given before it
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func, summary: str, description: str | None = None, **kwargs) -> argparse.ArgumentParser:
        description = description or summary[0].upper() + summary[1:]
        p = sub.add_parser(name, help=summary, description=description, parents=[common], formatter_class=formatter,
                           **kwargs)
        p.set_defaults(func=func)
        return p

    p = command("info", cmd_info, "architecture and the neuron sites a user can target")
    p.add_argument("model", nargs="?", default="smollm2", metavar="MODEL",
                   help="embedded name, local checkpoint folder or hub name")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--dtype", default="float32", choices=DTYPES, help="parameter dtype")
    threads_arg(p)

    p = command("ppl", cmd_ppl, "next-token accuracy and perplexity on corpora")
    model_args(p)
    p.add_argument("--corpora", default="prose,python,code", metavar="C1,C2",
                   help="comma-separated corpora: prose, python, code, a path or hf:NAME")
    p.add_argument("--tokens", type=int, default=4096, help="evaluation tokens per corpus")
    p.add_argument("--seed", type=int, default=0, help="seeds which windows are drawn")

    _prune_args(command("prune", cmd_prune, "selective pruning with a random baseline"), {}, "runs/prune")
    _prune_args(command("demo", cmd_demo, "the main job: a short selective-pruning run next to random pruning"),
                DEMO, "runs/demo", resume_flag=False)

    _subnet_args(command(
        "subnet", cmd_subnet, "find a knowledge-critical subnetwork for a knowledge-graph target",
        usage="%(prog)s [--target TARGET] [--preset NAME] [--out FOLDER] [--resume] [FLAG ...]",
        description="Find a knowledge-critical subnetwork: a mask whose removal erases the target's facts and keeps "
                    "other facts and text. A setting's flag lays over --preset (left out, the preset's value "
                    "stands); the defaults shown are those of preset 'default'."))

    _duel_args(command(
        "duel", cmd_duel, "every method on every task: the methods x tasks table and figure",
        usage="%(prog)s [--target TARGET] [--out FOLDER] [--resume] [FLAG ...]",
        description="Selective pruning, a learned mask and greedy selection (and random masks of each size) on "
                    "the knowledge task (forget a target's facts) and the corpus task (forget one corpus, retain "
                    "another), every mask evaluated alike; writes table.md and duel.html into --out."))

    p = command("relearn", cmd_relearn, "fine-tune with a finished run's removal held in place: does it come back?")
    p.add_argument("run_dir", metavar="RUN_DIR",
                   help="a finished 'circuitcut prune' or 'circuitcut subnet' run folder")
    model_args(p)
    p.add_argument("--steps", type=int, default=32, help="fine-tuning steps per curve")
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate")
    p.add_argument("--tokens", type=int, default=None,
                   help="pool of fine-tuning tokens (prune runs; default: what the steps use, no repeats)")
    p.add_argument("--batch-size", type=int, default=4, help="windows or facts per step")
    p.add_argument("--eval-tokens", type=int, default=2048, help="tokens of each evaluation split (prune runs)")
    p.add_argument("--hold", default="hooks", choices=["hooks", "surgery"], help="how removed units stay removed")
    p.add_argument("--train", default="all", choices=["all", "mlp"], help="weights fine-tuned")
    p.add_argument("--step", type=int, default=None, help="pruning step (default: best selectivity)")
    p.add_argument("--corpus", default=None, help="fine-tuning corpus of prune runs (default: the forget corpus)")
    p.add_argument("--facts", type=int, default=40, help="family facts to fine-tune on (subnet runs)")
    p.add_argument("--sibling", default=None, metavar="TARGET",
                   help="sibling family of subnet runs, e.g. isa:plant.n.02")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the windows or facts, the random removals and the batches")

    atlas_args(command("atlas", None, "an atlas of subnetworks across WordNet families: build, pack, compare, "
                                      "verify, targets"), formatter, common)

    p = command("figures", cmd_figures, "regenerate the figures from real runs on the embedded model")
    p.add_argument("--out", default="figures", metavar="FOLDER", help="where the figures go")
    p.add_argument("--budget", default="full", choices=["full", "small"], help="small: minutes; numbers mean nothing")
    p.add_argument("--runs-dir", metavar="FOLDER",
                   help="where missing runs are made and kept (default: the circuitcut cache)")
    p.add_argument("--pruning-run", metavar="FOLDER",
                   help="a finished pruning run folder (feed-forward sites) to draw from")
    p.add_argument("--subnetwork-run", action="append", default=[], metavar="LABEL=FOLDER",
                   help="a finished subnetwork result folder; repeat for overlaps (the first is shown in detail)")
    p.add_argument("--no-png", action="store_true", help="HTML only (PNG export needs chromium)")
    p.add_argument("--only", default="", metavar="NAME,...",
                   help="redraw only these figures (e.g. importance_scatter), keeping the others' captions")
    threads_arg(p)
    _name_metavars(parser)
    return parser


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each command's parser, by name."""
    return next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def every_command(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every command's parser, a command's own commands after it (``atlas``, ``atlas build`` ...), by name."""
    out = {}
    for name, p in commands(parser).items():
        out[prefix + name] = p
        if any(isinstance(a, argparse._SubParsersAction) for a in p._actions):
            out |= every_command(p, f"{prefix}{name} ")
    return out


def _name_metavars(parser: argparse.ArgumentParser) -> None:
    """``--steps N`` where argparse would write ``--steps STEPS`` (what a flag takes, not its name again)."""
    from circuitcut.config_args import TYPE_METAVARS

    for p in (parser, *every_command(parser).values()):
        for action in p._actions:
            if action.metavar is None and action.type in TYPE_METAVARS:
                action.metavar = TYPE_METAVARS[action.type]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from circuitcut import distributed, threads

    # Under torchrun every rank joins the group and takes its device; only rank 0 prints.
    if hasattr(args, "device"):
        args.device = distributed.setup(args.device)
    quiet = contextlib.redirect_stdout(io.StringIO()) if not distributed.is_main_process() else contextlib.nullcontext()
    try:
        with quiet:
            threads.set_threads(getattr(args, "threads", None))
            status = args.func(args)  # a command that checks something returns 1 when the check fails
    except (ValueError, FileExistsError, RuntimeError) as err:
        if args.debug:
            raise
        # Our errors name the problem and the fix; a traceback would bury that (--debug shows it).
        print(f"circuitcut {args.command}: error: {err}", file=sys.stderr)
        return 2
    finally:
        distributed.teardown()
    return status or 0
