"""What to extract: inputs and annotation files -> a list of :class:`Clip`.

Inputs (``msmae extract INPUT...``):

- a video file -> one clip named after the file (``a/b/x.mp4`` -> ``x``);
- a folder -> searched recursively: every video file is a clip, and every folder that directly
  holds image files is one frame-folder clip (PHOENIX-2014T, CSL-Daily). Clip names keep the path
  relative to the input folder (``dev/x.mp4`` -> ``dev/x``), so outputs mirror the input tree;
- a folder that itself holds images -> one frame-folder clip named after it;
- a list file (``.txt``, ``.lst``, ``.list``) -> one path per line (relative to the list file's
  folder; blank lines and ``#`` comments skipped), each handled as above.

Clip files (``--clips FILE``) give time ranges; the videos they name are looked up in the input
folders (recursively, by file name without extension):

- How2Sign re-aligned CSV (tab- or comma-separated): ``VIDEO_NAME`` (the video file),
  ``SENTENCE_NAME`` (the clip name), ``START_REALIGNED``/``END_REALIGNED`` in seconds (the
  original ``START``/``END`` columns are accepted too);
- WLASL ``WLASL_v0.3.json``: each instance's ``video_id`` is the clip name and the video
  ``<video_id>.mp4`` (or the raw YouTube download named by the id at the end of ``url``);
  ``frame_start``/``frame_end`` are 1-based and inclusive, ``frame_end`` -1 = to the end;
- plain CSV ``path,start,end,name`` (header optional): ``start``/``end`` in SECONDS (empty = from
  the beginning / to the end), ``name`` optional; ``path`` absolute, relative to the CSV's folder,
  or relative to an input folder; it may be a frame folder.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from msmae.extract.frames import VIDEO_SUFFIXES, frame_range, is_image, is_video
from msmae.utils import list_file_entries

log = logging.getLogger(__name__)

LIST_SUFFIXES = (".txt", ".lst", ".list")


class InputError(ValueError):
    """Inputs or a clips file that cannot be used (raised before any extraction starts)."""


@dataclass(frozen=True)
class Clip:
    """One output ``.pose``: a video (or frame folder) and an optional range of it."""

    source: Path  # video file or folder of frame images
    name: str  # output path relative to the output folder, without ".pose" ("/" allowed)
    start_s: float | None = None  # clip start in seconds (None = first frame)
    end_s: float | None = None  # clip end in seconds, exclusive (None = last frame)
    start_frame: int | None = None  # or: first frame, 0-based (used instead of seconds when set)
    stop_frame: int | None = None  # last frame + 1, 0-based (None = to the end)

    def frames(self, fps: float) -> tuple[int, int | None]:
        """Frame range ``[start, stop)`` at ``fps`` (see :func:`msmae.extract.frames.frame_range`)."""
        if self.start_frame is not None or self.stop_frame is not None:
            return self.start_frame or 0, self.stop_frame
        return frame_range(self.start_s, self.end_s, fps)

    @property
    def is_frames(self) -> bool:
        return self.source.is_dir()

    def describe(self) -> str:
        """The source and its range, for messages."""
        if self.start_frame is not None or self.stop_frame is not None:
            rng = f" frames [{self.start_frame or 0}, {'end' if self.stop_frame is None else self.stop_frame})"
        elif self.start_s is not None or self.end_s is not None:
            rng = f" [{self.start_s or 0:g} s, {'end' if self.end_s is None else f'{self.end_s:g} s'})"
        else:
            rng = ""
        return f"{self.source}{rng}"

    def size_hint(self) -> float:
        """A cheap guess of the work (for scheduling big clips first): seconds or bytes."""
        if self.end_s is not None:
            return (self.end_s - (self.start_s or 0.0)) * 1e6
        if self.stop_frame is not None:
            return (self.stop_frame - (self.start_frame or 0)) * 4e4
        try:
            return float(os.stat(self.source).st_size) if not self.is_frames else 1e6
        except OSError:
            return 0.0


# ------------------------------------------------------------------------------------ inputs
def _scan_folder(root: Path) -> list[Clip]:
    """Videos and frame folders under ``root`` (recursive, sorted)."""
    out: list[Clip] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        files = sorted(f for f in filenames if not f.startswith("."))
        if any(is_image(Path(f)) for f in files):
            rel = here.relative_to(root)
            out.append(Clip(source=here, name=root.name if rel == Path(".") else rel.as_posix()))
        for f in files:
            p = here / f
            if is_video(p):
                out.append(Clip(source=p, name=p.relative_to(root).with_suffix("").as_posix()))
    return out


def find_clips(inputs: Iterable[str | os.PathLike]) -> list[Clip]:
    """Expand INPUT arguments (videos, folders, frame folders, list files) into clips."""
    clips: list[Clip] = []

    def add(p: Path, lists: tuple[Path, ...]) -> None:
        where = f" (listed in {lists[-1]})" if lists else ""
        if not p.exists():
            raise InputError(f"{p}: no such file or folder{where}")
        if p.is_dir():
            found = _scan_folder(p)
            if not found:
                raise InputError(f"{p}: no video files or frame images in this folder{where}")
            clips.extend(found)
        elif p.suffix.lower() in LIST_SUFFIXES:
            if p.resolve() in lists:
                raise InputError(f"{p}: list file includes itself")
            for q in list_file_entries(p):
                add(q, lists + (p.resolve(),))
        elif is_video(p):
            clips.append(Clip(source=p, name=p.stem))
        else:
            raise InputError(f"{p}: not a video ({', '.join(s[1:] for s in VIDEO_SUFFIXES)}), "
                             f"a folder or a list file ({', '.join(LIST_SUFFIXES)}){where}")

    for item in inputs:
        add(Path(item), ())
    return check_unique(clips)


def check_clip_name(name: str, clip: Clip | None = None) -> str:
    """A clip name is a path relative to the output folder: refuse (never rewrite) one that is empty,
    absolute, or climbs out with ``..``, so that every output stays inside ``--out``."""
    where = f" ({clip.describe()})" if clip is not None else ""
    parts = re.split(r"[/\\]", name)
    bad = None
    if not name.strip() or "\0" in name:
        bad = "it is empty" if not name.strip() else "it holds a NUL character"
    elif name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        bad = "it is an absolute path"
    elif any(p in ("..", ".", "") for p in parts):
        bad = "it has a '..', '.' or empty path component"
    if bad:
        raise InputError(f"clip name {name!r}{where} refused: {bad}, and outputs must stay inside --out "
                         f"(names are paths relative to --out, e.g. 'dev/clip1'); rename it in the clips file")
    return name


def check_unique(clips: list[Clip]) -> list[Clip]:
    """Drop exact duplicates; raise when two different clips would write the same output, or when a
    clip's name would write outside the output folder (:func:`check_clip_name`)."""
    seen: dict[str, Clip] = {}
    out = []
    for c in clips:
        check_clip_name(c.name, c)
        prev = seen.get(c.name)
        if prev is None:
            seen[c.name] = c
            out.append(c)
        elif prev != c:
            raise InputError(f"two clips would write the same output {c.name}.pose: {prev.describe()} and "
                             f"{c.describe()} (rename one, or extract them into different --out folders)")
    return out


