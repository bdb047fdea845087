"""Pre-emption (issue 23, item 8): a real SIGTERM / SIGUSR1 sent to a running `msmae pretrain` or
`msmae finetune islr`, alone or under `torchrun` with 2 gloo processes, stops it after the step in flight with
a checkpoint and exit status 75 (`preempted.json` in the run folder); `--resume` then gives the same per-step
losses as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from msmae.cli import main
from msmae.train.preempt import MARKER, PREEMPTED_EXIT
from test_islr_task import SMALL as ISLR_SMALL
from test_islr_task import manifest, sets
from test_pretrain import SMALL, random_walk_corpus
from test_train_loop import _free_port

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
            str(_free_port()), "-m", "msmae", *args]


def alone(*args: str) -> list[str]:
    return [sys.executable, "-m", "msmae", *args]


def run_and_signal(cmd: list[str], ready, sig: signal.Signals, *, target=None) -> subprocess.CompletedProcess:
    """Start ``cmd``, wait until ``ready()`` (the run has trained some steps), send ``sig`` to ``target(pid)``'s
    processes (default: the process itself), and wait for it to end."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 240
    while not ready():
        assert p.poll() is None, p.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the run never got going"
        time.sleep(0.05)
    for pid in (target(p.pid) if target else [p.pid]):
        os.kill(pid, sig)
    out, err = p.communicate(timeout=240)
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def logged_steps(run: Path) -> list[tuple[int, str]]:
    """(step, loss) rows of a pre-training run's log.csv (losses as written, 6 significant digits)."""
    f = run / "log.csv"
    rows = f.read_text().splitlines()[1:] if f.exists() else []
    return [(int(r.split(",")[0]), r.split(",")[1]) for r in rows if r.count(",") == 3]


def rank_of(pid: int) -> int:
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return int(next(e for e in env if e.startswith(b"RANK="))[5:])


def workers(pid: int) -> list[int]:
    """The training processes torchrun ``pid`` started, by rank."""
    deadline = time.monotonic() + 60
    while True:
        kids = [int(c) for t in Path(f"/proc/{pid}/task").iterdir()
                for c in (t / "children").read_text().split()]
        if len(kids) == 2 or time.monotonic() > deadline:
            return sorted(kids, key=rank_of)
        time.sleep(0.1)


def check_stopped(r: subprocess.CompletedProcess, run: Path, sig: signal.Signals, status: int) -> dict:
    assert r.returncode == status and (run / MARKER).is_file(), (r.returncode, r.stderr[-3000:])
    marker = json.loads((run / MARKER).read_text())
    assert marker["exit_status"] == PREEMPTED_EXIT and marker["signal"] == sig.name, (marker, r.stderr[-3000:])
    assert "stopped by" in r.stderr and "--resume" in r.stderr, r.stderr[-3000:]
    return marker


# ------------------------------------------------------------------------------------------ pretrain
def test_pretrain_sigterm_alone_checkpoints_the_step_and_resumes_exactly(tmp_path):
    data = random_walk_corpus(tmp_path / "c")
    args = ["pretrain", "--data", str(data), "--no-progress",
            *sets(SMALL + ["train.steps=100", "train.checkpoint_every=0"])]
    run = tmp_path / "part"
    r = run_and_signal(alone(*args, "--out", str(run)), lambda: len(logged_steps(run)) >= 3, signal.SIGTERM)
    marker = check_stopped(r, run, signal.SIGTERM, PREEMPTED_EXIT)
    stopped = marker["step"]
    assert 3 <= stopped < 100 and (run / "checkpoints" / f"step_{stopped:07d}").is_dir()
    assert [s for s, _ in logged_steps(run)] == list(range(1, stopped + 1))  # no step lost, none after it
    assert main([*args, "--out", str(run), "--resume"]) == 0
    assert not (run / MARKER).exists()
    assert main([*args, "--out", str(tmp_path / "full")]) == 0
    assert logged_steps(run) == logged_steps(tmp_path / "full")


