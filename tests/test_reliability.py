"""Reliability and safety (issue 17): nothing of the user's overwritten, atomic checkpoint switches, safe and
robust resume, outputs that follow the umask, corpora checked before training, workers that die with
their parent."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from msmae.corpus import CorpusError, PackedCorpus, pack_corpus, pack_sequences
from msmae.poses import PoseSequence
from msmae.train import checkpoint as ck

from test_pretrain import SMALL, cfg_of, random_walk_corpus

REPO = Path(__file__).resolve().parents[1]


def sets(items):
    return sum((["--set", s] for s in items), [])


# ------------------------------------------------------------------------------- 2: the run-folder guard
def test_new_run_refused_over_any_earlier_output_even_without_checkpoints(tmp_path):
    from msmae.cli import main

    data = random_walk_corpus(tmp_path / "c")
    run = tmp_path / "r"
    args = ["pretrain", "--data", str(data), "--out", str(run), "--no-progress", *sets(SMALL + ["train.steps=2"])]
    assert main(args) == 0
    import shutil

    shutil.rmtree(run / "checkpoints")          # a common tidy-up of a finished run
    weights = (run / "model" / ck.WEIGHTS).read_bytes()
    metrics = (run / "metrics.json").read_text()
    assert main(args) == 1                       # refused: model/ and metrics.json would be overwritten
    assert (run / "model" / ck.WEIGHTS).read_bytes() == weights and (run / "metrics.json").read_text() == metrics
    for name in ("metrics.json", "config.yaml"):  # any one earlier output is enough
        d = tmp_path / f"only_{name}"
        d.mkdir()
        (d / name).write_text("x")
        with pytest.raises(ck.RunExistsError, match=name):
            ck.check_new_run(d, resume=False)
        ck.check_new_run(d, resume=True)
    (tmp_path / "fresh" / "checkpoints").mkdir(parents=True)   # an empty checkpoints/ is no earlier run
    ck.check_new_run(tmp_path / "fresh", resume=False)


# ------------------------------------------------------------------------ 4: atomic switch of `last`
def test_checkpoint_last_is_complete_whatever_rename_a_crash_interrupts(tmp_path, monkeypatch):
    run = tmp_path / "run"
    old_sd, new_sd = {"encoder.w": torch.zeros(3)}, {"encoder.w": torch.ones(3)}
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    ck.save_last(run, state_dict=old_sd, config={"task": "islr"}, opt=opt, sched=sched, epoch=1, history=[],
                 best_epoch=1, best_score=None)
    real_replace = os.replace
    for crash_at in range(1, 6):
        calls = {"n": 0}

        def replace(a, b, _crash=crash_at):
            calls["n"] += 1
            if calls["n"] == _crash:
                raise KeyboardInterrupt
            return real_replace(a, b)

        monkeypatch.setattr(os, "replace", replace)
        try:
            ck.save_last(run, state_dict=new_sd, config={"task": "islr"}, opt=opt, sched=sched, epoch=2,
                         history=[], best_epoch=2, best_score=None)
        except KeyboardInterrupt:
            pass
        monkeypatch.setattr(os, "replace", real_replace)
        got = ck.load_state_dict(run / "checkpoints" / "last")["encoder.w"]   # never missing, never half
        assert torch.equal(got, old_sd["encoder.w"]) or torch.equal(got, new_sd["encoder.w"]), crash_at
        assert ck.load_resume_point(run) is not None
        ck.save_last(run, state_dict=old_sd, config={"task": "islr"}, opt=opt, sched=sched, epoch=1, history=[],
                     best_epoch=1, best_score=None)
    # Two versions on disk, `last` linking the newest (the one before is for --resume to fall back to); `best`
    # works the same way, with one version.
    ck.save_checkpoint(run / "checkpoints" / "best", state_dict=new_sd, config={"task": "islr"})
    ck.save_checkpoint(run / "checkpoints" / "best", state_dict=old_sd, config={"task": "islr"})
    names = sorted(p.name for p in (run / "checkpoints").iterdir() if not p.name.startswith("."))
    assert len([n for n in names if n.startswith("last-")]) == 2 and len([n for n in names if n.startswith("best-")]) == 1
    assert (run / "checkpoints" / "last").is_symlink() and (run / "checkpoints" / "best" / ck.WEIGHTS).is_file()
    assert torch.equal(ck.load_state_dict(run / "checkpoints" / "best")["encoder.w"], old_sd["encoder.w"])


def test_an_older_msmae_last_folder_is_switched_to_a_link(tmp_path):
    run = tmp_path / "run"
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    # what an older msmae wrote: a plain folder checkpoints/last
    d = ck._write_temp_checkpoint(tmp_path, "x", {"encoder.w": torch.zeros(2)}, {"task": "islr"}, {"epoch": 1})
    (run / "checkpoints").mkdir(parents=True)
    os.rename(d, run / "checkpoints" / "last")
    assert ck.load_resume_point(run) is not None
    ck.save_last(run, state_dict={"encoder.w": torch.ones(2)}, config={"task": "islr"}, opt=opt, sched=sched,
                 epoch=2, history=[], best_epoch=2, best_score=None)
    assert (run / "checkpoints" / "last").is_symlink()
    assert ck.load_train_state(run / "checkpoints" / "last")["epoch"] == 2
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["LATEST", "last", "last-0001"]


# ----------------------------------------------------------------- 5: safe loading, damaged checkpoints
class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (Path(self.path), "pwned"))


def test_resume_never_runs_code_from_a_crafted_train_state(tmp_path, caplog):
    run = tmp_path / "run"
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    ck.save_last(run, state_dict={"w": torch.zeros(1)}, config={"task": "islr"}, opt=opt, sched=sched, epoch=1,
                 history=[{"loss": np.float64(0.5)}], best_epoch=1, best_score=np.float32(0.25))
    st = ck.load_train_state(run / "checkpoints" / "last")   # numpy values were stored as plain numbers
    assert st["history"][0]["loss"] == 0.5 and st["best_score"] == 0.25
    marker = tmp_path / "pwned.txt"
    torch.save({"optimizer": _Evil(marker), "epoch": 3}, run / "checkpoints" / "last" / ck.TRAIN_STATE)
    with pytest.raises(ck.CheckpointError, match="train_state.pt"):
        ck.load_train_state(run / "checkpoints" / "last")
    model = torch.nn.Linear(1, 1, bias=False)
    with caplog.at_level(logging.WARNING):
        st = ck.resume_last(run, model, opt, sched, strict=False)
    assert not marker.exists()
    assert st["epoch"] == 0 and "damaged" in caplog.text and "train_state.pt" in caplog.text


def test_truncated_train_state_resumes_from_the_newest_complete_checkpoint(tmp_path, caplog):
    from msmae.tasks.pretrain import pretrain

    data = random_walk_corpus(tmp_path / "c")
    cfg = cfg_of("train.steps=4", "train.checkpoint_every=2")
    full = pretrain(cfg, data, tmp_path / "full", progress=False)
    run = tmp_path / "run"
    pretrain(cfg, data, run, progress=False)
    f = run / "checkpoints" / "step_0000004" / ck.TRAIN_STATE
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with caplog.at_level(logging.WARNING):
        resumed = pretrain(cfg, data, run, resume=True, progress=False)
    assert "step_0000004" in caplog.text and "damaged" in caplog.text
    assert resumed["steps"] == 4 and resumed["eval_loss"] == full["eval_loss"]  # from step 2, exactly


# ----------------------------------------------------------------------------- 11: the user's umask
def test_outputs_follow_the_umask(tmp_path):
    from msmae.utils import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        d = ck.save_checkpoint(tmp_path / "ck", state_dict={"w": torch.zeros(1)}, config={}, train_state={"s": 1})
        modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "a.txt", d, d / ck.WEIGHTS, d / ck.CONFIG)}
        assert modes == {"a.txt": 0o644, "ck": 0o755, ck.WEIGHTS: 0o644, ck.CONFIG: 0o644}
        os.umask(0o077)
        atomic_write_text(tmp_path / "b.txt", "x")
        assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


# ------------------------------------------------------------------------- 3, 7, 8: corpora
def test_pack_refuses_a_non_empty_folder_that_is_not_a_corpus(tmp_path):
    from msmae.cli import main

    out = tmp_path / "mine"
    out.mkdir()
    (out / "index.csv").write_text("my own spreadsheet\n")
    src = tmp_path / "poses"
    src.mkdir()
    from msmae.poses.writers import write_npz

    rng = np.random.default_rng(0)
    write_npz(PoseSequence(rng.normal(size=(20, 160, 2)), np.ones((20, 160), bool), 25.0), src / "a.npz")
    assert main(["pack", str(src), "--out", str(out)]) == 1
    assert (out / "index.csv").read_text() == "my own spreadsheet\n" and not (out / "corpus.json").exists()
    with pytest.raises(CorpusError, match="not an msmae corpus"):
        pack_corpus([src], out, progress=False)
    assert main(["pack", str(src), "--out", str(tmp_path / "new")]) == 0      # new folder: fine
    assert main(["pack", str(src), "--out", str(tmp_path / "new")]) == 0      # an msmae corpus: extended


def _corpus(tmp_path) -> Path:
    return random_walk_corpus(tmp_path / "c", n=4)


def test_index_past_the_end_of_a_shard_is_refused_naming_file_and_line(tmp_path):
    root = _corpus(tmp_path)
    index = root / "index.csv"
    lines = index.read_text().splitlines()
    fields = lines[3].split(",")
    fields[3] = str(10 ** 6)                      # offset far past the shard's end
    index.write_text("\n".join(lines[:3] + [",".join(fields)] + lines[4:]) + "\n")
    with pytest.raises(CorpusError, match=r"index\.csv, line 4 \(walk2\): frames 1000000\.\..* outside shard 0"):
        PackedCorpus(root)


def test_index_cut_mid_row_and_broken_json_name_the_file(tmp_path):
    root = _corpus(tmp_path)
    index = root / "index.csv"
    text = index.read_text()
    index.write_text(text[: text.rindex(",") - 3])   # cut inside the last row
    columns = len(text.splitlines()[0].split(","))
    with pytest.raises(CorpusError, match=rf"index\.csv, line 5: {columns} fields expected, the row has {columns - 1}"):
        PackedCorpus(root)
    index.write_text(text.replace(",25.0,", ",fast,", 1))
    with pytest.raises(CorpusError, match=r"index\.csv, line 2: bad value"):
        PackedCorpus(root)
    index.write_text(text)
    (root / "corpus.json").write_text('{"format": 1, "layout": ')
    with pytest.raises(CorpusError, match=r"corpus\.json: not valid JSON"):
        PackedCorpus(root)
    from msmae.cli import main

    assert main(["pretrain", "--data", str(root), "--out", str(tmp_path / "r"), *sets(SMALL)]) == 1


def test_corpus_without_a_maskable_token_is_refused_before_training(tmp_path, caplog):
    from msmae.tasks.pretrain import pretrain

    rng = np.random.default_rng(0)
    short = [PoseSequence(rng.normal(size=(3, 160, 2)), np.ones((3, 160), bool), 25.0, source=f"s{i}")
             for i in range(4)]                          # 3 frames: one token, nothing can be masked
    face_only = np.zeros((80, 160), bool)
    face_only[:, 48:] = True                              # only the face seen: nothing of body or hands
    missing = [PoseSequence(rng.normal(size=(80, 160, 2)), face_only, 25.0, source=f"m{i}") for i in range(4)]
    pack_sequences(short + missing, tmp_path / "bad", normalize=False)
    with pytest.raises(ValueError, match=r"none of the 7 training videos can be learned from \(0 usable\)"):
        pretrain(cfg_of("train.steps=2", "model.streams=body,hands"), tmp_path / "bad", tmp_path / "r",
                 progress=False)
    assert not (tmp_path / "r" / "model").exists()
    # Mostly garbage but some usable: trains, with a warning that counts the unusable ones.
    good = [PoseSequence(rng.normal(size=(80, 160, 2)), np.ones((80, 160), bool), 25.0, source=f"g{i}")
            for i in range(3)]
    pack_sequences(good + short, tmp_path / "mixed", normalize=False)
    with caplog.at_level(logging.WARNING):
        pretrain(cfg_of("train.steps=1"), tmp_path / "mixed", tmp_path / "r2", progress=False)
    assert "training videos" in caplog.text and "give no masked token" in caplog.text


def test_pack_counts_files_without_any_detection(tmp_path, capsys):
    from msmae.cli import main

    src = tmp_path / "poses"
    src.mkdir()
    np.save(src / "empty.npy", np.full((30, 543, 3), np.nan, np.float32))
    ok = np.random.default_rng(0).random((30, 543, 3)).astype(np.float32)
    np.save(src / "ok.npy", ok)
    assert main(["pack", str(src), "--out", str(tmp_path / "c"), "--json", "--workers", "0"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["added"] == 1 and s["no_detection"] == [str((src / "empty.npy").resolve())]
    assert main(["pack", str(src), "--out", str(tmp_path / "c2"), "--workers", "0"]) == 0
    assert "1 file(s) without any detected keypoint" in capsys.readouterr().out


# ------------------------------------------------------------------- 10: workers exit with the parent
def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to watch the worker processes")
def test_pack_workers_exit_when_the_parent_is_killed(tmp_path):
    src = tmp_path / "poses"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        np.save(src / f"v{i:02d}.npy", rng.random((10, 543, 3)).astype(np.float32))
    pids = tmp_path / "pids"
    pids.mkdir()
    script = textwrap.dedent(f"""
        import os, time
        import msmae.poses.readers as r
        real = r.read_sequence
        def slow(path, **kw):
            open(os.path.join({str(pids)!r}, str(os.getpid())), "w").close()
            time.sleep(600)  # a file that takes long to read: the worker is busy when the parent dies
            return real(path, **kw)
        r.read_sequence = slow
        from msmae.corpus import pack_corpus
        pack_corpus([{str(src)!r}], {str(tmp_path / 'c')!r}, workers=2, progress=False)
    """)
    import msmae

    env = {**os.environ, "PYTHONPATH": str(Path(msmae.__file__).parents[1])}   # the msmae under test
    parent = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 120
        while len(list(pids.iterdir())) < 2 and time.monotonic() < deadline and parent.poll() is None:
            time.sleep(0.1)
        workers = [int(p.name) for p in pids.iterdir()]
        assert len(workers) == 2 and all(_alive(w) for w in workers)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 60      # generous: the watchdog polls every 0.5 s; a read takes 600 s
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(w) for w in workers), "pack workers outlived their killed parent"
    finally:
        for w in [int(p.name) for p in pids.iterdir()]:
            if _alive(w):
                os.kill(w, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()


# ------------------------------------------------------------------------------ 1: demo --fresh
def test_demo_fresh_deletes_only_what_its_manifest_proves_it_wrote(tmp_path):
    from msmae.cli import main
    from msmae.tasks import demo

    out = tmp_path / "work"
    (out / "pretrain").mkdir(parents=True)
    (out / "pretrain" / "thesis.tex").write_text("two years of work")   # the user's, under a demo name
    with pytest.raises(ValueError, match="pretrain"):
        demo._start_fresh(out, demo.SYNTHETIC_ENTRIES)
    assert main(["demo", "--out", str(out), "--fresh", "--no-progress"]) == 1
    assert (out / "pretrain" / "thesis.tex").read_text() == "two years of work"
    # A folder the demo created (recorded before it writes anything) is deleted by --fresh; the rest stays.
    out2 = tmp_path / "demo"
    demo._claim(out2, demo.SYNTHETIC_ENTRIES)
    (out2 / "attention").mkdir()
    (out2 / "attention" / "a.png").write_bytes(b"x")
    (out2 / "demo_summary.json").write_text("{}")
    demo._start_fresh(out2, demo.SYNTHETIC_ENTRIES)
    assert out2.is_dir() and not any(out2.iterdir())
    # What existed before the demo first ran is never claimed, so never deleted.
    out3 = tmp_path / "mixed"
    (out3 / "corpus").mkdir(parents=True)
    (out3 / "corpus" / "mine.txt").write_text("keep")
    demo._claim(out3, demo.VIDEOS_ENTRIES)
    (out3 / "poses").mkdir()
    with pytest.raises(ValueError, match="corpus"):
        demo._start_fresh(out3, demo.VIDEOS_ENTRIES)
    assert (out3 / "corpus" / "mine.txt").read_text() == "keep" and (out3 / "poses").is_dir()


# ------------------------------------------------------------------------------ 12: the .npz reader
def _npz_with_junk(tmp_path, junk_bytes: int) -> Path:
    import zipfile

    from msmae.poses.writers import write_npz

    rng = np.random.default_rng(0)
    f = write_npz(PoseSequence(rng.normal(size=(30, 160, 2)), np.ones((30, 160), bool), 25.0), tmp_path / "a.npz")
    with zipfile.ZipFile(f, "a", compression=zipfile.ZIP_DEFLATED) as zf, \
            zf.open("junk.npy", "w", force_zip64=True) as out:
        np.lib.format.write_array_header_1_0(out, {"descr": "|u1", "fortran_order": False, "shape": (junk_bytes,)})
        chunk = bytes(1 << 20)
        for _ in range(junk_bytes >> 20):
            out.write(chunk)
    return f


def test_npz_reader_reads_only_the_members_it_needs_and_refuses_absurd_sizes(tmp_path, monkeypatch):
    import tracemalloc

    from msmae.poses import npz_members
    from msmae.poses.readers import read_sequence
    from msmae.poses.sequence import PoseDataError

    f = _npz_with_junk(tmp_path, 64 << 20)          # 64 MiB of zeros, ~64 KiB on disk
    assert f.stat().st_size < 2 << 20
    tracemalloc.start()
    try:
        seq = read_sequence(f)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seq.num_frames == 30 and peak < 16 << 20, f"peak {peak / 2**20:.0f} MiB reading a 30-frame file"
    monkeypatch.setattr(npz_members, "MAX_NPZ_ARRAY_BYTES", 10_000)   # 30 x 160 x 2 float32 = 38,400 bytes
    with pytest.raises(PoseDataError, match=r"member 'coords' declares 38,528 bytes, more than 10,000: refused"):
        read_sequence(f)


# --------------------------------------------------------------------------- 13: the small ones
def test_random_bytes_and_fifos_get_a_clear_refusal(tmp_path, capsys):
    from msmae.cli import main

    (tmp_path / "r.npy").write_bytes(np.random.default_rng(0).bytes(600))
    assert main(["inspect", str(tmp_path / "r.npy")]) == 1
    err = capsys.readouterr().err
    assert "not a NumPy file" in err and "pickled" not in err
    fifo = tmp_path / "a.pose"
    os.mkfifo(fifo)
    script = f"import sys; from msmae.cli import main; sys.exit(main(['inspect', {str(fifo)!r}]))"
    import msmae

    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(Path(msmae.__file__).parents[1])})
    assert r.returncode == 1 and "not a regular file" in r.stderr


def test_score_out_folder_and_infinite_numbers_are_one_line_errors(tmp_path, capsys):
    from msmae.cli import main

    (tmp_path / "h.txt").write_text("a b c\n", encoding="utf-8")
    (tmp_path / "r.txt").write_text("a b c\n", encoding="utf-8")
    assert main(["score", "--hyp", str(tmp_path / "h.txt"), "--ref", str(tmp_path / "r.txt"),
                 "--out", str(tmp_path)]) == 1
    assert "is a folder" in capsys.readouterr().err
    data = _corpus(tmp_path)
    for value in ("train.steps=1e309", "train.lr=1e309", "train.lr=nan"):
        assert main(["pretrain", "--data", str(data), "--out", str(tmp_path / "r"), "--set", value]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and value.split("=")[0] in err, err


def test_a_byte_order_mark_does_not_change_the_scores(tmp_path):
    from msmae.metrics.translation import score_files

    (tmp_path / "h.txt").write_text("the cat sat on the mat\nhello world\n", encoding="utf-8")
    (tmp_path / "r.txt").write_text("the cat sat on the mat\nhello world\n", encoding="utf-8")
    (tmp_path / "h_bom.txt").write_text("\ufeffthe cat sat on the mat\nhello world\n", encoding="utf-8")
    plain = score_files(tmp_path / "h.txt", tmp_path / "r.txt")
    assert score_files(tmp_path / "h_bom.txt", tmp_path / "r.txt") == plain and plain["bleu4"] == pytest.approx(100)


def test_duplicate_rows_and_clips_in_train_and_test_are_warned_with_counts(tmp_path, caplog):
    from msmae.data.islr import load_manifest
    from msmae.data.slt import load_manifest as load_slt_manifest
    from msmae.poses.writers import write_npz

    rng = np.random.default_rng(0)
    for i in range(3):
        write_npz(PoseSequence(rng.normal(size=(20, 160, 2)), np.ones((20, 160), bool), 25.0), tmp_path / f"{i}.npz")
    (tmp_path / "m.csv").write_text("path,label,split\n0.npz,a,train\n0.npz,a,train\n1.npz,b,train\n"
                                    "1.npz,b,test\n0.npz,a,test\n2.npz,a,test\n")
    with caplog.at_level(logging.WARNING):
        d = load_manifest(tmp_path / "m.csv")
    assert d.overlaps() == {"duplicates": ["0@3"], "train_and_eval": ["1@5", "0@6"]}
    assert "1 duplicate example(s)" in caplog.text and "2 evaluation example(s) are also training" in caplog.text
    caplog.clear()
    (tmp_path / "s.csv").write_text("path,text,split\n0.npz,hi,train\n0.npz,hi,train\n0.npz,hi,test\n")
    with caplog.at_level(logging.WARNING):
        load_slt_manifest(tmp_path / "s.csv")
    assert "1 duplicate example(s)" in caplog.text and "1 evaluation example(s) are also training" in caplog.text


def test_progress_bars_update_rarely_when_stderr_is_a_log_file(tmp_path):
    import msmae

    data = _corpus(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TQDM_", "MSMAE_PROGRESS"))}
    env["PYTHONPATH"] = str(Path(msmae.__file__).parents[1])
    with open(tmp_path / "log.txt", "w") as log_file:   # `msmae pretrain ... 2> log.txt`
        r = subprocess.run([sys.executable, "-m", "msmae", "pretrain", "--data", str(data), "--out",
                            str(tmp_path / "r"), *sets(SMALL + ["train.steps=300", "train.log_every=100"])],
                           stderr=log_file, stdout=subprocess.DEVNULL, env=env, timeout=600)
    assert r.returncode == 0
    log = (tmp_path / "log.txt").read_text()
    lines = [line for line in log.splitlines() if line.startswith("pretrain:")]
    assert "\r" not in log and 1 <= len(lines) <= 10, log  # plain lines, at most one per 30 s, and the last
    assert lines[-1].startswith("pretrain: done, 300/300 steps (100%)"), lines


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_parent_watchdog_keeps_workers_of_a_living_parent(method):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from msmae.utils import exit_with_parent

    if method not in mp.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context(method), initializer=exit_with_parent,
                             initargs=(os.getpid(),)) as pool:
        first = pool.submit(os.getpid).result(timeout=120)
        time.sleep(1.5)       # several watchdog polls: a living parent must not look gone
        assert pool.submit(os.getpid).result(timeout=120) == first
