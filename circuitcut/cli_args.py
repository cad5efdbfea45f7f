"""Flags several commands share (the model, its device and dtype, threads) and the model they name.

Separate from :mod:`circuitcut.cli` so that the command groups in their own modules (:mod:`circuitcut.cli_atlas`)
take them without importing the main parser.
"""

from __future__ import annotations

DTYPES = ("float32", "bfloat16", "float16")
"""Parameter dtypes by their names in torch (``torch.bfloat16``), looked up when the model loads."""


def model_args(p) -> None:
    p.add_argument("--model", default="smollm2", help="embedded name, local checkpoint folder or hub name")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    p.add_argument("--dtype", default="float32", choices=DTYPES, help="parameter dtype")
    threads_arg(p)


def threads_arg(p) -> None:
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: the cores not busy with other jobs, at least 1)")


def load_model_of(args):
    import torch

    from circuitcut.models import load_model

    return load_model(args.model, device=args.device, dtype=getattr(torch, args.dtype))
