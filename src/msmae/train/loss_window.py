"""Per-step training losses kept on the device and read only when they are logged.

Reading a loss every step (``float(all_reduce_mean(loss))``) stalls the host until the GPU has finished the
step and adds an all-reduce per step. :class:`LossWindow` writes each step's loss into a ring of the last
``size`` steps on the device (no synchronisation); :meth:`LossWindow.read` all-reduces the ring once and
returns the per-step means over all ranks, the same numbers a per-step all-reduce would have given.
"""

from __future__ import annotations

import numpy as np
import torch


class LossWindow:
    def __init__(self, size: int, device: torch.device):
        self.size = max(1, int(size))
        self.ring = torch.zeros(self.size, dtype=torch.float32, device=device)
        self.count = 0                      # steps added so far

    def add(self, loss: torch.Tensor) -> None:
        """Record one step's loss (a 0-d tensor on the device; no host synchronisation)."""
        self.ring[self.count % self.size] = loss.detach().float()
        self.count += 1

    def read(self, info) -> np.ndarray:
        """The last ``min(count, size)`` steps' losses, each the mean over all ranks, oldest first (float64)."""
        from msmae.train.distributed import all_reduce_mean

        values = all_reduce_mean(self.ring, info).cpu().numpy().astype(np.float64)
        n = min(self.count, self.size)
        return np.roll(values, -(self.count % self.size))[self.size - n:] if n else values[:0]
