"""Regenerate the documentation figures (PNG + HTML) from runs on the embedded model.

    python scripts/make_figures.py                       # run (or reuse) the full-budget runs
    python scripts/make_figures.py --budget small        # minutes; numbers mean nothing
    python scripts/make_figures.py --pruning-run runs/mlp --subnetwork-run animal=runs/animal \\
        --subnetwork-run fruit=runs/fruit                # draw from finished run folders
"""

import argparse

from circuitcut.plots import make_figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="figures", help="folder for the PNG and HTML files (default: figures)")
    parser.add_argument("--budget", choices=("full", "small"), default="full")
    parser.add_argument("--runs-dir", help="where missing runs are made and kept (default: the circuitcut cache)")
    parser.add_argument("--pruning-run", help="a finished pruning run folder (feed-forward sites) to draw from")
    parser.add_argument("--subnetwork-run", action="append", default=[], metavar="LABEL=FOLDER",
                        help="a finished subnetwork result folder; repeat for overlaps (the first is shown in detail)")
    parser.add_argument("--no-png", action="store_true", help="HTML only (no Chromium needed)")
    args = parser.parse_args()
    runs = dict(item.split("=", 1) for item in args.subnetwork_run) or None
    make_figures(args.out, args.budget, runs_dir=args.runs_dir, pruning_run=args.pruning_run,
                 subnetwork_runs=runs, png=not args.no_png)


if __name__ == "__main__":
    main()
