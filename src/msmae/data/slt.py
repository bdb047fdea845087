"""Sign language translation datasets from their released annotation files.

Every adapter returns an :class:`SLTData`: the usable :class:`SLTExample` s (id, pose file, text,
split, optional time range) and the examples it could not use with the reason (missing pose file,
empty text, invalid time range), which are counted and logged, never dropped silently.
``strict=True`` turns any such problem into an :class:`SLTDataError`.

Splits are always named ``train``, ``dev`` and ``test`` (How2Sign's ``val`` is ``dev``).

Files read (pose files are found by id in ``poses`` or ``poses/<split>``, any suffix in
:data:`msmae.data.common.POSE_SUFFIXES`):

- PHOENIX-2014T: ``PHOENIX-2014-T.{train,dev,test}.corpus.csv`` from ``annotations/manual/``,
  ``|``-separated with a header ``name|video|start|end|speaker|orth|translation``; target =
  ``translation`` (lower-case German); pose file ``<name>.pose``.
- CSL-Daily: ``sentence_label/split_1.txt`` (``name|split`` with a header; splits train/dev/test)
  and the sentence labels ``sentence_label/csl2020ct_v2.pkl`` (a pickle: ``{"info": [{"name",
  "length", "label_gloss", "label_char", "label_word", "signer", "time", ...}], "gloss_map", ...}``;
  target = ``"".join(label_char)``, the character sequence the CSL-Daily authors use for SLT). The
  pickle is read with an unpickler that refuses every class, so it cannot run code. Pose file
  ``<name>.pose``.
- How2Sign: the re-aligned ``how2sign_realigned_{train,val,test}.csv`` (tab-separated as released,
  comma-separated copies accepted), columns ``VIDEO_ID, VIDEO_NAME, SENTENCE_ID, SENTENCE_NAME,
  START_REALIGNED, END_REALIGNED, SENTENCE``; pose file ``<SENTENCE_NAME>.pose`` (a sentence clip).
  When only the whole video's ``<VIDEO_NAME>.pose`` exists, the example cuts START..END seconds
  out of it. Rows whose END <= START are excluded (the paper excludes invalid time ranges).
- Plain manifest CSV: columns ``path, text, split`` (optional ``id``, ``start``, ``end`` in seconds);
  relative paths are relative to ``poses`` when given, else to the CSV file's folder.
- DGS Corpus sentences (the 32-sentence sample in ``shared/data/dgs-corpus-sentences``):
  ``{split}_{i}_metadata.json`` (``sentence.english`` / ``sentence.german``) beside
  ``{split}_{i}_original.pose``.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from msmae.data.common import ExampleSet, find_pose_file, read_table, require_columns

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
DATASETS = ("p14t", "csl_daily", "how2sign", "manifest", "dgs")
# Target language (mBART-50 code) of each dataset; a manifest's language comes from the config.
LANGUAGES = {"p14t": "de_DE", "csl_daily": "zh_CN", "how2sign": "en_XX", "dgs": "en_XX"}


class SLTDataError(ValueError):
    """Annotation files that cannot be used, with the file and the problem."""


@dataclass(frozen=True)
class SLTExample:
    """One sentence: ``pose_path`` holds its keypoints; ``start``/``end`` (seconds) select a time
    range of that file when it holds a longer video (None = the whole file)."""

    id: str
    pose_path: Path
    text: str
    split: str
    start: float | None = None
    end: float | None = None


class SLTData(ExampleSet):
    """Usable :class:`SLTExample` s plus what was excluded and why (``(id, reason)`` pairs)."""


# ----------------------------------------------------------------------------- helpers
class _Collector:
    """Builds an :class:`SLTData`, recording every exclusion with its reason."""

    def __init__(self, dataset: str, poses: Path | None, check_poses: bool):
        self.data = SLTData(dataset)
        self.poses = Path(poses) if poses is not None else None
        self.check_poses = check_poses
        if self.poses is not None and check_poses and not self.poses.is_dir():
            raise SLTDataError(f"pose folder not found: {self.poses}")

    def exclude(self, ex_id: str, reason: str) -> None:
        self.data.excluded.append((ex_id, reason))

    def add(self, ex_id: str, pose_name: str, text: str, split: str, *, start=None, end=None,
            fallback_name: str | None = None, where: str = "") -> None:
        text = (text or "").strip()
        if not text:
            self.exclude(ex_id, f"empty text: {where}")
            return
        if start is not None and end is not None and not end > start:
            self.exclude(ex_id, f"invalid time range: {start}..{end} s in {where}")
            return
        assert self.poses is not None
        path = find_pose_file(self.poses, pose_name, split) if self.check_poses else self.poses / f"{pose_name}.pose"
        cut = (None, None)
        if path is None and fallback_name:
            path = find_pose_file(self.poses, fallback_name, split)
            cut = (start, end)
        if path is None:
            self.exclude(ex_id, f"missing pose file: {self.poses / pose_name}.pose")
            return
        self.data.examples.append(SLTExample(ex_id, path, text, split, *cut))

    def finish(self, strict: bool) -> SLTData:
        d = self.data
        if d.excluded:
            if strict:
                raise SLTDataError(d.summary())
            log.warning(d.summary())
        else:
            log.info(d.summary())
        d.warn_overlaps()
        return d


def _read_table(path: Path, *, delimiter: str | None = None) -> list[dict[str, str]]:
    return read_table(path, error=SLTDataError, delimiters=("|", "\t", ","), delimiter=delimiter)


def _require(path: Path, rows: list[dict], columns: Iterable[str]) -> None:
    require_columns(path, rows, columns, error=SLTDataError)


def _float_or_none(value: str, path: Path, column: str, row_id: str) -> float | None:
    if value is None or str(value).strip() in ("", "-1", "nan", "NaN"):
        return None
    try:
        v = float(value)
    except ValueError:
        raise SLTDataError(f"{path}: {column} of {row_id!r} is not a number: {value!r}") from None
    return None if math.isnan(v) else v


def _check_splits(splits: Iterable[str] | None) -> tuple[str, ...]:
    out = tuple(splits) if splits is not None else SPLITS
    bad = [s for s in out if s not in SPLITS]
    if bad:
        raise SLTDataError(f"unknown split(s) {bad}; choose from {list(SPLITS)}")
    return out


# ----------------------------------------------------------------------------- PHOENIX-2014T
def load_p14t(annotations: str | Path, poses: str | Path, *, splits: Iterable[str] | None = None,
              strict: bool = False, check_poses: bool = True) -> SLTData:
    """PHOENIX-2014T from ``PHOENIX-2014-T.<split>.corpus.csv`` (in ``annotations`` or its
    ``manual/`` sub-folder, or ``annotations`` is one such file)."""
    annotations = Path(annotations)
    col = _Collector("p14t", Path(poses), check_poses)
    if annotations.is_file():
        m = re.search(r"\.(train|dev|test)\.corpus\.csv$", annotations.name)
        if not m:
            raise SLTDataError(f"{annotations}: expected a PHOENIX-2014-T.<train|dev|test>.corpus.csv file")
        files = {m.group(1): annotations}
    else:
        files = {}
        for s in _check_splits(splits):
            cands = [annotations / f"PHOENIX-2014-T.{s}.corpus.csv",
                     annotations / "manual" / f"PHOENIX-2014-T.{s}.corpus.csv"]
            found = next((c for c in cands if c.is_file()), None)
            if found is None:
                raise SLTDataError(f"PHOENIX-2014T {s} annotations not found: {cands[0]}")
            files[s] = found
    for split, path in files.items():
        rows = _read_table(path, delimiter="|")
        _require(path, rows, ("name", "translation"))
        for row in rows:
            name = row["name"].strip()
            col.add(name, name, row["translation"], split, where=str(path))
    return col.finish(strict)


# ----------------------------------------------------------------------------- CSL-Daily
class _NoClassesUnpickler(pickle.Unpickler):
    """Reads plain containers only: annotation pickles never need classes, and refusing them keeps
    a tampered file from running code."""

    def find_class(self, module, name):
        raise SLTDataError(f"refusing to load {module}.{name} from an annotation pickle "
                           "(expected only lists, dicts and strings)")


def _read_csl_labels(path: Path) -> dict[str, str]:
    """CSL-Daily sentence labels: name -> target text (``"".join(label_char)``)."""
    if not path.is_file():
        raise SLTDataError(f"CSL-Daily sentence labels not found: {path}")
    try:
        with open(path, "rb") as f:
            data = _NoClassesUnpickler(f).load()
    except SLTDataError as e:
        raise SLTDataError(f"{path}: {e}") from None
    except Exception as e:  # truncated / not a pickle
        raise SLTDataError(f"{path}: not a readable CSL-Daily label pickle ({type(e).__name__}: {e})") from None
    info = data.get("info") if isinstance(data, dict) else None
    if not isinstance(info, list):
        raise SLTDataError(f"{path}: expected a dict with an 'info' list (csl2020ct_v2.pkl format)")
    out = {}
    for i, item in enumerate(info):
        if not isinstance(item, dict) or "name" not in item or "label_char" not in item:
            raise SLTDataError(f"{path}: info[{i}] lacks 'name'/'label_char'")
        chars = item["label_char"]
        out[str(item["name"])] = "".join(chars) if isinstance(chars, (list, tuple)) else str(chars)
    return out


def load_csl_daily(annotations: str | Path, poses: str | Path, *, splits: Iterable[str] | None = None,
                   split_file: str = "split_1.txt", labels_file: str = "csl2020ct_v2.pkl",
                   strict: bool = False, check_poses: bool = True) -> SLTData:
    """CSL-Daily from ``split_1.txt`` + ``csl2020ct_v2.pkl`` (in ``annotations`` or its
    ``sentence_label/`` sub-folder)."""
    annotations = Path(annotations)
    base = annotations / "sentence_label" if (annotations / "sentence_label").is_dir() else annotations
    wanted = set(_check_splits(splits))
    labels = _read_csl_labels(base / labels_file)
    split_path = base / split_file
    rows = _read_table(split_path, delimiter="|")
    _require(split_path, rows, ("name", "split"))
    col = _Collector("csl_daily", Path(poses), check_poses)
    for row in rows:
        name, split = row["name"].strip(), row["split"].strip()
        if split not in SPLITS:
            raise SLTDataError(f"{split_path}: unknown split {split!r} for {name!r}")
        if split not in wanted:
            continue
        if name not in labels:
            col.exclude(name, f"no sentence label: {name!r} is in {split_path.name} but not in {labels_file}")
            continue
        col.add(name, name, labels[name], split, where=str(base / labels_file))
    return col.finish(strict)


# ----------------------------------------------------------------------------- How2Sign
H2S_FILES = {"train": "how2sign_realigned_train.csv", "dev": "how2sign_realigned_val.csv",
             "test": "how2sign_realigned_test.csv"}
H2S_COLUMNS = ("VIDEO_NAME", "SENTENCE_NAME", "START_REALIGNED", "END_REALIGNED", "SENTENCE")


def load_how2sign(annotations: str | Path, poses: str | Path, *, splits: Iterable[str] | None = None,
                  strict: bool = False, check_poses: bool = True) -> SLTData:
    """How2Sign from the re-aligned CSVs in ``annotations`` (or one such file)."""
    annotations = Path(annotations)
    if annotations.is_file():
        split = next((s for s, f in H2S_FILES.items() if annotations.name == f), None)
        if split is None:
            m = re.search(r"(train|val|dev|test)", annotations.name)
            split = {"val": "dev"}.get(m.group(1), m.group(1)) if m else "test"
        files = {split: annotations}
    else:
        files = {}
        for s in _check_splits(splits):
            p = annotations / H2S_FILES[s]
            if not p.is_file():
                raise SLTDataError(f"How2Sign {s} annotations not found: {p}")
            files[s] = p
    col = _Collector("how2sign", Path(poses), check_poses)
    for split, path in files.items():
        rows = _read_table(path)
        _require(path, rows, H2S_COLUMNS)
        for row in rows:
            name = row["SENTENCE_NAME"].strip()
            start = _float_or_none(row["START_REALIGNED"], path, "START_REALIGNED", name)
            end = _float_or_none(row["END_REALIGNED"], path, "END_REALIGNED", name)
            col.add(name, name, row["SENTENCE"], split, start=start, end=end,
                    fallback_name=row["VIDEO_NAME"].strip(), where=str(path))
    return col.finish(strict)


# ----------------------------------------------------------------------------- manifest
def load_manifest(path: str | Path, poses: str | Path | None = None, *, splits: Iterable[str] | None = None,
                  strict: bool = False, check_poses: bool = True) -> SLTData:
    """A plain CSV (comma or tab) with columns ``path, text, split`` and optional ``id, start, end``;
    relative paths are relative to ``poses`` when given, else to the CSV's folder."""
    path = Path(path)
    root = Path(poses) if poses else path.parent
    wanted = set(_check_splits(splits))
    rows = _read_table(path)
    _require(path, rows, ("path", "text", "split"))
    col = _Collector("manifest", root, check_poses=False)
    for i, row in enumerate(rows, start=2):
        split = {"val": "dev", "valid": "dev", "validation": "dev"}.get(row["split"].strip(), row["split"].strip())
        if split not in SPLITS:
            raise SLTDataError(f"{path}, line {i}: unknown split {row['split']!r}; use train, dev or test")
        if split not in wanted:
            continue
        pose = Path(row["path"].strip())
        pose = pose if pose.is_absolute() else root / pose
        ex_id = (row.get("id") or "").strip() or pose.stem
        start = _float_or_none(row.get("start", ""), path, "start", ex_id)
        end = _float_or_none(row.get("end", ""), path, "end", ex_id)
        text = (row["text"] or "").strip()
        if not text:
            col.exclude(ex_id, f"empty text: {path}, line {i}")
        elif start is not None and end is not None and not end > start:
            col.exclude(ex_id, f"invalid time range: {start}..{end} s in {path}, line {i}")
        elif check_poses and not pose.is_file():
            col.exclude(ex_id, f"missing pose file: {pose}")
        else:
            col.data.examples.append(SLTExample(ex_id, pose, text, split, start, end))
    return col.finish(strict)


