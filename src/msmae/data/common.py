"""What the ISLR and SLT dataset adapters share: finding a pose file by name, and the set of usable
examples with every exclusion and its reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

POSE_SUFFIXES = (".pose", ".npz", ".npy", ".parquet")


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

    def summary(self) -> str:
        kept = ", ".join(f"{k} {v}" for k, v in self.counts().items()) or "none"
        text = f"{self.dataset}: {self._describe()}{len(self.examples)} examples ({kept})"
        if self.excluded:
            reasons = ", ".join(f"{v} {k}" for k, v in self.excluded_counts().items())
            first = "; ".join(f"{i}: {r}" for i, r in self.excluded[:3])
            text += f"; excluded {len(self.excluded)} ({reasons}; e.g. {first})"
        return text
