"""Isolated sign recognition (ISLR) datasets from their released annotation files.

Every adapter returns an :class:`ISLRData`: the class names, the usable :class:`ISLRExample` s
(id, pose file, label, split, signer, optional frame range) and the examples it could not use
with the reason (missing pose file, unknown label; empty or unreadable clips are found by
:func:`load_clips`). Exclusions are counted and logged, never dropped silently; ``strict=True``
turns any of them into an :class:`ISLRDataError`.

Splits are always named ``train``, ``val`` and ``test``. Pose files are found by name in
``poses`` or ``poses/<split>``, with any suffix of :data:`msmae.data.common.POSE_SUFFIXES` (one file per video, as
``msmae extract`` writes them).

Files read, as released:

- WLASL: ``WLASL_v0.3.json``, a list of ``{"gloss", "instances": [{"video_id", "split",
  "signer_id", "frame_start", "frame_end", "fps", ...}]}``. Class ids follow the file's gloss
  order (WLASL100/300/1000/2000 = the first N glosses: ``num_glosses``). ``frame_start`` and
  ``frame_end`` count from 1 at 25 fps, inclusive, ``frame_end = -1`` = to the last frame. The
  start kit's ``videos/<video_id>.mp4`` are already cut to that range, so it is applied only with
  ``frame_ranges=True`` (pose files of the uncut source videos).
- ASL Citizen: ``splits/{train,val,test}.csv`` with columns ``Participant ID``, ``Video file``,
  ``Gloss`` (and ``ASL-LEX Code``); pose file = the video file's stem; signer = participant.
- Slovo: ``annotations.csv`` (tab-separated as released; commas accepted) with columns
  ``attachment_id, user_id, [width, height, length,] text, train, begin, end``; ``train`` True ->
  ``train``, False -> ``val`` (Slovo has no test split; its held-out signers are the validation
  set). ``begin``/``end`` are frame numbers of the uncut videos, taken as 0-based ``[begin, end)``;
  the released trimmed videos are already cut, so they are applied only with ``frame_ranges=True``.
  Pose files are looked for in ``poses``, and in ``poses/train`` or ``poses/test`` (the release's video
  folders) for training and validation rows respectively.
  The ``no_event`` class is kept (the paper counts 1,001 Slovo classes).
- Kaggle GISLR (asl-signs): ``train.csv`` with ``path, participant_id, sequence_id, sign``;
  ``path`` is relative to the CSV's folder. There is no official split: participants listed in
  ``val_participants`` / ``test_participants`` form those splits, the rest is ``train``. Classes
  come from ``sign_to_prediction_index_map.json`` beside the CSV when present (signs outside it are
  unknown labels), else from the signs found.
- Plain manifest CSV (anything else, e.g. the JSL Corpus): columns ``path, label, split`` and
  optional ``start, end`` (seconds), ``signer``, ``id``; relative paths are relative to ``poses``
  if given, else to the CSV's folder. ``split`` is train, val (valid, validation, dev) or test.

Class names: given by the dataset (WLASL, GISLR's map) or by a class list file (``classes``: one
label per line, or a JSON list or ``{label: index}``); otherwise the sorted labels of the training
split. A ``val``/``test`` example whose label is not a class is excluded as an unknown label.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from msmae.data.common import POSE_SUFFIXES, ExampleSet, find_pose_file, read_table, require_columns

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
DATASETS = ("wlasl", "asl_citizen", "slovo", "gislr", "manifest")
WLASL_FPS = 25.0  # the frame rate WLASL's frame_start / frame_end are counted at
_SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                "dev": "val", "test": "test", "testing": "test"}


class ISLRDataError(ValueError):
    """Annotation files that cannot be used, with the file and the problem."""


@dataclass(frozen=True)
class ISLRExample:
    """One sign clip. ``start``/``end`` select part of the pose file (None = the whole file):
    frames ``[start, end)`` counted from 0 when ``unit`` is ``"frame"`` (at ``range_fps``; None =
    the pose file's own rate), or seconds ``[start, end)`` when ``unit`` is ``"second"``."""

    id: str
    pose_path: Path
    label: str
    split: str
    signer: str | None = None
    start: float | None = None
    end: float | None = None
    unit: str = "frame"
    range_fps: float | None = None

    def frame_bounds(self, fps: float) -> tuple[int, int | None]:
        """``[first, stop)`` frame indices of the clip in a pose file at ``fps`` (stop None = to the end)."""
        if self.start is None and self.end is None:
            return 0, None
        if self.unit == "frame" and self.range_fps is None:
            start = 0 if self.start is None else max(0, int(self.start))
            return start, None if self.end is None else max(0, int(self.end))
        per_s = self.range_fps if self.unit == "frame" else 1.0  # range units per second
        eps = 1e-6  # keep exact products (e.g. 12.96 s * 25 fps) exact
        start = 0 if self.start is None else max(0, math.ceil(self.start / per_s * fps - eps))
        stop = None if self.end is None else max(0, math.ceil(self.end / per_s * fps - eps))
        return start, stop


@dataclass
class ISLRData(ExampleSet):
    """Class names, usable :class:`ISLRExample` s, and what was excluded and why (``(id, reason)`` pairs)."""

    classes: list[str] = field(default_factory=list)

    @property
    def class_index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}

    def _describe(self) -> str:
        return f"{len(self.classes)} classes, "


