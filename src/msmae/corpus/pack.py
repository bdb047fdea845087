"""``msmae pack``: many pose files -> one packed corpus (see :mod:`msmae.corpus.store`).

Re-running on the same inputs adds only files that are new or changed (by path, size and
modification time); a file that cannot be read is reported and skipped, the rest is packed.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from msmae.corpus.store import (FORMAT_VERSION, INDEX_COLUMNS, CorpusError, Entry, read_index, read_meta,
                                shard_paths)
from msmae.layout import CANONICAL
from msmae.utils import atomic_path, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

DEFAULT_SHARD_FRAMES = 200_000  # ~128 MB of float16 coordinates per shard for the 160-point layout


@dataclass
class PackSummary:
    added: list[str] = field(default_factory=list)            # sources packed in this run
    unchanged: list[str] = field(default_factory=list)        # already in the corpus, skipped
    failed: list[dict] = field(default_factory=list)          # [{path, reason}]
    total_videos: int = 0
    total_frames: int = 0

    def to_dict(self) -> dict:
        return {"added": len(self.added), "unchanged": len(self.unchanged), "failed": self.failed,
                "total_videos": self.total_videos, "total_frames": self.total_frames}


def _load_one(path: str, normalize: bool) -> tuple[str, dict | None, str | None]:
    """Worker: read + normalise one file -> arrays ready for a shard, or an error message."""
    from msmae.poses.readers import read_sequence

    try:
        seq = read_sequence(path)
        if seq.num_frames == 0:
            return path, None, "zero frames"
        if normalize:
            from msmae.poses.normalize import normalize as _normalize

            seq = _normalize(seq)
        coords = seq.coords.astype(np.float16)
        if not np.isfinite(coords[seq.present]).all():
            return path, None, "coordinates overflow float16 after normalisation"
        st = os.stat(path)
        return path, {
            "coords": coords,
            "present": np.packbits(seq.present, axis=1),
            "fps": float(seq.fps), "width": seq.width, "height": seq.height,
            "size": st.st_size, "mtime": st.st_mtime,
        }, None
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
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(_load_one, paths, [normalize] * len(paths), chunksize=4)


def pack_corpus(inputs: Iterable[str | Path], out: str | Path, *, workers: int = 1, normalize: bool = True,
                shard_frames: int = DEFAULT_SHARD_FRAMES, progress: bool = True) -> PackSummary:
    """Pack every readable pose file under ``inputs`` into the corpus at ``out`` (created or extended)."""
    from msmae.poses.readers import find_pose_files

    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    entries: list[Entry] = []
    if (root / "corpus.json").exists():
        meta = read_meta(root)
        if bool(meta.get("normalized", True)) != normalize:
            raise CorpusError(f"{root}: was packed with normalized={meta.get('normalized')}; "
                              f"cannot add files with normalized={normalize}")
        entries = read_index(root)
    known = {e.source: e for e in entries}
    files = [str(p.resolve()) for p in find_pose_files(list(inputs))]
    if not files:
        raise CorpusError("no readable pose files found in the inputs "
                          "(.pose, .parquet, .npy, .npz, folders or list files)")
    summary = PackSummary()
    todo = []
    for f in dict.fromkeys(files):
        st = os.stat(f)
        e = known.get(f)
        if e is not None and e.source_size == st.st_size and abs(e.source_mtime - st.st_mtime) < 1e-3:
            summary.unchanged.append(f)
        else:
            todo.append(f)
    changed = {f for f in todo if f in known}
    if changed:  # a changed file: drop its old entry (its frames stay in the old shard, unreferenced)
        entries = [e for e in entries if e.source not in changed]
    # Shards never referenced by the index (a crash mid-pack) are overwritten.
    shard = max((e.shard for e in entries), default=-1) + 1
    taken = {e.id for e in entries}

    buf_c: list[np.ndarray] = []
    buf_p: list[np.ndarray] = []
    pending: list[Entry] = []
    offset = 0

    def flush() -> None:
        nonlocal shard, offset, buf_c, buf_p, pending
        if not pending:
            return
        cpath, ppath = shard_paths(root, shard)
        for path, arrays in ((cpath, buf_c), (ppath, buf_p)):
            with atomic_path(path, suffix=".npy") as tmp:
                np.save(tmp, np.concatenate(arrays))
        entries.extend(pending)
        _write_index(root, entries)
        _write_meta(root, entries, normalize)
        shard, offset, buf_c, buf_p, pending = shard + 1, 0, [], [], []

    bar = tqdm(total=len(todo), desc="pack", unit="file", disable=not progress)
    for path, arrays, err in _imap(todo, workers, normalize):
        bar.update(1)
        if err is not None:
            log.warning("skipped %s: %s", path, err)
            summary.failed.append({"path": path, "reason": err})
            continue
        n = int(arrays["coords"].shape[0])
        eid = _unique_id(Path(path).stem, taken)
        taken.add(eid)
        pending.append(Entry(id=eid, source=path, shard=shard, offset=offset, length=n, fps=arrays["fps"],
                             width=arrays["width"], height=arrays["height"], source_size=arrays["size"],
                             source_mtime=arrays["mtime"]))
        buf_c.append(arrays["coords"])
        buf_p.append(arrays["present"])
        offset += n
        summary.added.append(path)
        if offset >= shard_frames:
            flush()
    bar.close()
    flush()
    if not (root / "corpus.json").exists() or changed:
        _write_index(root, entries)
        _write_meta(root, entries, normalize)
    summary.total_videos = len(entries)
    summary.total_frames = int(sum(e.length for e in entries))
    return summary
