"""GISLR fine-tuning holds participants out: the shipped `gislr` config splits by participant, a run with nothing
held out is refused, and a GISLR train.csv read as a plain manifest says which --dataset it needs. Real data."""

from __future__ import annotations

import json

import pandas as pd

from conftest import shared_path
from msmae.cli import main
from msmae.config import load_config
from msmae.tasks.islr import IslrConfig

TINY = ["model.size=tiny", "model.extra={dim: 32, depth: 1, heads: 2}", "train.epochs=1", "train.batch_size=16",
        "train.warmup_epochs=0", "data.num_workers=0", "data.load_workers=1", "data.num_frames=8"]


def _sets(items):
    return sum((["--set", s] for s in items), [])


def test_gislr_without_a_split_is_refused_and_writes_no_model(tmp_path, capsys):
    csv_path = shared_path("gislr-asl-signs", "train.csv")
    assert main(["finetune", "islr", "--dataset", "gislr", "--annotations", str(csv_path), "--init", "none",
                 "--out", str(tmp_path / "r"), "--no-progress", *_sets(TINY)]) == 1
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "nothing is held out" in err and "--config gislr" in err and out == ""
    assert not (tmp_path / "r" / "model").exists() and not (tmp_path / "r" / "metrics.json").exists()


def test_under_torchrun_every_rank_refuses_nothing_held_out_in_one_line(tmp_path):
    """Only rank 0 reads val and test: the other ranks stop with its line, not a lost-connection traceback."""
    import os
    import subprocess
    import sys

    from test_pretrain import free_port

    csv_path = shared_path("gislr-asl-signs", "train.csv")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "-m", "msmae", "finetune", "islr", "--dataset", "gislr",
           "--annotations", str(csv_path), "--init", "none", "--out", str(tmp_path / "r"), "--no-progress",
           *_sets(TINY)]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert r.returncode != 0
    assert r.stderr.count("msmae finetune: error: ") == 2 and r.stderr.count("nothing is held out") == 2, r.stderr
    assert "[rank1]" not in r.stderr and "Connection closed" not in r.stderr, r.stderr[-3000:]
    assert not (tmp_path / "r" / "model").exists()


def test_a_gislr_csv_without_dataset_gislr_says_so(tmp_path, capsys):
    csv_path = shared_path("gislr-asl-signs", "train.csv")
    assert main(["finetune", "islr", "--annotations", str(csv_path), "--init", "none", "--out", str(tmp_path / "r"),
                 "--no-progress", *_sets(TINY)]) == 1
    err = capsys.readouterr().err
    assert "looks like a GISLR train.csv" in err and "pass --dataset gislr" in err and err.count("\n") == 1


def test_the_shipped_gislr_config_holds_participants_out(tmp_path, capsys):
    csv_path = shared_path("gislr-asl-signs", "train.csv")
    cfg = load_config(IslrConfig, "gislr")
    held = set(cfg.data.val_participants) | set(cfg.data.test_participants)
    assert cfg.data.dataset == "gislr" and not set(cfg.data.val_participants) & set(cfg.data.test_participants)
    assert held < {str(p) for p in pd.read_csv(csv_path)["participant_id"]}  # real participants, some left to train
    out = tmp_path / "r"
    assert main(["finetune", "islr", "--config", "gislr", "--annotations", str(csv_path), "--init", "none",
                 "--out", str(out), "--no-progress", *_sets(TINY)]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["split"] == "test"
    rows = pd.read_csv(csv_path, dtype=str)
    scored = pd.read_csv(out / "predictions_test.csv", dtype=str)
    who = dict(zip(rows["sequence_id"], rows["participant_id"]))
    assert {who[i] for i in scored["id"]} == set(cfg.data.test_participants)
