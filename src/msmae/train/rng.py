"""Random-number state of a training process: seeding per rank, and saving / restoring every generator
training draws from, so that ``--resume`` continues exactly.

Training draws from torch's CPU generator and each CUDA device's (dropout, the model's own sampling) and
from NumPy's and Python's global generators (code that uses them): :func:`rng_state` saves them all, as
tensors, numbers and lists only, so that ``torch.load(weights_only=True)`` reads them. The DataLoader
derives its worker processes' seeds from its own generator, reseeded at every epoch from (seed, rank,
epoch) (:func:`epoch_loader_seed`), so nothing of it needs saving and creating an epoch's iterator never
draws from the global generator that dropout uses. msmae's datasets draw their augmentation from (seed,
epoch, index) alone, so what a worker reads does not depend on which worker reads it or on its seed.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_rank(seed: int, rank: int) -> None:
    """Seed torch (CPU and every CUDA device), NumPy and Python with ``seed + rank``: every process of a
    ``torchrun`` job drops different units, a single process uses ``seed``."""
    s = int(seed) + int(rank)
    torch.manual_seed(s)  # also seeds every CUDA device
    np.random.seed(s % 2**32)
    random.seed(s)


def epoch_loader_seed(seed: int, rank: int, epoch: int) -> int:
    """The seed of the DataLoader's generator for ``epoch`` on ``rank`` (its worker seeds derive from it)."""
    return (int(seed) * 1_000_003 + int(rank)) * 100_003 + int(epoch)


def rng_state() -> dict:
    """Every generator's state as plain data (see the module docstring)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
             "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)},
             "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64),
                        "gauss": gauss_next}}
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` saved (CUDA states only for the devices present)."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        cuda = state["cuda"][:torch.cuda.device_count()]
        for i, s in enumerate(cuda):
            torch.cuda.set_rng_state(s, i)
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
