"""Reading a packed corpus.

Layout of a corpus directory::

    corpus.json                      format version, layout, normalisation, totals
    index.csv                        one row per video: id, source, shard, offset, length, fps, width, height, ...
    shard_00000.coords.npy           float16 (F, K, 2): the frames of several videos, back to back
    shard_00000.present.npy          uint8  (F, ceil(K/8)): presence bits (np.packbits along K)

Shards are never modified after they are written; ``index.csv`` is rewritten atomically after each
shard, so a crash while packing loses only the unfinished shard.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from msmae.layout import Layout, get_layout
from msmae.poses.sequence import PoseSequence

FORMAT_VERSION = 1
INDEX_COLUMNS = ("id", "source", "shard", "offset", "length", "fps", "width", "height",
                 "source_size", "source_mtime", "frame_stride")
# Columns an older index may lack (read with their default): frame_stride = the extraction's frame
# stride (``msmae extract --frame-stride``; fps is then the source fps / frame_stride).
OPTIONAL_COLUMNS = frozenset({"frame_stride"})


class CorpusError(ValueError):
    """A corpus directory that cannot be read, with the reason."""


@dataclass(frozen=True)
class Entry:
    """One video of the corpus."""

    id: str
    source: str
    shard: int
    offset: int          # first frame inside the shard
    length: int          # number of frames
    fps: float
    width: int | None
    height: int | None
    source_size: int
    source_mtime: float
    frame_stride: int = 1  # keypoints of every n-th source frame (msmae extract --frame-stride)

    def to_row(self) -> dict:
        return {k: ("" if getattr(self, k) is None else getattr(self, k)) for k in INDEX_COLUMNS}

    @classmethod
    def from_row(cls, row: dict) -> "Entry":
        def opt_int(v: str) -> int | None:
            return int(v) if v not in ("", None) else None

        return cls(id=row["id"], source=row["source"], shard=int(row["shard"]), offset=int(row["offset"]),
                   length=int(row["length"]), fps=float(row["fps"]), width=opt_int(row["width"]),
                   height=opt_int(row["height"]), source_size=int(row["source_size"] or 0),
                   source_mtime=float(row["source_mtime"] or 0.0),
                   frame_stride=int(row.get("frame_stride") or 1))


def shard_paths(root: Path, shard: int) -> tuple[Path, Path]:
    return root / f"shard_{shard:05d}.coords.npy", root / f"shard_{shard:05d}.present.npy"


def read_index(root: Path) -> list[Entry]:
    f = root / "index.csv"
    if not f.is_file():
        return []
    with open(f, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = set(INDEX_COLUMNS) - OPTIONAL_COLUMNS - set(reader.fieldnames or ())
        if missing:
            raise CorpusError(f"{f}: not an msmae corpus index (missing columns {sorted(missing)})")
        from msmae.corpus.checks import entries_from_rows
        return entries_from_rows(f, reader)


def read_meta(root: Path) -> dict:
    f = root / "corpus.json"
    if not f.is_file():
        raise CorpusError(f"{root}: not an msmae corpus (no corpus.json); create one with `msmae pack`")
    from msmae.corpus.checks import read_meta_file
    meta = read_meta_file(f)
    if int(meta.get("format", 0)) > FORMAT_VERSION:
        raise CorpusError(f"{root}: written by a newer msmae (format {meta['format']})")
    return meta


class PackedCorpus:
    """Random access to the videos of a packed corpus through memory maps.

    Shards are opened lazily (in each DataLoader worker after it starts), so the resident memory
    is the pages actually touched, not the corpus size.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.meta = read_meta(self.root)
        self.entries = read_index(self.root)
        self.layout: Layout = get_layout(self.meta["layout"])
        self.num_points = self.layout.num_points
        from msmae.corpus.checks import validate_index
        validate_index(self.root, self.entries, self.num_points)  # offsets inside the shards (headers only)
        self._maps: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def __getstate__(self) -> dict:  # memory maps are reopened in each process
        state = dict(self.__dict__)
        state["_maps"] = {}
        return state

    @property
    def total_frames(self) -> int:
        return sum(e.length for e in self.entries)

    @property
    def normalized(self) -> bool:
        return bool(self.meta.get("normalized", False))

    def _shard(self, shard: int) -> tuple[np.ndarray, np.ndarray]:
        if shard not in self._maps:
            cpath, ppath = shard_paths(self.root, shard)
            try:
                coords = np.load(cpath, mmap_mode="r")
                present = np.load(ppath, mmap_mode="r")
            except (OSError, ValueError) as e:
                raise CorpusError(f"{self.root}: shard {shard} cannot be read ({e})") from None
            self._maps[shard] = (coords, present)
        return self._maps[shard]

    def frames(self, i: int, start: int = 0, stop: int | None = None, step: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Frames [start:stop:step] of video ``i``: coords float32 (n, K, 2), present bool (n, K)."""
        e = self.entries[i]
        stop = e.length if stop is None else min(stop, e.length)
        coords, bits = self._shard(e.shard)
        sl = slice(e.offset + start, e.offset + stop, step)
        c = np.asarray(coords[sl], dtype=np.float32)
        p = np.unpackbits(np.asarray(bits[sl]), axis=1, count=self.num_points).astype(bool)
        return c, p

    def sequence(self, i: int) -> PoseSequence:
        e = self.entries[i]
        c, p = self.frames(i)
        return PoseSequence(c, p, e.fps, self.layout, width=e.width, height=e.height, source=e.source,
                            meta={"corpus_id": e.id, "frame_stride": e.frame_stride})