# ------------------------------------------------------------------------------- clip files
class VideoIndex:
    """Video files under some folders, found by file name without extension."""

    def __init__(self, folders: Sequence[Path]) -> None:
        self.folders = list(folders)
        self._by_stem: dict[str, list[Path]] = {}
        for folder in self.folders:
            if not folder.is_dir():
                raise InputError(f"{folder}: not a folder (with --clips, the INPUTs are the folders "
                                 f"that hold the videos)")
            for dirpath, dirnames, filenames in os.walk(folder):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for f in sorted(filenames):
                    p = Path(dirpath) / f
                    if is_video(p) and not f.startswith("."):
                        self._by_stem.setdefault(p.stem, []).append(p)

    def find(self, stem: str) -> Path | None:
        paths = self._by_stem.get(stem)
        if not paths:
            return None
        if len(paths) > 1:
            log.warning("%d videos named %s in %s; using %s", len(paths), stem,
                        ", ".join(map(str, self.folders)), paths[0])
        return paths[0]

    def where(self) -> str:
        return ", ".join(str(f) for f in self.folders)


@dataclass
class ClipList:
    """Clips read from a clips file, and the rows whose video was not found."""

    clips: list[Clip]
    missing: list[dict]  # [{"name", "path", "reason"}]


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the clips file ({e})") from None