# ----------------------------------------------------------------------------- DGS Corpus sample
def load_dgs_sentences(folder: str | Path, *, language: str = "english", splits: Iterable[str] | None = None,
                       strict: bool = False) -> SLTData:
    """The DGS Corpus sentence sample: ``{split}_{i}_metadata.json`` + ``{split}_{i}_original.pose``;
    ``language`` is ``english`` or ``german``."""
    folder = Path(folder)
    if language not in ("english", "german"):
        raise SLTDataError(f"language must be 'english' or 'german', got {language!r}")
    if not folder.is_dir():
        raise SLTDataError(f"DGS sentence folder not found: {folder}")
    wanted = set(_check_splits(splits))
    metas = sorted(folder.glob("*_metadata.json"),
                   key=lambda p: (p.name.split("_")[0], int(re.sub(r"\D", "", p.name.split("_")[1]) or 0)))
    if not metas:
        raise SLTDataError(f"{folder}: no *_metadata.json files")
    col = _Collector("dgs", folder, check_poses=True)
    for meta_path in metas:
        ex_id = meta_path.name[: -len("_metadata.json")]
        split = ex_id.split("_")[0]
        if split not in SPLITS:
            raise SLTDataError(f"{meta_path}: file name must start with train_, dev_ or test_")
        if split not in wanted:
            continue
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            text = meta["sentence"][language]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise SLTDataError(f"{meta_path}: not a DGS sentence metadata file ({e})") from None
        col.add(ex_id, f"{ex_id}_original", text, split, where=str(meta_path))
    return col.finish(strict)