# ----------------------------------------------------------------------------- helpers
def _read_table(path: Path, *, delimiter: str | None = None) -> list[dict[str, str]]:
    return read_table(path, error=ISLRDataError, delimiters=(",", "\t"), delimiter=delimiter)


def _require(path: Path, rows: list[dict], columns: Iterable[str]) -> None:
    if rows and set(GISLR_COLUMNS) <= set(rows[0]) and not set(columns) <= set(rows[0]):
        raise ISLRDataError(f"{path}: looks like a GISLR train.csv ({', '.join(GISLR_COLUMNS)}): pass --dataset gislr "
                            f"(or --config gislr)")
    require_columns(path, rows, columns, error=ISLRDataError)


def _number(value, path: Path, column: str, row_id: str) -> float | None:
    if value is None or str(value).strip() in ("", "nan", "NaN", "None"):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ISLRDataError(f"{path}: {column} of {row_id!r} is not a number: {value!r}") from None
    return None if math.isnan(v) else v


def read_class_list(path: str | Path) -> list[str]:
    """Class names from a text file (one per line) or JSON (a list, or ``{label: index}``)."""
    path = Path(path)
    if not path.is_file():
        raise ISLRDataError(f"class list not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ISLRDataError(f"{path}: not valid JSON ({e})") from None
        if isinstance(data, dict):
            try:
                order = sorted(data.items(), key=lambda kv: int(kv[1]))
            except (TypeError, ValueError):
                raise ISLRDataError(f"{path}: expected {{label: integer index}}") from None
            idx = [int(v) for _, v in order]
            if idx != list(range(len(idx))):
                raise ISLRDataError(f"{path}: class indices must be 0..{len(idx) - 1} without gaps")
            return [str(k) for k, _ in order]
        if not isinstance(data, list):
            raise ISLRDataError(f"{path}: expected a JSON list of labels or {{label: index}}")
        names = [str(x) for x in data]
    else:
        names = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    repeated = sorted(n for n, count in Counter(names).items() if count > 1)
    if repeated:
        raise ISLRDataError(f"{path}: repeated class names {repeated[:5]}")
    return names


class _Collector:
    """Builds an :class:`ISLRData`, recording every exclusion with its reason."""

    def __init__(self, dataset: str, poses: Path | None, check_poses: bool = True):
        self.data = ISLRData(dataset)
        self.poses = Path(poses) if poses is not None else None
        self.check_poses = check_poses
        if self.poses is not None and check_poses and not self.poses.is_dir():
            raise ISLRDataError(f"pose folder not found: {self.poses}")
        self.pending: list[ISLRExample] = []

    def exclude(self, ex_id: str, reason: str) -> None:
        self.data.excluded.append((ex_id, reason))

    def add(self, ex_id: str, pose_name: str, label: str, split: str, *, folder: str | None = None,
            **extra) -> None:
        """An example whose pose file is found by name in the pose folder or its sub-folder ``folder``
        (default: the split's name)."""
        label = (label or "").strip()
        if not label:
            self.exclude(ex_id, "empty label")
            return
        assert self.poses is not None
        folder = folder or split
        path = find_pose_file(self.poses, pose_name, folder) if self.check_poses else self.poses / f"{pose_name}.pose"
        if path is None:
            self.exclude(ex_id, f"missing pose file: {self.poses / pose_name}"
                         f"{{{','.join(POSE_SUFFIXES)}}} (also looked in {self.poses / folder})")
            return
        self.pending.append(ISLRExample(ex_id, path, label, split, **extra))

    def add_path(self, ex_id: str, path: Path, label: str, split: str, **extra) -> None:
        """An example whose pose file is given by path."""
        label = (label or "").strip()
        if not label:
            self.exclude(ex_id, "empty label")
        elif self.check_poses and not path.is_file():
            self.exclude(ex_id, f"missing pose file: {path}")
        else:
            self.pending.append(ISLRExample(ex_id, path, label, split, **extra))

    def finish(self, classes: Sequence[str] | None, strict: bool) -> ISLRData:
        """Fix the class list (given, or the training labels sorted) and drop unknown labels."""
        d = self.data
        where = "the class list" if classes is not None else "the training split"
        if classes is None:
            classes = sorted({e.label for e in self.pending if e.split == "train"})
        d.classes = list(classes)
        known = set(d.classes)
        for e in self.pending:
            if e.label in known:
                d.examples.append(e)
            else:
                self.exclude(e.id, f"unknown label: {e.label!r} is not in {where} ({e.split} example)")
        if d.excluded:
            if strict:
                raise ISLRDataError(d.summary())
            log.warning(d.summary())
        else:
            log.info(d.summary())
        d.warn_overlaps()
        return d


def _split_name(raw: str, path: Path, row_id: str) -> str:
    s = _SPLIT_NAMES.get((raw or "").strip().lower())
    if s is None:
        raise ISLRDataError(f"{path}: unknown split {raw!r} for {row_id!r}; use train, val or test")
    return s


# ----------------------------------------------------------------------------- WLASL
def load_wlasl(annotations: str | Path, poses: str | Path, *, num_glosses: int = 0, frame_ranges: bool = False,
               classes: Sequence[str] | None = None, strict: bool = False, check_poses: bool = True) -> ISLRData:
    """WLASL from ``WLASL_v0.3.json`` (or a folder holding one ``WLASL_v*.json``)."""
    path = Path(annotations)
    if path.is_dir():
        found = sorted(path.glob("WLASL_v*.json"))
        if not found:
            raise ISLRDataError(f"{path}: no WLASL_v*.json in this folder")
        path = found[-1]
    if not path.is_file():
        raise ISLRDataError(f"WLASL annotations not found: {path}")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ISLRDataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(content, list) or not all(isinstance(g, dict) and "gloss" in g and "instances" in g
                                                 for g in content):
        raise ISLRDataError(f"{path}: expected a list of {{'gloss', 'instances'}} entries (WLASL_v0.3.json format)")
    if num_glosses:
        if num_glosses > len(content):
            raise ISLRDataError(f"{path}: num_glosses={num_glosses} but the file has {len(content)} glosses")
        content = content[:num_glosses]
    col = _Collector("wlasl", Path(poses), check_poses)
    for entry in content:
        gloss = str(entry["gloss"])
        for inst in entry["instances"]:
            try:
                vid = str(inst["video_id"])
                split = _split_name(inst["split"], path, vid)
                extra = {"signer": None if inst.get("signer_id") is None else str(inst["signer_id"])}
                if frame_ranges:
                    first, last = int(inst["frame_start"]), int(inst["frame_end"])
                    if first < 1 or (last != -1 and last < first):
                        col.exclude(vid, f"invalid frame range: frame_start={first}, frame_end={last} in {path}")
                        continue
                    extra.update(start=first - 1, end=None if last == -1 else last, unit="frame",
                                 range_fps=float(inst.get("fps") or WLASL_FPS))
            except (KeyError, TypeError, ValueError) as e:
                raise ISLRDataError(f"{path}: instance of {gloss!r} lacks or garbles {e}") from None
            col.add(vid, vid, gloss, split, **extra)
    glosses = [str(g["gloss"]) for g in content]
    return col.finish(list(classes) if classes is not None else glosses, strict)


# ----------------------------------------------------------------------------- ASL Citizen
ASL_CITIZEN_COLUMNS = ("Participant ID", "Video file", "Gloss")


def load_asl_citizen(annotations: str | Path, poses: str | Path, *, classes: Sequence[str] | None = None,
                     strict: bool = False, check_poses: bool = True) -> ISLRData:
    """ASL Citizen from ``train.csv``, ``val.csv``, ``test.csv`` in ``annotations`` (or its ``splits/``),
    or ``annotations`` is one of those files."""
    annotations = Path(annotations)
    if annotations.is_file():
        files = {_split_name(annotations.stem, annotations, annotations.name): annotations}
    else:
        base = annotations / "splits" if (annotations / "splits").is_dir() else annotations
        files = {s: base / f"{s}.csv" for s in SPLITS if (base / f"{s}.csv").is_file()}
        if "train" not in files:
            raise ISLRDataError(f"ASL Citizen split files not found: {base / 'train.csv'}")
    col = _Collector("asl_citizen", Path(poses), check_poses)
    for split, path in files.items():
        rows = _read_table(path, delimiter=",")
        _require(path, rows, ASL_CITIZEN_COLUMNS)
        for row in rows:
            video = row["Video file"].strip()
            stem = Path(video).stem
            col.add(stem, stem, row["Gloss"], split, signer=row["Participant ID"].strip() or None)
    return col.finish(classes, strict)


# ----------------------------------------------------------------------------- Slovo
SLOVO_COLUMNS = ("attachment_id", "user_id", "text", "train", "begin", "end")


def _flag(value: str, path: Path, row_id: str) -> bool:
    v = (value or "").strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise ISLRDataError(f"{path}: train flag of {row_id!r} is {value!r}, expected True or False")


def load_slovo(annotations: str | Path, poses: str | Path, *, frame_ranges: bool = False,
               classes: Sequence[str] | None = None, strict: bool = False, check_poses: bool = True) -> ISLRData:
    """Slovo from ``annotations.csv`` (or a folder holding it)."""
    path = Path(annotations)
    if path.is_dir():
        path = path / "annotations.csv"
    rows = _read_table(path)
    _require(path, rows, SLOVO_COLUMNS)
    col = _Collector("slovo", Path(poses), check_poses)
    for row in rows:
        vid = row["attachment_id"].strip()
        train = _flag(row["train"], path, vid)
        split = "train" if train else "val"
        # The release ships train/ and test/ video folders; its test signers are our validation split.
        extra: dict = {"signer": row["user_id"].strip() or None, "folder": "train" if train else "test"}
        if frame_ranges:
            begin, end = _number(row["begin"], path, "begin", vid), _number(row["end"], path, "end", vid)
            if begin is not None and end is not None and not end > begin:
                col.exclude(vid, f"invalid frame range: begin={begin:g}, end={end:g} in {path}")
                continue
            extra.update(start=begin, end=end, unit="frame", range_fps=None)
        col.add(vid, vid, row["text"], split, **extra)
    return col.finish(classes, strict)


# ----------------------------------------------------------------------------- Kaggle GISLR
GISLR_COLUMNS = ("path", "participant_id", "sequence_id", "sign")
GISLR_LABEL_MAP = "sign_to_prediction_index_map.json"


def load_gislr(annotations: str | Path, poses: str | Path | None = None, *,
               val_participants: Iterable = (), test_participants: Iterable = (),
               classes: Sequence[str] | None = None, strict: bool = False, check_poses: bool = True) -> ISLRData:
    """Kaggle GISLR from ``train.csv`` (or its folder); parquet paths are relative to ``poses``
    (default: the CSV's folder)."""
    path = Path(annotations)
    if path.is_dir():
        path = path / "train.csv"
    rows = _read_table(path, delimiter=",")
    _require(path, rows, GISLR_COLUMNS)
    root = Path(poses) if poses else path.parent
    val = {str(p) for p in val_participants}
    test = {str(p) for p in test_participants}
    if val & test:
        raise ISLRDataError(f"participants {sorted(val & test)} are in both val_participants and test_participants")
    seen = {row["participant_id"].strip() for row in rows}
    unknown = sorted((val | test) - seen)
    if unknown:
        raise ISLRDataError(f"{path}: participants {unknown} (val/test_participants) do not occur in the file")
    if classes is None and (path.parent / GISLR_LABEL_MAP).is_file():
        classes = read_class_list(path.parent / GISLR_LABEL_MAP)
    col = _Collector("gislr", None, check_poses)
    for row in rows:
        pid = row["participant_id"].strip()
        split = "val" if pid in val else "test" if pid in test else "train"
        rel = Path(row["path"].strip())
        col.add_path(row["sequence_id"].strip(), rel if rel.is_absolute() else root / rel, row["sign"], split,
                     signer=pid)
    return col.finish(classes, strict)


# ----------------------------------------------------------------------------- manifest
def load_manifest(annotations: str | Path, poses: str | Path | None = None, *,
                  classes: Sequence[str] | None = None, strict: bool = False, check_poses: bool = True) -> ISLRData:
    """A plain CSV (comma or tab): ``path, label, split`` + optional ``start, end`` (seconds),
    ``signer``, ``id``."""
    path = Path(annotations)
    rows = _read_table(path)
    _require(path, rows, ("path", "label", "split"))
    root = Path(poses) if poses else path.parent
    col = _Collector("manifest", None, check_poses)
    for i, row in enumerate(rows, start=2):
        pose = Path(row["path"].strip())
        pose = pose if pose.is_absolute() else root / pose
        ex_id = (row.get("id") or "").strip() or f"{pose.stem}@{i}"
        split = _split_name(row["split"], path, ex_id)
        start = _number(row.get("start"), path, "start", ex_id)
        end = _number(row.get("end"), path, "end", ex_id)
        if start is not None and end is not None and not end > start:
            col.exclude(ex_id, f"invalid time range: {start:g}..{end:g} s in {path}, line {i}")
            continue
        col.add_path(ex_id, pose, row["label"], split, signer=(row.get("signer") or "").strip() or None,
                     start=start, end=end, unit="second")
    return col.finish(classes, strict)


# ----------------------------------------------------------------------------- dispatch
def load_islr_dataset(dataset: str, *, annotations: str | Path, poses: str | Path | None = None,
                      classes: str | Path | Sequence[str] | None = None, num_glosses: int = 0,
                      frame_ranges: bool = False, val_participants: Iterable = (), test_participants: Iterable = (),
                      strict: bool = False, check_poses: bool = True) -> ISLRData:
    """One entry point for the task code: ``dataset`` is one of :data:`DATASETS`; ``classes`` an
    optional class list file, or the class names themselves (e.g. those of a trained run)."""
    if isinstance(classes, (str, Path)):
        names = read_class_list(classes) if str(classes) else None
    else:
        names = list(classes) if classes is not None else None
    if not str(annotations or "").strip():
        raise ISLRDataError(f"{dataset}: no annotation file given (data.annotations / --annotations)")
    if dataset in ("wlasl", "asl_citizen", "slovo") and not poses:
        raise ISLRDataError(f"{dataset}: a pose folder is needed (data.poses / --poses)")
    if dataset == "wlasl":
        return load_wlasl(annotations, poses, num_glosses=num_glosses, frame_ranges=frame_ranges, classes=names,
                          strict=strict, check_poses=check_poses)
    if dataset == "asl_citizen":
        return load_asl_citizen(annotations, poses, classes=names, strict=strict, check_poses=check_poses)
    if dataset == "slovo":
        return load_slovo(annotations, poses, frame_ranges=frame_ranges, classes=names, strict=strict,
                          check_poses=check_poses)
    if dataset == "gislr":
        return load_gislr(annotations, poses, val_participants=val_participants,
                          test_participants=test_participants, classes=names, strict=strict, check_poses=check_poses)
    if dataset == "manifest":
        return load_manifest(annotations, poses, classes=names, strict=strict, check_poses=check_poses)
    raise ISLRDataError(f"unknown ISLR dataset {dataset!r}; choose from {', '.join(DATASETS)}")


# The clips of the examples (reading, normalising, sampling) live in msmae.data.clips.
from msmae.data.clips import Clip, ClipDataset, load_clip, load_clips, prepare_clip  # noqa: E402,F401
