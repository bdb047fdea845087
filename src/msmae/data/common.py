"""What the ISLR and SLT dataset adapters share: reading annotation tables, finding a pose file by name,
and the set of usable examples with every exclusion and its reason."""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

POSE_SUFFIXES = (".pose", ".npz", ".npy", ".parquet")

log = logging.getLogger(__name__)


def epoch_and_index(key, epoch: int) -> tuple[int, int]:
    """A dataset key -> (epoch, item index). The fine-tuning loop's sampler passes ``(epoch, index)``, so
    that each epoch's augmentation reaches DataLoader workers (a persistent worker keeps the copy of the
    dataset it started with, and never sees ``set_epoch``); a plain index uses ``epoch`` (the dataset's own)."""
    if isinstance(key, (tuple, list)):
        return int(key[0]), int(key[1])
    return int(epoch), int(key)


def find_pose_file(poses: Path, name: str, split: str | None = None) -> Path | None:
    """``poses/<name><suffix>`` or ``poses/<split>/<name><suffix>`` for the first suffix that exists."""
    for d in [poses] + ([poses / split] if split else []):
        for suffix in POSE_SUFFIXES:
            p = d / f"{name}{suffix}"
            if p.is_file():
                return p
    return None


@dataclass
class ExampleSet:
    """Usable examples (each with a ``split``) plus what was excluded and why (``(id, reason)`` pairs)."""

    dataset: str
    examples: list = field(default_factory=list)
    excluded: list[tuple[str, str]] = field(default_factory=list)

    def split(self, name: str) -> list:
        return [e for e in self.examples if e.split == name]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.examples:
            out[e.split] = out.get(e.split, 0) + 1
        return out

    def excluded_counts(self) -> dict[str, int]:
        """Reason kind (text before the first ':') -> number of excluded examples."""
        out: dict[str, int] = {}
        for _, reason in self.excluded:
            kind = reason.split(":")[0]
            out[kind] = out.get(kind, 0) + 1
        return out

    def _describe(self) -> str:
        return ""

    def overlaps(self) -> dict[str, list[str]]:
        """``duplicates``: ids of examples repeating an earlier one of the same split (same pose file and
        time range); ``train_and_eval``: ids of evaluation examples (val/dev/test) whose clip is also a
        training example."""
        def clip(e) -> tuple:
            return str(e.pose_path), getattr(e, "start", None), getattr(e, "end", None)

        seen: set[tuple] = set()
        dup = []
        for e in self.examples:
            key = (clip(e), e.split)
            if key in seen:
                dup.append(e.id)
            seen.add(key)
        train = {clip(e) for e in self.examples if e.split == "train"}
        both = [e.id for e in self.examples if e.split != "train" and clip(e) in train]
        return {"duplicates": dup, "train_and_eval": both}

    def warn_overlaps(self) -> dict[str, list[str]]:
        """Log a warning with counts for repeated rows and for clips both in training and evaluation."""
        o = self.overlaps()
        if o["duplicates"]:
            log.warning("%s: %d duplicate example(s) (the same pose file and time range twice in one split; "
                        "e.g. %s): they count twice in training or scoring", self.dataset, len(o["duplicates"]),
                        ", ".join(o["duplicates"][:3]))
        if o["train_and_eval"]:
            log.warning("%s: %d evaluation example(s) are also training examples (same pose file and time range; "
                        "e.g. %s): their scores measure memory, not generalisation", self.dataset,
                        len(o["train_and_eval"]), ", ".join(o["train_and_eval"][:3]))
        return o

    def summary(self) -> str:
        kept = ", ".join(f"{k} {v}" for k, v in self.counts().items()) or "none"
        text = f"{self.dataset}: {self._describe()}{len(self.examples)} examples ({kept})"
        if self.excluded:
            reasons = ", ".join(f"{v} {k}" for k, v in self.excluded_counts().items())
            first = "; ".join(f"{i}: {r}" for i, r in self.excluded[:3])
            text += f"; excluded {len(self.excluded)} ({reasons}; e.g. {first})"
        return text


def read_table(path: Path, *, error: type[Exception], delimiters: tuple[str, ...] = (",", "\t"),
               delimiter: str | None = None) -> list[dict[str, str]]:
    """Rows of a delimited text file with a header. The delimiter is the one of ``delimiters`` the header
    holds most often (ties: the first) unless given; ``|`` tables are read without quoting (PHOENIX and
    CSL-Daily files), others with CSV quoting. Every problem is an ``error`` naming the file."""
    if not path.is_file():
        raise error(f"annotation file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise error(f"{path}: not UTF-8 text ({e.reason})") from None
    header = text.split("\n", 1)[0]
    if not header.strip():
        raise error(f"{path}: empty file (expected a header line)")
    if delimiter is None:
        delimiter = max(delimiters, key=header.count)
    quoting = csv.QUOTE_NONE if delimiter == "|" else csv.QUOTE_MINIMAL
    rows = []
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    for i, row in enumerate(reader, start=2):
        if None in row:
            raise error(f"{path}, line {i}: more fields than the header has ({header.strip()!r})")
        rows.append({k.strip(): (v if v is not None else "") for k, v in row.items()})
    return rows


def require_columns(path: Path, rows: list[dict], columns: Iterable[str], *, error: type[Exception]) -> None:
    have = set(rows[0]) if rows else set()
    missing = [c for c in columns if c not in have]
    if rows and missing:
        raise error(f"{path}: missing column(s) {missing}; found {sorted(have)}")


def load_in_workers(load: Callable, jobs: Sequence, *, workers: int, min_parallel: int, progress: bool, desc: str,
                    unit: str = "clip") -> list:
    """``[load(job) for job in jobs]`` with a progress bar, in ``workers`` processes when there are at least
    ``min_parallel`` jobs (the workers exit if this process is killed); results in the order of ``jobs``."""
    import os
    from concurrent.futures import ProcessPoolExecutor

    from msmae.progress import progress_bar

    from msmae.utils import exit_with_parent

    results = []
    with progress_bar(total=len(jobs), desc=desc, unit=unit, disable=not progress) as bar:
        if workers <= 1 or len(jobs) < min_parallel:
            for job in jobs:
                results.append(load(job))
                bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=workers, initializer=exit_with_parent,
                                     initargs=(os.getpid(),)) as pool:
                for r in pool.map(load, jobs, chunksize=16):
                    results.append(r)
                    bar.update(1)
    return results
