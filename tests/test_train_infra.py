import json

import pytest
import torch

from msmae.train import checkpoint as ck
from msmae.train.optim import build_optimizer, cosine_with_warmup, warmup_cosine_factor
from msmae.utils import atomic_write_text


def test_warmup_cosine_shape():
    f = [warmup_cosine_factor(s, warmup_steps=10, total_steps=110) for s in range(111)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert f[10] == pytest.approx(1.0) and f[60] == pytest.approx(0.5) and f[110] == pytest.approx(0.0, abs=1e-9)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))  # monotone decay after warm-up


def test_optimizer_groups_and_scheduler():
    m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    opt = build_optimizer(m, lr=1e-3, weight_decay=0.1, betas=(0.9, 0.95))
    wd = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert wd[id(m[0].weight)] == 0.1 and wd[id(m[0].bias)] == 0.0 and wd[id(m[1].weight)] == 0.0
    sched = cosine_with_warmup(opt, warmup_steps=2, total_steps=4)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([5e-4, 1e-3, 1e-3, 5e-4])


def test_checkpoint_atomic_and_resolve(tmp_path):
    run = tmp_path / "run"
    sd = {"encoder.w": torch.arange(6.0).reshape(2, 3), "decoder.b": torch.ones(2)}
    d = ck.save_checkpoint(run / "checkpoints" / "step_0000010", state_dict=sd, config={"task": "pretrain"},
                           train_state={"step": 10})
    ck.mark_latest(run, d)
    assert ck.latest_checkpoint(run) == d and ck.resolve_checkpoint(run) == d
    assert ck.load_train_state(run)["step"] == 10
    got = ck.load_state_dict(run)
    assert torch.equal(got["encoder.w"], sd["encoder.w"])
    assert set(ck.encoder_state(got)) == {"w"}
    # Overwriting keeps a complete checkpoint at every moment and leaves no temp dirs behind.
    ck.save_checkpoint(d, state_dict={"encoder.w": torch.zeros(1)}, config={"task": "pretrain"})
    assert torch.equal(ck.load_state_dict(d)["encoder.w"], torch.zeros(1))
    assert [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")] == []
    ck.save_checkpoint(run / "checkpoints" / "step_0000020", state_dict=sd, config={"task": "pretrain"})
    ck.save_checkpoint(run / "checkpoints" / "step_0000030", state_dict=sd, config={"task": "pretrain"})
    ck.prune_checkpoints(run, keep=2)
    assert sorted(p.name for p in (run / "checkpoints").glob("step_*")) == ["step_0000020", "step_0000030"]


def test_checkpoint_errors(tmp_path):
    with pytest.raises(ck.CheckpointError, match="no such"):
        ck.resolve_checkpoint(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ck.CheckpointError, match="not an msmae checkpoint"):
        ck.resolve_checkpoint(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / ck.WEIGHTS).write_bytes(b"\x00" * 10)
    (bad / ck.CONFIG).write_text(json.dumps({"kind": "msmae-checkpoint", "format": 1}))
    with pytest.raises(ck.CheckpointError, match="cannot read weights"):
        ck.load_state_dict(bad)


def test_atomic_write_leaves_old_file_on_error(tmp_path):
    f = tmp_path / "a.txt"
    atomic_write_text(f, "old")

    class Boom(Exception):
        pass

    from msmae.utils import atomic_path

    with pytest.raises(Boom):
        with atomic_path(f) as tmp:
            tmp.write_text("half")
            raise Boom
    assert f.read_text() == "old" and len(list(tmp_path.iterdir())) == 1


def test_atomic_path_never_chmods_a_file_linked_into_it(tmp_path):
    """A file put at the temporary path as a hard link (or a symlink) is another name of someone's file: its mode
    stays; a file written there gets the umask's mode."""
    import os

    from msmae.utils import atomic_path

    user = tmp_path / "user.mp4"
    user.write_bytes(b"video")
    os.chmod(user, 0o600)
    for kind in ("hard", "sym"):
        with atomic_path(tmp_path / "out" / f"{kind}.mp4") as tmp:
            tmp.unlink()
            (os.link if kind == "hard" else os.symlink)(user, tmp)
        assert user.stat().st_mode & 0o777 == 0o600, kind
    with atomic_path(tmp_path / "out" / "new.txt") as tmp:
        tmp.write_text("x")
    umask = os.umask(0o022)
    os.umask(umask)
    assert (tmp_path / "out" / "new.txt").stat().st_mode & 0o777 == 0o666 & ~umask
