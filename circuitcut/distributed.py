"""Data-parallel runs on ``torch.distributed``: every rank takes its share of the tokens.

Launch any circuitcut script with ``torchrun`` (gloo on CPU, NCCL on GPUs)::

    torchrun --nproc-per-node 2 my_script.py          # or: torchrun ... -m circuitcut prune ...

and call :func:`setup` first; it joins the process group that ``torchrun`` describes in the
environment and returns the device this rank should load its model on. Then

* :func:`~circuitcut.stats.collect_stats` and :func:`~circuitcut.evaluate.evaluate_tokens` with
  ``across_ranks=True`` shard the windows across ranks (:func:`shard`) and reduce the mergeable
  results (sums and counts), so every rank returns the statistics / metrics of all the tokens;
* :func:`~circuitcut.pruning.prune` does that on its own whenever a process group is up; only the
  main process (rank 0) writes the run folder and shows progress;
* mask training calls :func:`all_reduce_grads` between ``backward()`` and ``optimizer.step()``,
  on the mask scores, and every rank takes the same optimizer step.

Outside ``torchrun`` (no process group, or a group of one) every function here is a no-op that
returns its input, so the same code runs single-process.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor

from circuitcut.models import resolve_device


def is_distributed() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on rank 0, and in every single-process run: the process that writes files and shows progress."""
    return rank() == 0


def setup(device: str | torch.device | None = None, backend: str | None = None, timeout_s: float = 1800) -> torch.device:
    """Join the process group described by ``torchrun``'s environment; return this rank's device.

    Without ``WORLD_SIZE`` > 1 in the environment (a plain ``python`` run) nothing is initialised
    and the device is :func:`~circuitcut.models.resolve_device`'s. With CUDA, rank ``LOCAL_RANK``
    takes GPU ``LOCAL_RANK`` and the backend defaults to NCCL; otherwise gloo.
    """
    device = resolve_device(device)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = backend or ("nccl" if device.type == "cuda" else "gloo")
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return device


def teardown() -> None:
    """Leave the process group (call at the end of a ``torchrun`` script)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def shard(tokens: Tensor) -> Tensor:
    """This rank's contiguous share of the windows (first dimension); sizes differ by at most one."""
    if not is_distributed():
        return tokens
    return torch.tensor_split(tokens, world_size())[rank()]


def _comm_device(tensor: Tensor) -> torch.device:
    """NCCL reduces only CUDA tensors; gloo takes CPU tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_(tensors: list[Tensor], op=None) -> list[Tensor]:
    """Sum (or ``op``) each tensor across ranks, in place, with one collective for all of them."""
    if not is_distributed() or not tensors:
        return tensors
    dtype = tensors[0].dtype
    if any(t.dtype != dtype for t in tensors):
        raise ValueError("all_reduce_ takes tensors of one dtype.")
    flat = torch.cat([t.detach().reshape(-1) for t in tensors]).to(_comm_device(tensors[0]))
    dist.all_reduce(flat, op=op or dist.ReduceOp.SUM)
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()
    return tensors


def broadcast_(tensors: list[Tensor], src: int = 0) -> list[Tensor]:
    """Overwrite each tensor with rank ``src``'s, in place (so every rank acts on the same values)."""
    if not is_distributed():
        return tensors
    for t in tensors:
        buf = t.detach().to(_comm_device(t)).contiguous()
        dist.broadcast(buf, src=src)
        t.copy_(buf)
    return tensors


def all_reduce_grads(params: Iterable[Tensor], weight: float | None = None) -> None:
    """Average the ``.grad`` of ``params`` across ranks, in place (one collective).

    Call after ``backward()`` and before the optimizer step. Each rank's loss should be a mean over
    its own tokens; with shards of unequal size pass ``weight`` = this rank's token count, and the
    result is the token-weighted mean, i.e. the gradient of the mean over all ranks' tokens.
    Parameters without a gradient on this rank count as zero.
    """
    params = [p for p in params if p.requires_grad]
    if not is_distributed() or not params:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    dtype = torch.promote_types(grads[0].dtype, torch.float32)
    flat = torch.cat([g.reshape(-1).to(dtype) for g in grads])
    w = 1.0 if weight is None else float(weight)
    total = torch.tensor([w], dtype=dtype, device=flat.device)
    flat = torch.cat([flat * w, total])
    all_reduce_([flat])
    flat = flat[:-1] / flat[-1]
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()
