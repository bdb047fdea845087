"""No command changes an input: every file a command reads keeps its mode, link count, size, mtime and content,
whatever its mode (0600, 0400, 0755). Inputs are copies of real data, so the shared data itself is never at
risk here; conftest.py checks the shared data after the whole run as well."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from conftest import file_state, shared_path, state_changes

from msmae.cli import main

torch.set_num_threads(1)
MODES = (0o600, 0o400, 0o755)
TINY = ["model.size=tiny", "model.extra={dim: 32, depth: 1, heads: 2, decoder_dim: 32, decoder_depth: 1, "
        "decoder_heads: 2}", "data.window=48", "data.num_workers=0", "data.eval_windows=2", "train.batch_size=2",
        "train.warmup_steps=1", "train.steps=1", "train.checkpoint_every=0"]
ISLR = ["train.epochs=1", "train.batch_size=4", "train.warmup_epochs=1", "data.num_workers=0", "data.load_workers=1"]


def sets(items):
    return sum((["--set", s] for s in items), [])


def copy_inputs(dst: Path, mode: int) -> dict[str, Path]:
    """Copies of real inputs (pose files, a video, annotations, texts) with ``mode``."""
    dgs = shared_path("dgs-corpus-sentences")
    dst.mkdir(parents=True)
    files = {}
    for i in range(1, 5):
        for split in ("train", "test"):
            name = f"{split}_{i}_original.pose"
            files[name] = dst / name
            shutil.copyfile(dgs / name, files[name])
    files["video"] = dst / "clip.mp4"
    shutil.copyfile(shared_path("videos", "poseformat_test_video.mp4"), files["video"])
    rows = ["path,label,split"] + [f"train_{i}_original.pose,{'ab'[i % 2]},train" for i in range(1, 5)] + \
        [f"test_{i}_original.pose,{'ab'[i % 2]},{'val' if i < 3 else 'test'}" for i in range(1, 5)]
    files["islr.csv"] = dst / "islr.csv"
    files["islr.csv"].write_text("\n".join(rows) + "\n")
    files["hyp.txt"], files["ref.txt"] = dst / "hyp.txt", dst / "ref.txt"
    files["hyp.txt"].write_text("a small dog\nthe cat sat\n")
    files["ref.txt"].write_text("a small dog\nthe cat sat down\n")
    for p in files.values():
        os.chmod(p, mode)
    os.chmod(dst, 0o755)
    return files


def states(files: dict[str, Path]) -> dict[str, tuple]:
    return {k: file_state(p) for k, p in files.items()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny pre-training run and an ISLR run fine-tuned from it, made from read-only (0400) copies."""
    root = tmp_path_factory.mktemp("inputs")
    files = copy_inputs(root / "in", 0o400)
    before = states(files)
    poses = [str(files[f"train_{i}_original.pose"]) for i in range(1, 5)]
    assert main(["pack", *poses, "--out", str(root / "corpus")]) == 0
    assert main(["pretrain", "--data", str(root / "corpus"), "--out", str(root / "pre"), "--no-progress",
                 *sets(TINY)]) == 0
    assert main(["finetune", "islr", "--annotations", str(files["islr.csv"]), "--init", str(root / "pre"),
                 "--out", str(root / "islr"), "--no-progress", *sets(ISLR)]) == 0
    assert state_changes(before, states(files)) == []
    return root


@pytest.mark.parametrize("mode", MODES, ids=[oct(m) for m in MODES])
def test_no_command_changes_its_inputs(runs, tmp_path, mode):
    import importlib.util

    # reading a video needs the extract extra (MediaPipe, OpenCV); without it the pose-file commands still run
    videos = all(importlib.util.find_spec(m) is not None for m in ("mediapipe", "cv2"))
    files = copy_inputs(tmp_path / "in", mode)
    before = states(files)
    pose, video, out = files["test_3_original.pose"], files["video"], tmp_path / "out"
    commands = [
        ["inspect", str(pose), "--json"],
        ["pack", str(pose), str(files["train_1_original.pose"]), "--out", str(out / "corpus")],
        ["attention", str(pose), "--model", str(runs / "pre"), "--out", str(out / "a-pose")],
        ["attention", str(video), "--model", str(runs / "pre"), "--out", str(out / "a-video")],
        ["view", str(pose), "--video", str(video), "--model", str(runs / "pre"), "--out", str(out / "v")],
        ["predict", str(pose), "--model", str(runs / "islr"), "--json"],
        ["score", "--hyp", str(files["hyp.txt"]), "--ref", str(files["ref.txt"])],
        ["extract", str(video), "--out", str(out / "poses"), "--workers", "0", "--no-progress"],
    ]
    if not videos:
        commands = [c for c in commands if str(video) not in c]
    for cmd in commands:
        assert main(cmd) == 0, cmd
        assert state_changes(before, states(files)) == [], cmd
    # the copies beside the pages are new files with the user's umask, not the inputs under another name, and
    # readable by no one the user's video is not readable by
    for page in ("a-video", "v") if videos else ():
        placed = out / page / "view.mp4"
        assert placed.stat().st_nlink == 1 and not os.path.samefile(placed, video)
        assert placed.read_bytes() == video.read_bytes()
        umask = os.umask(0o022)
        os.umask(umask)
        assert placed.stat().st_mode & 0o777 == 0o666 & ~umask & (mode | 0o200)


def test_the_guard_sees_every_kind_of_change(tmp_path):
    """The state the session guard (conftest.py) and the test above compare catches each change an input must
    not undergo: mode, a new link, content (same size and mtime), mtime, removal."""
    from conftest import tree_state

    root = tmp_path / "data"
    root.mkdir()
    for name in "abcde":
        (root / name).write_bytes(b"x" * 100)
    before = tree_state(root)
    os.chmod(root / "a", 0o644 if (root / "a").stat().st_mode & 0o777 != 0o644 else 0o600)
    os.link(root / "b", tmp_path / "b-link")
    st = (root / "c").stat()
    (root / "c").write_bytes(b"y" * 100)
    os.utime(root / "c", ns=(st.st_atime_ns, st.st_mtime_ns))
    os.utime(root / "d", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    (root / "e").unlink()
    changed = state_changes(before, tree_state(root))
    assert [c.split(":")[0] for c in changed] == ["a", "b", "c", "d", "e"]
    assert "mode" in changed[0] and "links 1 -> 2" in changed[1] and "content" in changed[2]
    assert "mtime" in changed[3] and "removed" in changed[4]


def test_the_guard_compares_an_unreadable_file_instead_of_failing(tmp_path, monkeypatch):
    """A file of the shared data the tests may not read is compared by mode, links, size and mtime: the guard
    never stops the run with a traceback of its own."""
    import builtins

    from conftest import tree_state

    (tmp_path / "a").write_bytes(b"x")
    real_open = builtins.open

    def refuse(path, *args, **kwargs):
        if str(path) == str(tmp_path / "a"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refuse)
    state = tree_state(tmp_path)
    assert state["a"][4] == "unreadable: Permission denied" and state_changes(state, tree_state(tmp_path)) == []