def test_pretrain_under_torchrun_stops_every_rank_when_one_is_signalled(tmp_path):
    data = random_walk_corpus(tmp_path / "c")
    args = ["pretrain", "--data", str(data), "--no-progress",
            *sets(SMALL + ["train.steps=100", "train.checkpoint_every=0", "model.extra={dim: 32, depth: 1, "
                           "heads: 2, decoder_dim: 32, decoder_depth: 1, decoder_heads: 2, dropout: 0.1}"])]
    run = tmp_path / "part"
    # SIGUSR1 to rank 1 alone: rank 0 learns of it through the all-reduced stop flag, both stop after one step
    r = run_and_signal(torchrun(*args, "--out", str(run)), lambda: len(logged_steps(run)) >= 3, signal.SIGUSR1,
                       target=lambda pid: workers(pid)[1:])
    marker = check_stopped(r, run, signal.SIGUSR1, 1)  # torchrun reports its workers' failure as status 1
    assert f"exitcode  : {PREEMPTED_EXIT}" in r.stderr
    stopped = marker["step"]
    assert (run / "checkpoints" / f"step_{stopped:07d}").is_dir()
    assert [s for s, _ in logged_steps(run)] == list(range(1, stopped + 1))
    r = subprocess.run(torchrun(*args, "--out", str(run), "--resume"), env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run(torchrun(*args, "--out", str(tmp_path / "full")), env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert logged_steps(run) == logged_steps(tmp_path / "full")


# --------------------------------------------------------------------------------------- fine-tuning
def islr_args(tmp_path: Path, num_workers: int = 0) -> list[str]:
    """ISLR fine-tuning long enough (120 steps) that a signal sent after epoch 1 arrives during training also
    on a busy machine."""
    man = manifest(tmp_path, per_class=10)  # 16 training clips: 4 steps per epoch
    return ["finetune", "islr", "--annotations", str(man), "--init", "none", "--no-progress",
            *sets(ISLR_SMALL + ["train.epochs=30", "train.head_dropout=0.3", f"data.num_workers={num_workers}"])]


def test_finetune_islr_sigterm_alone_resumes_exactly(tmp_path):
    args = islr_args(tmp_path)
    run = tmp_path / "part"
    r = run_and_signal(alone(*args, "--out", str(run)), lambda: (run / "log.csv").exists(), signal.SIGTERM)
    marker = check_stopped(r, run, signal.SIGTERM, PREEMPTED_EXIT)
    assert marker["epoch"] < 30
    assert main([*args, "--out", str(run), "--resume"]) == 0
    assert main([*args, "--out", str(tmp_path / "full")]) == 0
    assert (run / "log.csv").read_text() == (tmp_path / "full" / "log.csv").read_text()


def test_finetune_islr_under_torchrun_sigterm_to_the_launcher_resumes_exactly(tmp_path):
    args = islr_args(tmp_path, num_workers=1)
    run = tmp_path / "part"
    # torchrun forwards SIGTERM to the process group of each of its workers (and gives them 30 s before SIGKILL):
    # the DataLoader worker processes get it too and must leave it to the training process
    r = run_and_signal(torchrun(*args, "--out", str(run)), lambda: (run / "log.csv").exists(), signal.SIGTERM)
    marker = check_stopped(r, run, signal.SIGTERM, r.returncode)
    assert marker["epoch"] < 30 and r.returncode != 0
    r = subprocess.run(torchrun(*args, "--out", str(run), "--resume"), env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run(torchrun(*args, "--out", str(tmp_path / "full")), env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (run / "log.csv").read_text() == (tmp_path / "full" / "log.csv").read_text()


# ------------------------------------------------------------------ the job scripts of docs/cluster.md
def requeue_scripts() -> list[str]:
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "cluster.md").read_text(encoding="utf-8")
    return [b for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S) if "#SBATCH --requeue" in b]


def test_cluster_job_scripts_requeue_until_done(tmp_path):
    """Each job script of docs/cluster.md, run by bash with a fake `srun`, `msmae` and `scontrol` on PATH: a run
    stopped by a signal (preempted.json written, any status) puts the job back in the queue and ends the job
    with 0; a finished run ends it with 0 and no requeue; a failure keeps its status and is not re-run."""
    import re
    import stat

    scripts = requeue_scripts()
    assert len(scripts) == 2 and all("--signal=" in s for s in scripts)
    # without `srun`, SLURM's --signal (no B: prefix) reaches job steps only, not what the batch script runs itself
    assert all(re.search(r"^srun .*\bmsmae\b", s, flags=re.M) for s in scripts)
    bindir, home = tmp_path / "bin", tmp_path / "home"
    bindir.mkdir()
    (home / "venvs" / "msmae" / "bin").mkdir(parents=True)
    (home / "venvs" / "msmae" / "bin" / "activate").write_text("")
    fake_run = ('#!/bin/bash\ncase "$FAKE" in\n  preempted) echo "{}" > "$FAKE_RUN/preempted.json"; exit 1;;\n'
                '  done) exit 0;;\n  *) exit 3;;\nesac\n')
    fakes = {"srun": fake_run, "msmae": fake_run,
             "scontrol": '#!/bin/bash\nif [ "$1" = show ]; then echo node001; else echo "$@" >> "$FAKE_LOG"; fi\n'}
    for name, body in fakes.items():
        (bindir / name).write_text(body)
        (bindir / name).chmod(stat.S_IRWXU)
    for i, script in enumerate(scripts):
        for fake, want_status, want_requeue in (("preempted", 0, True), ("done", 0, False), ("fail", 3, False),
                                                ("fail-after-preemption", 3, False)):
            run = tmp_path / f"run{i}-{fake}"
            run.mkdir()
            if fake == "fail-after-preemption":  # the previous job's marker: a resume that fails is not re-run
                (run / MARKER).write_text("{}")
            body = re.sub(r"^RUN=\S+", f"RUN={run}", script, flags=re.M)
            log = tmp_path / f"scontrol-{i}-{fake}.log"
            env = {**ENV, "PATH": f"{bindir}:{os.environ['PATH']}", "HOME": str(home), "FAKE": fake,
                   "FAKE_RUN": str(run), "FAKE_LOG": str(log), "SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "n1",
                   "SLURM_NNODES": "2", "SLURM_GPUS_PER_NODE": "4", "SLURM_CPUS_PER_TASK": "8"}
            r = subprocess.run(["bash", "-c", body], env=env, capture_output=True, text=True)
            assert r.returncode == want_status, (i, fake, r.stderr)
            assert (log.read_text() if log.exists() else "") == ("requeue 4242\n" if want_requeue else ""), (i, fake)


def test_ranks_decide_on_the_all_reduced_flag_alone(monkeypatch):
    """A signal that arrives while the ranks compare flags counts at the next step boundary on every rank: had
    the rank that caught it stopped now and the others not, they would wait on each other for ever."""
    import torch.distributed as dist

    from msmae.train import preempt
    from msmae.train.distributed import DistInfo

    monkeypatch.setattr(dist, "get_backend", lambda group=None: "gloo")
    stop = preempt.StopRequest(DistInfo(rank=0, world_size=2))
    try:
        def all_reduce(t, op=None, group=None):  # no rank had a signal when the flags were sent...
            os.kill(os.getpid(), signal.SIGTERM)  # ...and this rank's arrives before the answer
            time.sleep(0.01)

        monkeypatch.setattr(dist, "all_reduce", all_reduce)
        assert stop.signal_name is None and not stop.due()  # agrees with the other rank: not yet
        assert stop.signal_name == "SIGTERM"
        monkeypatch.setattr(dist, "all_reduce", lambda t, op=None, group=None: None)
        assert stop.due()  # the next boundary: every rank sees it
    finally:
        stop.close()


def _children() -> set[int]:
    return {int(c) for t in Path("/proc/self/task").iterdir() for c in (t / "children").read_text().split()}


def test_dataloader_workers_leave_sigterm_and_sigusr1_to_the_training_process(tmp_path):
    """Schedulers signal every process of a job, and torchrun signals each worker's whole process group: the
    DataLoader workers of the fine-tuning loop and of pre-training's worker path ignore SIGTERM and SIGUSR1, so
    the training process finishes its step instead of failing on a dead worker."""
    import torch

    import msmae.data.windows as win
    from msmae.train.loop import train_loader
    from test_train_loop import Pairs
    from test_windows import walks

    corpus = walks(tmp_path / "c", n=4)
    ds = win.WindowDataset(corpus, [0, 1, 2, 3], keypoints=list(range(48)), window=64, frame_stride=2, seed=0)
    loader = train_loader(Pairs(64), batch_size=2, seed=0, num_workers=1)
    loader.sampler.set_epoch(0)
    streams = {"fine-tuning": lambda: iter(loader),
               "pre-training": lambda: win.batch_stream(ds, 0, 64, 2, device=torch.device("cpu"), on_device="false",
                                                        num_workers=1)[0]}
    for what, start in streams.items():
        before = _children()
        batches = start()
        next(batches)  # the worker has started and delivered
        (worker,) = _children() - before
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            os.kill(worker, sig)
        time.sleep(0.5)  # a worker that did not ignore them is dead by now
        assert len([b for b in batches]) > 0, what  # the rest of the batches, from the same worker
