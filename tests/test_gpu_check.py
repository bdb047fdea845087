"""benchmarks/gpu_check.py runs its checks end to end on the CPU (tiny sizes), so that it cannot rot before it
meets a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_quick_on_cpu(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--quick",
                        "--workdir", str(tmp_path)], capture_output=True, text=True, env=env, timeout=600)
    rows = [json.loads(line) for line in r.stdout.splitlines()]      # every stdout line is JSON
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    by = {row["check"]: row for row in rows}
    for name in ("forward/fp32", "forward/bf16", "matmul_peak", "pretrain/device", "pretrain/workers",
                 "pretrain/paths_agree", "torchrun", "islr", "slt", "attention", "summary"):
        assert by[name]["ok"], by.get(name)
    assert by["forward/fp32"]["max_abs_diff_pred"] == 0.0               # CPU against CPU: the same numbers
    assert by["pretrain/device"]["data_path"] == "device" and by["pretrain/workers"]["data_path"] == "workers"
    assert by["pretrain/paths_agree"]["final_loss_abs_diff"] == 0.0
    assert by["pretrain/device"]["mfu"] > 0 and by["pretrain/device"]["achieved_tflops"] > 0
    assert not list(tmp_path.iterdir())                                 # it deletes what it wrote
