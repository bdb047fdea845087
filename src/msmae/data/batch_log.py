"""``batches.jsonl``: what every rank trained on at every pre-training step (``train.record_batches``).

One JSON object per line, one line per rank per optimiser step, in step then rank order::

    {"step": 1, "rank": 0, "videos": [12, 7, 40, 3], "starts": [118, 0, 52, 9]}

``step`` counts optimiser steps from 1 (as ``log.csv``), ``videos`` are corpus indices (rows of the corpus's
``index.csv``, 0-based) of the step's windows on that rank, all micro-batches in order, ``starts`` their first
stored frame. Rank 0 writes every rank's rows from :class:`~msmae.data.sampling.DrawPlan`, the same pure function
each rank draws its windows from, so recording needs no communication. Lines are appended and flushed step by
step; a resumed run first keeps only the complete rows up to the step it resumes from, so the file never holds
a step twice or misses one that was trained.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from msmae.data.sampling import DrawPlan

FILE = "batches.jsonl"


def _kept_rows(path: Path, upto: int):
    """Complete rows of an earlier ``batches.jsonl`` with step <= ``upto`` (a torn last line is dropped), one
    at a time (the file of a long run is large)."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if line.endswith("\n") and isinstance(row, dict) and int(row.get("step", upto + 1)) <= upto:
                yield line


class BatchLog:
    """Appends each step's rows to ``run / batches.jsonl`` (see the module docstring).

    ``per_step``: positions each rank draws per optimiser step (micro-batch x gradient accumulation);
    ``start_step``: the step the run starts from (0, or the checkpoint it resumes from)."""

    def __init__(self, run: str | Path, plan: DrawPlan, *, per_step: int, start_step: int = 0):
        from msmae.utils import atomic_path

        self.path = Path(run) / FILE
        self.plan, self.per_step = plan, per_step
        with atomic_path(self.path) as tmp, open(tmp, "w", encoding="utf-8") as out:
            if start_step and self.path.exists():
                out.writelines(_kept_rows(self.path, start_step))
        self._f = open(self.path, "a", encoding="utf-8")

    def rows(self, step: int) -> list[dict]:
        """The rows of optimiser step ``step`` (1-based), one per rank."""
        ks = np.arange((step - 1) * self.per_step, step * self.per_step)
        out = []
        for rank in range(self.plan.world):
            videos, starts = self.plan.locate_many(ks, rank)
            out.append({"step": step, "rank": rank, "videos": videos.tolist(), "starts": starts.tolist()})
        return out

    def write(self, step: int) -> None:
        self._f.write("".join(json.dumps(r, separators=(", ", ": ")) + "\n" for r in self.rows(step)))
        self._f.flush()

    def close(self) -> None:
        self._f.close()
