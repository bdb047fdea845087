"""``msmae pack``: many pose files -> one packed corpus (see :mod:`msmae.corpus.store`).

Re-running on the same inputs adds only files that are new or changed (by path, size and
modification time); a file that cannot be read is reported and skipped, the rest is packed.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from msmae.corpus.store import (FORMAT_VERSION, INDEX_COLUMNS, CorpusError, Entry, read_index, read_meta,
                                shard_paths)
from msmae.layout import CANONICAL
from msmae.progress import progress_bar
from msmae.utils import atomic_path, atomic_write_json, atomic_write_text, exit_with_parent

log = logging.getLogger(__name__)

NO_DETECTION = "no keypoint detected in any frame"
DEFAULT_SHARD_FRAMES = 200_000  # ~128 MB of float16 coordinates per shard for the 160-point layout


@dataclass
class PackSummary:
    added: list[str] = field(default_factory=list)            # sources packed in this run
    unchanged: list[str] = field(default_factory=list)        # already in the corpus, skipped
    failed: list[dict] = field(default_factory=list)          # [{path, reason}]
    no_detection: list[str] = field(default_factory=list)     # readable, but no keypoint in any frame: not packed
    total_videos: int = 0
    total_frames: int = 0

    def to_dict(self) -> dict:
        return {"added": len(self.added), "unchanged": len(self.unchanged), "failed": self.failed,
                "no_detection": self.no_detection,
                "total_videos": self.total_videos, "total_frames": self.total_frames}


def _prepare(seq, normalize: bool) -> tuple[dict | None, str | None]:
    """A sequence -> arrays ready for a shard (normalised, float16, packed bits), or an error message."""
    if seq.num_frames == 0:
        return None, "zero frames"
    if not seq.present.any():
        return None, NO_DETECTION
    if normalize:
        from msmae.poses.normalize import normalize as _normalize

        seq = _normalize(seq)
    if seq.layout != CANONICAL:
        raise CorpusError(f"{seq.source}: corpora hold the canonical layout, got {seq.layout.spec}")
    coords = seq.coords.astype(np.float16)
    if not np.isfinite(coords[seq.present]).all():
        return None, "coordinates overflow float16 after normalisation"
    return {"coords": coords, "present": np.packbits(seq.present, axis=1), "fps": float(seq.fps),
            "width": seq.width, "height": seq.height, "frame_stride": int(seq.meta.get("frame_stride", 1))}, None


def _load_one(path: str, normalize: bool) -> tuple[str, dict | None, str | None]:
    """Worker: read + normalise one file -> arrays ready for a shard, or an error message."""
    from msmae.poses.readers import read_sequence

    try:
        arrays, err = _prepare(read_sequence(path), normalize)
        if arrays is not None:
            st = os.stat(path)
            arrays.update(size=st.st_size, mtime=st.st_mtime)
        return path, arrays, err
    except Exception as e:  # report and go on: one bad file must not stop a corpus
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return path, None, f"{type(e).__name__}: {msg}"


def _write_index(root: Path, entries: list[Entry]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=INDEX_COLUMNS, lineterminator="\n")
    w.writeheader()
    for e in entries:
        w.writerow(e.to_row())
    atomic_write_text(root / "index.csv", buf.getvalue())


def _write_meta(root: Path, entries: list[Entry], normalize: bool) -> None:
    atomic_write_json(root / "corpus.json", {
        "format": FORMAT_VERSION, "kind": "msmae-corpus", "layout": CANONICAL.spec,
        "num_points": CANONICAL.num_points, "normalized": normalize,
        "normalization": "mid-shoulder centre, shoulder-width scale (per video)" if normalize else "none",
        "videos": len(entries), "frames": int(sum(e.length for e in entries)),
    })


def _report(summary: PackSummary, path: str, err: str) -> None:
    log.warning("skipped %s: %s", path, err)
    if err == NO_DETECTION:
        summary.no_detection.append(path)
    else:
        summary.failed.append({"path": path, "reason": err})


def refuse_foreign_folder(root: Path) -> None:
    """A corpus is written only into a new or empty folder, or into an msmae corpus (``corpus.json``): never
    over the files of a folder that is something else."""
    if root.exists() and not root.is_dir():
        raise CorpusError(f"{root} is a file, not a corpus folder")
    if root.is_dir() and not (root / "corpus.json").exists():
        # hidden temporary files of a pack killed before its first shard do not count
        found = sorted(p.name for p in root.iterdir() if not (p.name.startswith(".") and p.name.endswith(".tmp")))
        if found:
            raise CorpusError(f"{root} is not empty and is not an msmae corpus (no corpus.json; it holds "
                              f"{', '.join(found[:5])}{', ...' if len(found) > 5 else ''}); choose a new or empty "
                              f"folder for --out")


def _unique_id(stem: str, taken: set[str]) -> str:
    if stem not in taken:
        return stem
    k = 2
    while f"{stem}-{k}" in taken:
        k += 1
    return f"{stem}-{k}"


def _imap(paths: list[str], workers: int, normalize: bool) -> Iterator[tuple[str, dict | None, str | None]]:
    if workers <= 1 or len(paths) <= 1:
        for p in paths:
            yield _load_one(p, normalize)
        return
    # At most 2 x workers files in flight, yielded in input order: memory stays bounded by a few
    # sequences however large the corpus (Executor.map would submit every file at once).
    with ProcessPoolExecutor(max_workers=workers, initializer=exit_with_parent, initargs=(os.getpid(),)) as pool:
        pending: deque = deque()
        for p in paths:
            pending.append(pool.submit(_load_one, p, normalize))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class CorpusWriter:
    """Appends videos to a corpus: buffers frames, writes a shard when it is full, and rewrites the
    index after each shard (atomically), so that a crash loses only the unfinished shard."""

    def __init__(self, root: str | Path, *, normalize: bool = True, shard_frames: int = DEFAULT_SHARD_FRAMES):
        self.root = Path(root)
        refuse_foreign_folder(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.normalize, self.shard_frames = normalize, shard_frames
        self.entries: list[Entry] = []
        if (self.root / "corpus.json").exists():
            meta = read_meta(self.root)
            if bool(meta.get("normalized", True)) != normalize:
                raise CorpusError(f"{self.root}: was packed with normalized={meta.get('normalized')}; "
                                  f"cannot add files with normalized={normalize}")
            self.entries = read_index(self.root)
        # Shards never referenced by the index (left by a crash) are simply overwritten.
        self.shard = max((e.shard for e in self.entries), default=-1) + 1
        self.taken = {e.id for e in self.entries}
        self._c: list[np.ndarray] = []
        self._p: list[np.ndarray] = []
        self._pending: list[Entry] = []
        self._offset = 0

    def drop_sources(self, sources: set[str]) -> None:
        """Forget entries of these sources (their frames stay, unreferenced, in old shards)."""
        if sources:
            self.entries = [e for e in self.entries if e.source not in sources]

    def add(self, source: str, arrays: dict, *, stem: str) -> Entry:
        n = int(arrays["coords"].shape[0])
        eid = _unique_id(stem, self.taken)
        self.taken.add(eid)
        e = Entry(id=eid, source=source, shard=self.shard, offset=self._offset, length=n, fps=arrays["fps"],
                  width=arrays["width"], height=arrays["height"], source_size=int(arrays.get("size", 0)),
                  source_mtime=float(arrays.get("mtime", 0.0)), frame_stride=int(arrays.get("frame_stride", 1)))
        self._pending.append(e)
        self._c.append(arrays["coords"])
        self._p.append(arrays["present"])
        self._offset += n
        if self._offset >= self.shard_frames:
            self.flush()
        return e

    def flush(self) -> None:
        if not self._pending:
            return
        cpath, ppath = shard_paths(self.root, self.shard)
        for path, arrays in ((cpath, self._c), (ppath, self._p)):
            with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                np.save(fh, np.concatenate(arrays))  # a file handle: np.save adds no suffix
        self.entries.extend(self._pending)
        self.write_index()
        self.shard += 1
        self._offset, self._c, self._p, self._pending = 0, [], [], []

    def write_index(self) -> None:
        _write_index(self.root, self.entries)
        _write_meta(self.root, self.entries, self.normalize)

    def close(self) -> None:
        self.flush()
        self.write_index()


def pack_sequences(seqs: Iterable, out: str | Path, *, normalize: bool = True,
                   shard_frames: int = DEFAULT_SHARD_FRAMES) -> PackSummary:
    """Pack in-memory :class:`~msmae.poses.PoseSequence` objects (e.g. the synthetic signer's) into a corpus.
    Each sequence's ``source`` (or its position) names it."""
    w = CorpusWriter(out, normalize=normalize, shard_frames=shard_frames)
    summary = PackSummary()
    for i, seq in enumerate(seqs):
        name = seq.source or f"sequence-{i}"
        arrays, err = _prepare(seq, normalize)
        if err is not None:
            _report(summary, name, err)
            continue
        w.add(name, arrays, stem=Path(name.split(":")[-1]).stem or f"sequence-{i}")
        summary.added.append(name)
    w.close()
    summary.total_videos = len(w.entries)
    summary.total_frames = int(sum(e.length for e in w.entries))
    return summary


def pack_corpus(inputs: Iterable[str | Path], out: str | Path, *, workers: int = 1, normalize: bool = True,
                shard_frames: int = DEFAULT_SHARD_FRAMES, progress: bool = True) -> PackSummary:
    """Pack every readable pose file under ``inputs`` into the corpus at ``out`` (created or extended)."""
    from msmae.poses.readers import find_pose_files

    root = Path(out).resolve()
    # Never read the corpus's own shards (.npy) as inputs when the corpus lies inside an input folder.
    files = [str(p.resolve()) for p in find_pose_files(list(inputs)) if root not in p.resolve().parents]
    if not files:
        raise CorpusError("no readable pose files found in the inputs "
                          "(.pose, .parquet, .npy, .npz, folders or list files)")
    w = CorpusWriter(out, normalize=normalize, shard_frames=shard_frames)
    known = {e.source: e for e in w.entries}
    summary = PackSummary()
    todo = []
    for f in dict.fromkeys(files):
        st = os.stat(f)
        e = known.get(f)
        if e is not None and e.source_size == st.st_size and abs(e.source_mtime - st.st_mtime) < 1e-3:
            summary.unchanged.append(f)
        else:
            todo.append(f)
    w.drop_sources({f for f in todo if f in known})
    bar = progress_bar(total=len(todo), desc="pack", unit="file", disable=not progress)
    for path, arrays, err in _imap(todo, workers, normalize):
        bar.update(1)
        if err is not None:
            _report(summary, path, err)
            continue
        w.add(path, arrays, stem=Path(path).stem)
        summary.added.append(path)
    bar.close()
    w.close()
    summary.total_videos = len(w.entries)
    summary.total_frames = int(sum(e.length for e in w.entries))
    return summary
