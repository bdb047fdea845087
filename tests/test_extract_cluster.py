"""Cluster arrays: ``--shard auto`` from scheduler variables, the job scripts of docs/cluster.md, and
``msmae extract --status`` over the summaries of an array job."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from msmae.cli import build_parser, main
from msmae.extract.cluster import extraction_status, shard_from_env
from msmae.extract.runner import shard_of
from msmae.extract.sources import InputError

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("env, want", [
    ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "8", "SLURM_ARRAY_TASK_MIN": "0",
      "SLURM_ARRAY_TASK_MAX": "7"}, (0, 8)),
    ({"SLURM_ARRAY_TASK_ID": "64", "SLURM_ARRAY_TASK_COUNT": "64", "SLURM_ARRAY_TASK_MIN": "1",
      "SLURM_ARRAY_TASK_MAX": "64"}, (63, 64)),  # --array=1-64: MIN honoured
    ({"SLURM_ARRAY_TASK_ID": "14", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "10",
      "SLURM_ARRAY_TASK_MAX": "16", "SLURM_ARRAY_TASK_STEP": "2"}, (2, 4)),  # --array=10-16:2
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "5"}, (3, 5)),
    ({"SGE_TASK_ID": "1", "SGE_TASK_FIRST": "1", "SGE_TASK_LAST": "16", "SGE_TASK_STEPSIZE": "1"}, (0, 16)),
    ({"SGE_TASK_ID": "9", "SGE_TASK_FIRST": "1", "SGE_TASK_LAST": "9", "SGE_TASK_STEPSIZE": "4"}, (2, 3)),
])
def test_shard_auto_maps_scheduler_variables(env, want):
    assert shard_from_env(env)[0] == want


@pytest.mark.parametrize("env, words", [
    ({}, "not inside an array job"),
    ({"SGE_TASK_ID": "undefined", "SGE_TASK_FIRST": "undefined"}, "not inside an array job"),
    ({"SLURM_JOB_ID": "5"}, "not inside an array job"),  # a plain (non-array) SLURM job
    ({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1",
      "SLURM_ARRAY_TASK_MAX": "9"}, "not a plain range"),  # --array=1,4,9
    ({"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "3"}, "not a whole number"),
    ({"SLURM_ARRAY_TASK_ID": "2"}, "SLURM_ARRAY_TASK_COUNT is not"),
])
def test_shard_auto_errors_are_clear(env, words):
    with pytest.raises(InputError, match=words):
        shard_from_env(env)


def test_shard_auto_on_the_command_line(tmp_path, monkeypatch, capsys):
    for k in [k for k in list(__import__("os").environ) if k.startswith(("SLURM_", "SGE_"))]:
        monkeypatch.delenv(k)
    assert main(["extract", str(tmp_path), "--out", str(tmp_path / "o"), "--shard", "auto"]) == 1
    assert "not inside an array job" in capsys.readouterr().err


def _doc_commands() -> list[list[str]]:
    """Command lines (msmae ..., srun torchrun ...) in the shell blocks of docs/cluster.md, with shell
    variables replaced by sample values."""
    text = (REPO / "docs" / "cluster.md").read_text(encoding="utf-8")
    values = {"SLURM_CPUS_PER_TASK": "16", "SLURM_NNODES": "2", "SLURM_GPUS_PER_NODE": "4",
              "SLURM_JOB_ID": "123", "HEAD": "node001", "SLURM_ARRAY_TASK_ID": "7", "WORKERS": "16"}
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for var, val in re.findall(r"^(\w+)=(\S+)", block, flags=re.M):
            values.setdefault(var, val)
        for line in block.splitlines():
            line = line.strip()
            if line.startswith(("msmae ", "srun ")):
                line = re.sub(r"\$\{?(\w+)\}?", lambda m: values[m[1]], line)
                out.append(shlex.split(line))
    return out


def test_cluster_doc_command_lines_parse():
    cmds = _doc_commands()
    kinds = [c[0] if c[0] == "msmae" else c[1] for c in cmds]
    assert kinds.count("msmae") >= 3 and "torchrun" in kinds
    parser = build_parser()
    for cmd in cmds:
        if cmd[:2] == ["srun", "msmae"]:  # a one-process job step
            cmd = cmd[1:]
        if cmd[0] == "srun":
            from torch.distributed.run import get_args_parser

            targs = get_args_parser().parse_args(cmd[2:])
            assert targs.module and targs.training_script == "msmae"
            assert targs.nnodes == "2" and targs.rdzv_backend == "c10d"
            assert targs.rdzv_endpoint == "node001:29500"
            args = parser.parse_args(targs.training_script_args)
            assert args.command == "pretrain" and args.resume
        else:
            args = parser.parse_args(cmd[1:])
            if args.command == "extract" and not args.status:
                assert args.shard == "auto" and args.frame_stride == 2


def _blank_folders(root: Path, n: int) -> None:
    cv2 = pytest.importorskip("cv2")
    for k in range(n):
        d = root / f"s{k}"
        d.mkdir(parents=True)
        cv2.imwrite(str(d / "0.png"), np.full((32, 48, 3), 255, np.uint8))


def test_status_over_shard_summaries(tmp_path, capsys):
    """After an array job: complete only when every shard ran and every clip has a complete .pose;
    a shard that never ran, a clip whose output was lost and a truncated output are named."""
    pytest.importorskip("mediapipe", reason="the extract extra (mediapipe) is not installed")
    corpus, out = tmp_path / "videos", tmp_path / "poses"
    _blank_folders(corpus, 6)
    for i in range(3):
        assert main(["extract", str(corpus), "--out", str(out), "--shard", f"{i}/3", "--workers", "0",
                     "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["extract", str(corpus), "--out", str(out), "--status"]) == 0
    assert "complete: done 6, failed 0, missing 0" in capsys.readouterr().out

    lost = [f"s{k}" for k in range(6) if shard_of(f"s{k}", 3) == 2]
    (out / "extract_summary.shard-2-of-3.json").unlink()  # shard 2 "never ran"
    for name in lost:
        (out / f"{name}.pose").unlink()
    cut = next(f"s{k}" for k in range(6) if shard_of(f"s{k}", 3) == 0)
    data = (out / f"{cut}.pose").read_bytes()
    (out / f"{cut}.pose").write_bytes(data[: len(data) - 100])
    assert main(["extract", str(corpus), "--out", str(out), "--status"]) == 1
    text = capsys.readouterr().out
    assert "missing shard summary: 2/3" in text
    assert all(f"missing: {n}" in text for n in lost)
    assert f"failed: {cut}: incomplete output" in text
    st = extraction_status(out, [f"s{k}" for k in range(6)])
    assert sorted(st["missing"]) == sorted(lost) and not st["complete"]
    # without the inputs it still sees the missing shard and the broken file
    st = extraction_status(out)
    assert st["missing_shards"] == ["2/3"] and [f["name"] for f in st["failed"]] == [cut]
    # a failure recorded in a summary is reported with its reason
    s0 = out / "extract_summary.shard-0-of-3.json"
    summary = json.loads(s0.read_text())
    summary["failed"] = [{"path": "x.mp4", "reason": "cannot open video", "name": "x"}]
    s0.write_text(json.dumps(summary))
    st = extraction_status(out)
    assert {"name": "x", "reason": "cannot open video"} in st["failed"]


def _extraction_script() -> str:
    text = (REPO / "docs" / "cluster.md").read_text(encoding="utf-8")
    return next(b for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S) if "--shard auto" in b)


@pytest.mark.parametrize("scheduler, env, workers", [
    ("grid engine", {"SGE_TASK_ID": "2", "SGE_TASK_FIRST": "1", "SGE_TASK_LAST": "4", "SGE_TASK_STEPSIZE": "1",
                     "NSLOTS": "8", "JOB_ID": "77"}, "8"),
    ("grid engine without a parallel environment", {"SGE_TASK_ID": "1", "SGE_TASK_FIRST": "1", "SGE_TASK_LAST": "4",
                                                    "SGE_TASK_STEPSIZE": "1"}, "1"),
    ("slurm", {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "64", "SLURM_CPUS_PER_TASK": "16"}, "16"),
])
def test_the_extraction_script_runs_under_each_scheduler(tmp_path, scheduler, env, workers):
    """The script as the page prints it, run by bash (set -euo pipefail) with only that scheduler's variables;
    `msmae` is a stand-in that records its arguments (the sharding itself is tested above)."""
    import os
    import subprocess

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "msmae").write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$MSMAE_ARGS"\n')
    (fake / "msmae").chmod(0o755)
    activate = tmp_path / "home" / "venvs" / "msmae" / "bin" / "activate"
    activate.parent.mkdir(parents=True)
    activate.write_text(f'PATH="{fake}:$PATH"\n')
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SGE_", "NSLOTS", "PBS_"))}
    r = subprocess.run(["bash", "-c", _extraction_script()], capture_output=True, text=True, timeout=60,
                       env={**base, **env, "HOME": str(tmp_path / "home"), "MSMAE_ARGS": str(tmp_path / "args")})
    assert r.returncode == 0, f"{scheduler}: {r.stderr}"
    args = (tmp_path / "args").read_text().splitlines()
    assert args[:2] == ["extract", "/data/youtube-asl/videos"] and "--shard" in args
    assert args[args.index("--workers") + 1] == workers and args[args.index("--shard") + 1] == "auto"
