"""Checks that keep training off garbage: a corpus index that agrees with its shards (sizes only, read from
the ``.npy`` headers when a corpus is opened), and a count of the videos that can give the masked
reconstruction loss anything to learn from.

Errors name the file and, for the index, the line (the header is line 1).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Iterable

import numpy as np

log = logging.getLogger(__name__)

UNUSABLE_WARN_SHARE = 0.2   # warn when at least this share of the videos cannot be learned from


def read_meta_file(path: Path) -> dict:
    """``corpus.json`` -> dict, with the file's name in any error."""
    from msmae.corpus.store import CorpusError

    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorpusError(f"{path}: not valid JSON ({e}); re-create the corpus with `msmae pack`") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("layout"), (str, list)):
        raise CorpusError(f"{path}: not an msmae corpus description (no layout)")
    try:
        int(meta.get("format", 0))
    except (TypeError, ValueError):
        raise CorpusError(f"{path}: format {meta.get('format')!r} is not a version number") from None
    return meta


def entries_from_rows(path: Path, rows: Iterable[dict]) -> list:
    """Rows of ``index.csv`` (a ``csv.DictReader``) -> entries; a cut or malformed row names its line."""
    import csv

    from msmae.corpus.store import CorpusError

    out: list = []
    try:
        for line, row in enumerate(rows, start=2):
            out.append(_entry(path, line, row))
    except csv.Error as e:
        raise CorpusError(f"{path}, line {len(out) + 2}: not readable as CSV ({e})") from None
    return out


def _entry(path: Path, line: int, row: dict):
    from msmae.corpus.store import INDEX_COLUMNS, CorpusError, Entry

    empty = [k for k in INDEX_COLUMNS if row.get(k) is None]
    if empty or None in row:
        got = len(INDEX_COLUMNS) - len(empty) + len(row.get(None) or ())
        raise CorpusError(f"{path}, line {line}: {len(INDEX_COLUMNS)} fields expected, the row has {got} "
                          f"(a cut or damaged index)")
    try:
        return Entry.from_row(row)
    except (TypeError, ValueError) as e:
        raise CorpusError(f"{path}, line {line}: bad value ({e})") from None


def shard_frames(path: Path) -> tuple[int, tuple[int, ...]]:
    """(frames, shape) of a shard ``.npy`` from its header alone."""
    from msmae.corpus.store import CorpusError

    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, _ = read_header(f)
    except FileNotFoundError:
        raise CorpusError(f"{path}: shard file missing") from None
    except (OSError, ValueError) as e:
        raise CorpusError(f"{path}: not a readable shard ({e})") from None
    if not shape:
        raise CorpusError(f"{path}: not a shard (a scalar array)")
    return int(shape[0]), tuple(int(s) for s in shape)


def validate_index(root: Path, entries: list, num_points: int) -> None:
    """Every index row points inside its shard: shards exist, their coordinates and presence bits have the
    same number of frames and the right shape, and offset + length stays within them. Reads headers only."""
    from msmae.corpus.store import CorpusError, shard_paths

    index = root / "index.csv"
    frames: dict[int, int] = {}
    for line, e in enumerate(entries, start=2):
        if e.shard not in frames:
            if e.shard < 0:
                raise CorpusError(f"{index}, line {line}: negative shard number {e.shard}")
            cpath, ppath = shard_paths(root, e.shard)
            fc, cshape = shard_frames(cpath)
            fp, pshape = shard_frames(ppath)
            if cshape[1:] != (num_points, 2):
                raise CorpusError(f"{cpath}: shape {cshape}, expected (frames, {num_points}, 2)")
            if pshape[1:] != (math.ceil(num_points / 8),) or fp != fc:
                raise CorpusError(f"{ppath}: shape {pshape}, expected ({fc}, {math.ceil(num_points / 8)}) "
                                  f"to match {cpath.name}")
            frames[e.shard] = fc
        if e.offset < 0 or e.length < 1 or e.offset + e.length > frames[e.shard]:
            raise CorpusError(f"{index}, line {line} ({e.id}): frames {e.offset}..{e.offset + e.length} are "
                              f"outside shard {e.shard}, which holds {frames[e.shard]} frames")
        if not (math.isfinite(e.fps) and e.fps > 0):
            raise CorpusError(f"{index}, line {line} ({e.id}): fps must be a positive number, got {e.fps}")


def maskable_tokens(length: int, *, window: int, frame_stride: int, cubelet: int, mask_ratio: float) -> int:
    """Masked tokens per stream in the longest window of a video of ``length`` frames (the rule of
    :func:`msmae.models.masking.make_visible`: round(r * n) of n tokens, at least one left visible)."""
    n_frames = math.ceil(min(length, window) / frame_stride)
    n_tokens = math.ceil(n_frames / cubelet)
    return max(0, min(round(n_tokens * mask_ratio), n_tokens - 1))


def usable_videos(corpus, videos: list[int], keypoints: list[int], *, window: int, frame_stride: int,
                  cubelet: int, mask_ratio: float) -> np.ndarray:
    """bool per video of ``videos``: long enough for a masked token and with at least one of ``keypoints``
    present in some frame (else it adds nothing to the loss). Reads the presence bits once, shard by shard."""
    usable = np.array([maskable_tokens(corpus.entries[v].length, window=window, frame_stride=frame_stride,
                                       cubelet=cubelet, mask_ratio=mask_ratio) > 0 for v in videos], bool)
    wanted = np.zeros(corpus.num_points, bool)
    wanted[np.asarray(keypoints, int)] = True
    byte_mask = np.packbits(wanted)                              # presence bits of the model's keypoints
    by_shard: dict[int, list[int]] = {}
    for j, v in enumerate(videos):
        if usable[j]:
            by_shard.setdefault(corpus.entries[v].shard, []).append(j)
    for shard, js in by_shard.items():
        _, bits = corpus._shard(shard)
        for j in js:
            e = corpus.entries[videos[j]]
            usable[j] = bool((np.asarray(bits[e.offset:e.offset + e.length]) & byte_mask).any())
    return usable


def require_maskable(corpus, videos: list[int], keypoints: list[int], *, window: int, frame_stride: int,
                     cubelet: int, mask_ratio: float) -> int:
    """Refuse (``ValueError``) training videos none of which can give a masked token with a present keypoint
    (every video shorter than two tokens, or no keypoint ever detected): the loss would be 0 and the model
    garbage. Warns when a large share is unusable. Returns the count of usable videos."""
    ok = usable_videos(corpus, videos, keypoints, window=window, frame_stride=frame_stride, cubelet=cubelet,
                       mask_ratio=mask_ratio)
    n, good = len(videos), int(ok.sum())
    if good == 0:
        need = next((k for k in range(1, window + 1) if maskable_tokens(
            k, window=window, frame_stride=frame_stride, cubelet=cubelet, mask_ratio=mask_ratio) > 0), None)
        short = (f"mask.ratio={mask_ratio:g} masks no token of a {window}-frame window" if need is None else
                 f"each is shorter than {need} frames (the least that gives a masked token of {cubelet} frames "
                 f"at frame_stride {frame_stride} and mask.ratio {mask_ratio:g})")
        raise ValueError(f"{corpus.root}: none of the {n} training videos can be learned from (0 usable): {short}, "
                         f"or no keypoint of the model's streams was ever detected in it")
    if n - good >= UNUSABLE_WARN_SHARE * n:
        log.warning("%s: %d of %d training videos (%.0f%%) give no masked token with a detected keypoint "
                    "(too short or nothing detected); they add nothing to the loss", corpus.root, n - good, n,
                    100 * (n - good) / n)
    return good
