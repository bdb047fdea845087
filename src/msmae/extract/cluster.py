"""Cluster array jobs: ``--shard auto`` from the scheduler's environment, and the state of a whole
extraction across the summaries its shards wrote.

Array schedulers number their tasks in their own way; :func:`shard_from_env` turns their variables
into msmae's 0-based ``(I, N)``:

- SLURM (``sbatch --array=A-B[:S]``): ``SLURM_ARRAY_TASK_ID``, ``SLURM_ARRAY_TASK_COUNT``,
  ``SLURM_ARRAY_TASK_MIN`` (an array may start at 1 or any number), ``SLURM_ARRAY_TASK_STEP``;
  ``I = (ID - MIN) / STEP``, ``N = COUNT``. An index list that is not a range (``--array=1,4,9``)
  is refused: give ``--shard I/N`` yourself.
- Grid Engine (SGE, Univa/Altair GE, Son of Grid Engine, OGS; ``qsub -t A-B[:S]``): ``SGE_TASK_ID``,
  ``SGE_TASK_FIRST``, ``SGE_TASK_LAST``, ``SGE_TASK_STEPSIZE``; ``I = (ID - FIRST) / STEP``,
  ``N = (LAST - FIRST) / STEP + 1``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Mapping, Sequence

from msmae.extract.sources import InputError

SCHEDULERS = ("SLURM", "Grid Engine")
_SUMMARY_RE = re.compile(r"^extract_summary(?:\.shard-(\d+)-of-(\d+))?\.json$")


def _int(env: Mapping[str, str], name: str, default: int | None = None) -> int | None:
    v = env.get(name)
    if v is None or v.strip() in ("", "undefined"):
        return default
    try:
        return int(v)
    except ValueError:
        raise InputError(f"--shard auto: {name}={v!r} is not a whole number") from None


def shard_from_env(env: Mapping[str, str] | None = None) -> tuple[tuple[int, int], str]:
    """(I, N) of this array task from the scheduler's variables, and a line saying where it came from.
    Raises :class:`InputError` when no array scheduler's variables are set (or they do not fit)."""
    env = os.environ if env is None else env
    if _int(env, "SLURM_ARRAY_TASK_ID") is not None:
        tid, count = _int(env, "SLURM_ARRAY_TASK_ID"), _int(env, "SLURM_ARRAY_TASK_COUNT")
        lo, hi = _int(env, "SLURM_ARRAY_TASK_MIN", 0), _int(env, "SLURM_ARRAY_TASK_MAX")
        step = _int(env, "SLURM_ARRAY_TASK_STEP", 1) or 1
        if count is None:
            raise InputError("--shard auto: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not "
                             "(an old SLURM?); give --shard $((SLURM_ARRAY_TASK_ID - MIN))/COUNT")
        if hi is not None and (hi - lo) != (count - 1) * step:
            raise InputError(f"--shard auto: the SLURM array {lo}..{hi} (step {step}) has {count} tasks, "
                             f"not a plain range; use --array=0-{count - 1} or give --shard I/N")
        if (tid - lo) % step:
            raise InputError(f"--shard auto: SLURM_ARRAY_TASK_ID {tid} is not MIN {lo} + a multiple of "
                             f"STEP {step}")
        return _check((tid - lo) // step, count, "SLURM"), (
            f"SLURM array task {tid} of {lo}..{hi if hi is not None else '?'} (step {step})")
    if _int(env, "SGE_TASK_ID") is not None:
        tid, first, last = _int(env, "SGE_TASK_ID"), _int(env, "SGE_TASK_FIRST"), _int(env, "SGE_TASK_LAST")
        step = _int(env, "SGE_TASK_STEPSIZE", 1) or 1
        if first is None or last is None:
            raise InputError("--shard auto: SGE_TASK_ID is set but SGE_TASK_FIRST / SGE_TASK_LAST are not")
        if (tid - first) % step or (last - first) % step:
            raise InputError(f"--shard auto: SGE task {tid} of {first}..{last} step {step} is not on the grid")
        return _check((tid - first) // step, (last - first) // step + 1, "Grid Engine"), (
            f"Grid Engine task {tid} of {first}..{last} (step {step})")
    raise InputError("--shard auto: not inside an array job (none of SLURM_ARRAY_TASK_ID + "
                     "SLURM_ARRAY_TASK_COUNT, SGE_TASK_ID + SGE_TASK_FIRST/LAST is set); run it as an "
                     "array task (sbatch --array, qsub -t) or give --shard I/N")


def _check(i: int, n: int, who: str) -> tuple[int, int]:
    if n < 1 or not 0 <= i < n:
        raise InputError(f"--shard auto: {who} variables give shard {i} of {n}, outside 0..{n - 1}")
    return i, n


# ------------------------------------------------------------------------------- status
def read_summaries(out_dir: Path) -> list[tuple[tuple[int, int] | None, dict]]:
    """Every ``extract_summary*.json`` in ``out_dir``: [((I, N) or None, summary)]."""
    found = []
    for p in sorted(out_dir.glob("extract_summary*.json")):
        m = _SUMMARY_RE.match(p.name)
        if not m:
            continue
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise InputError(f"{p}: unreadable summary ({e})") from None
        found.append(((int(m[1]), int(m[2])) if m[1] else None, data))
    return found


def extraction_status(out_dir: str | os.PathLike, expected: Sequence[str] | None = None) -> dict:
    """The state of a whole extraction in ``out_dir``, across all its shard summaries.

    expected: the clip names the extraction should produce (from its INPUTs / clips file); without
        them, the clips the summaries name.
    Returns ``done`` (complete ``.pose`` files), ``failed`` ([{name, reason}] without a complete
    output), ``missing`` (expected, neither done nor failed), ``missing_shards`` (["I/N"] whose
    summary is absent), ``incomplete_shards`` (interrupted or with clips not run) and ``complete``
    (True when nothing failed or is missing).
    """
    from msmae.poses.posemeta import check_pose_file
    from msmae.poses.sequence import PoseDataError

    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise InputError(f"{out_dir}: no such folder (nothing extracted yet)")
    summaries = read_summaries(out_dir)
    names: dict[str, None] = {n: None for n in (expected or [])}
    failures: dict[str, str] = {}
    counts = {s[1] for s, _ in summaries if s is not None}
    missing_shards = [f"{i}/{n}" for n in sorted(counts) for i in range(n)
                      if not any(s == (i, n) for s, _ in summaries)]
    incomplete = []
    for shard, s in summaries:
        for key in ("done", "skipped"):
            for rel in s.get(key, []):
                names.setdefault(rel[:-5] if rel.endswith(".pose") else rel, None)
        for f in s.get("failed", []):
            name = f.get("name") or f.get("path")
            names.setdefault(name, None)
            failures[name] = f.get("reason", "failed")
        if s.get("interrupted") or s.get("not_run"):
            incomplete.append("all" if shard is None else f"{shard[0]}/{shard[1]}")
    done, failed, missing = [], [], []
    for name in names:
        path = out_dir / f"{name}.pose"
        if path.exists():
            try:
                check_pose_file(path)
                done.append(name)
            except PoseDataError as e:
                failed.append({"name": name, "reason": f"incomplete output ({e})"})
        elif name in failures:
            failed.append({"name": name, "reason": failures[name]})
        else:
            missing.append(name)
    return {"out": str(out_dir), "summaries": len(summaries), "done": done, "failed": failed,
            "missing": missing, "missing_shards": missing_shards, "incomplete_shards": incomplete,
            "complete": not (failed or missing or missing_shards or incomplete) and bool(summaries or done)}
