"""Process-group set-up for ``torchrun`` (NCCL on GPUs, gloo on CPU), device choice and autocast.

Run a command under ``torchrun --nproc_per_node N [--nnodes M --node_rank R --rdzv_endpoint HOST:PORT]``;
without torchrun everything runs in one process.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0              # global rank of this process
    world_size: int = 1        # number of processes over all machines
    local_rank: int = 0        # rank on this machine (GPU index)
    device: torch.device = torch.device("cpu")
    local_world_size: int = 1  # processes on this machine (they share its host memory)

    @property
    def is_main(self) -> bool:
        """Only the main process writes files (checkpoints, logs, metrics)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def check_device(name: str) -> torch.device:
    """A device name other than ``auto`` (``cpu``, ``cuda``, ``cuda:N``, ``mps``) checked against this machine;
    a :class:`ValueError` of one line when it is not a device or not here (the caller names the setting)."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError("not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"CUDA is not available on this machine (torch {torch.__version__}"
                             f"{', built without CUDA' if torch.version.cuda is None else ''})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"this machine has {torch.cuda.device_count()} GPU(s), "
                             f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        return device
    if device.type == "mps" and torch.backends.mps.is_available():
        return device
    raise ValueError("not available on this machine; use auto, cpu, cuda or cuda:N")


def pick_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when available, else CPU; any other name is checked
    (:func:`check_device`: a one-line :class:`ValueError` naming ``train.device``)."""
    device = (device or "auto").strip().lower()
    if device == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        d = check_device(device)
    except ValueError as e:
        raise ValueError(f"train.device {device}: {e}") from None
    if d.type == "cuda" and d.index is None:
        d = torch.device(f"cuda:{local_rank}")
    return d


def init_distributed(device: str = "auto") -> DistInfo:
    """Initialise the default process group when launched by torchrun, else return a single-process info."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend=backend)
        log.info("process group: backend=%s rank=%d/%d local_rank=%d device=%s", backend, rank, world, local, dev)
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=dev,
                    local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of a tensor over all processes (identity without a process group)."""
    if not info.distributed:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / info.world_size


def all_reduce_sum(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if not info.distributed:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def all_gather_objects(obj, info: DistInfo) -> list:
    """Every process's ``obj`` (picklable), in rank order, on every process (``[obj]`` without a group)."""
    if not info.distributed:
        return [obj]
    out: list = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """``auto``: bf16 on a CUDA GPU with native bf16 (compute capability 8.0 or later: A100, H100, RTX 30xx and
    newer), fp32 elsewhere (V100 and T4 only emulate bf16, slowly; choose ``fp16`` there);
    ``bf16``: bf16 autocast (CUDA, or a CPU with bf16 support); ``fp16``: fp16 autocast, with the loss scaled
    by the training loops (:mod:`msmae.train.amp`; for GPUs without bf16 such as V100 or T4); ``fp32``: no
    autocast. Returns the autocast dtype or None."""
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0):
            return torch.bfloat16
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    raise ValueError(f"unknown precision {precision!r}; choose auto, fp32, bf16 or fp16")


def autocast(device: torch.device, dtype: torch.dtype | None):
    """An autocast context for ``dtype`` on ``device`` (a no-op context when dtype is None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