# ----------------------------------------------------------------------------- dispatch
def load_slt_dataset(dataset: str, *, annotations: str | Path, poses: str | Path | None = None,
                     splits: Iterable[str] | None = None, strict: bool = False, language: str = "english",
                     check_poses: bool = True) -> SLTData:
    """One entry point for the task code: ``dataset`` is one of :data:`DATASETS`."""
    if dataset in ("p14t", "csl_daily", "how2sign") and poses is None:
        raise SLTDataError(f"{dataset}: a pose folder is needed (data.poses)")
    if dataset == "p14t":
        return load_p14t(annotations, poses, splits=splits, strict=strict, check_poses=check_poses)
    if dataset == "csl_daily":
        return load_csl_daily(annotations, poses, splits=splits, strict=strict, check_poses=check_poses)
    if dataset == "how2sign":
        return load_how2sign(annotations, poses, splits=splits, strict=strict, check_poses=check_poses)
    if dataset == "manifest":
        return load_manifest(annotations, poses, splits=splits, strict=strict, check_poses=check_poses)
    if dataset == "dgs":
        return load_dgs_sentences(annotations, language=language, splits=splits, strict=strict)
    raise SLTDataError(f"unknown SLT dataset {dataset!r}; choose from {', '.join(DATASETS)}")