def read_clips_file(path: str | os.PathLike, search_dirs: Sequence[str | os.PathLike] = ()) -> ClipList:
    """Read a How2Sign CSV, a WLASL JSON or a plain ``path,start,end,name`` CSV (see module doc).

    search_dirs: folders holding the videos (default: the clips file's folder).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such clips file")
    folders = [Path(d) for d in search_dirs] or [path.parent]
    text = _read_text(path)
    if path.suffix.lower() == ".json":
        return _read_wlasl(path, text, folders)
    rows = _csv_rows(path, text)
    header = [h.strip() for h in rows[0]] if rows else []
    upper = {h.upper() for h in header}
    if {"VIDEO_NAME", "SENTENCE_NAME"} <= upper:
        return _read_how2sign(path, rows, folders)
    return _read_plain(path, rows, folders)


def _csv_rows(path: Path, text: str) -> list[list[str]]:
    first = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first else ","
    rows = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter) if any(c.strip() for c in r)]
    if not rows:
        raise InputError(f"{path}: the clips file is empty")
    return rows


def _seconds(path: Path, line: int, column: str, value: str) -> float | None:
    value = value.strip()
    if not value:
        return None
    try:
        v = float(value)
    except ValueError:
        raise InputError(f"{path}, line {line}: {column} must be a number of seconds, got {value!r}") from None
    if not v >= 0:
        raise InputError(f"{path}, line {line}: {column} must be >= 0 seconds, got {value!r}")
    return v


def _check_range(path: Path, line: int, start: float | None, end: float | None) -> None:
    if start is not None and end is not None and end <= start:
        raise InputError(f"{path}, line {line}: the clip ends ({end:g} s) before it starts ({start:g} s)")


def _read_how2sign(path: Path, rows: list[list[str]], folders: list[Path]) -> ClipList:
    header = [h.strip().upper() for h in rows[0]]
    col = {h: i for i, h in enumerate(header)}
    start_col = "START_REALIGNED" if "START_REALIGNED" in col else "START"
    end_col = "END_REALIGNED" if "END_REALIGNED" in col else "END"
    for c in (start_col, end_col):
        if c not in col:
            raise InputError(f"{path}: How2Sign CSV without a {c} column (columns: {', '.join(header)})")
    index = VideoIndex(folders)
    clips, missing = [], []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) < len(header):
            raise InputError(f"{path}, line {line}: {len(row)} columns, the header has {len(header)}")
        video, name = row[col["VIDEO_NAME"]].strip(), row[col["SENTENCE_NAME"]].strip()
        start = _seconds(path, line, start_col, row[col[start_col]])
        end = _seconds(path, line, end_col, row[col[end_col]])
        _check_range(path, line, start, end)
        src = index.find(video)
        if src is None:
            missing.append({"name": name, "path": video,
                            "reason": f"video {video}.* not found in {index.where()}"})
            continue
        clips.append(Clip(source=src, name=name, start_s=start, end_s=end))
    return ClipList(check_unique(clips), missing)


_YOUTUBE = re.compile(r"(?:youtube\.com|youtu\.be)", re.I)


def _read_wlasl(path: Path, text: str, folders: list[Path]) -> ClipList:
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "instances" in e for e in entries):
        raise InputError(f"{path}: not a WLASL file (expected a list of {{gloss, instances}} entries)")
    index = VideoIndex(folders)
    clips, missing = [], []
    for entry in entries:
        for inst in entry["instances"]:
            try:
                vid = str(inst["video_id"])
                fs, fe = int(inst.get("frame_start", 1)), int(inst.get("frame_end", -1))
            except (KeyError, TypeError, ValueError):
                raise InputError(f"{path}: a {entry.get('gloss')!r} instance lacks video_id or has a bad "
                                 f"frame_start/frame_end: {inst}") from None
            if fs < 1 or (fe != -1 and fe < fs):
                raise InputError(f"{path}: instance {vid}: frame range {fs}..{fe} is not 1-based and ordered")
            src = index.find(vid)
            url = str(inst.get("url", ""))
            if src is None and _YOUTUBE.search(url):
                src = index.find(url[-11:])
            if src is None:
                missing.append({"name": vid, "path": f"{vid}.mp4",
                                "reason": f"video {vid}.mp4 not found in {index.where()}"})
                continue
            clips.append(Clip(source=src, name=vid, start_frame=fs - 1, stop_frame=None if fe == -1 else fe))
    return ClipList(check_unique(clips), missing)


def _read_plain(path: Path, rows: list[list[str]], folders: list[Path]) -> ClipList:
    head = [h.strip().lower() for h in rows[0]]
    if "path" in head:
        col = {h: i for i, h in enumerate(head)}
        body = rows[1:]
        first_line = 2
    else:
        try:  # no header: path,start,end,name by position; the second column must be seconds
            if len(rows[0]) > 1 and rows[0][1].strip():
                float(rows[0][1])
        except ValueError:
            raise InputError(f"{path}: unknown clips file: not a How2Sign CSV (VIDEO_NAME, SENTENCE_NAME, "
                             f"START_REALIGNED, END_REALIGNED), not WLASL JSON, and not a plain CSV "
                             f"(path,start,end,name); first row: {rows[0]}") from None
        col = {"path": 0, "start": 1, "end": 2, "name": 3}
        body = rows
        first_line = 1
    clips, missing = [], []

    def cell(row: list[str], key: str) -> str:
        i = col.get(key)
        return row[i].strip() if i is not None and i < len(row) else ""

    for line, row in enumerate(body, start=first_line):
        rel = cell(row, "path")
        if not rel:
            raise InputError(f"{path}, line {line}: empty path")
        start = _seconds(path, line, "start", cell(row, "start"))
        end = _seconds(path, line, "end", cell(row, "end"))
        _check_range(path, line, start, end)
        p = Path(rel)
        candidates = [p] if p.is_absolute() else [path.parent / p] + [f / p for f in folders]
        src = next((c for c in candidates if c.exists()), None)
        name = cell(row, "name")
        if not name:
            name = p.stem if p.suffix else p.name
            if start is not None or end is not None:
                name += f"_{start or 0:g}-{'end' if end is None else f'{end:g}'}"
        if src is None:
            missing.append({"name": name, "path": rel,
                            "reason": f"not found (looked at {', '.join(str(c) for c in candidates)})"})
            continue
        clips.append(Clip(source=src, name=name, start_s=start, end_s=end))
    return ClipList(check_unique(clips), missing)
