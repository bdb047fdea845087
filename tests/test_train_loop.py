"""The shared fine-tuning loop and what it fixed once for ISLR, the probe and SLT (issue 12, items 2-4):
per-epoch augmentation that reaches persistent DataLoader workers, fp16 loss scaling saved with the
checkpoint (pre-training too), and SLT validation decoded in shares by several processes."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from msmae.data.clips import Clip
from msmae.data.sentences import SentenceDataset, collate
from msmae.train import checkpoint as ck
from msmae.train.amp import grad_scaler, optimizer_step
from msmae.train.loop import EpochSettings, fit_epochs


# ------------------------------------------------------------------------ per-epoch randomness in workers
def numbered_clip(n: int) -> Clip:
    """A clip whose frame t holds the number t everywhere: a drawn item shows which frames it took."""
    coords = np.repeat(np.arange(n, dtype=np.float16)[:, None, None], 3, axis=1).repeat(2, axis=2)
    return Clip(coords, np.ones((n, 3), bool), 25.0)


def frames_per_epoch(seed: int, workers: int, epochs: int = 3) -> list[dict[int, list[int]]]:
    """Train 3 epochs in the real loop (DataLoader with persistent workers) and record, per epoch, the frames
    each SLT training clip was given."""
    ds = SentenceDataset([numbered_clip(60), numbered_clip(45), numbered_clip(80)], [[5, 2], [6, 2], [7, 2]],
                         train=True, drop_duplicate=0.2, seed=seed)
    seen: list[dict[int, list[int]]] = []
    model = torch.nn.Linear(2, 1)

    def step(net, batch):  # one batch of all 3 clips = one epoch
        seen.append({})
        for j, i in enumerate(batch["index"].tolist()):
            n = int(batch["frame_valid"][j].sum())
            seen[-1][i] = batch["coords"][j, :n, 0, 0].round().int().tolist()
        return net(batch["coords"].mean(dim=(1, 2))).pow(2).mean()

    fit_epochs(model, ds, settings=EpochSettings(epochs=epochs, batch_size=3, lr=1e-3, seed=seed,
                                                 num_workers=workers), step=step, collate_fn=collate, progress=False)
    return seen


def test_slt_frame_deletion_changes_every_epoch_in_persistent_workers():
    runs = frames_per_epoch(seed=3, workers=2)
    assert len(runs) == 3 and all(sorted(r) == [0, 1, 2] for r in runs)
    for clip in range(3):
        drawn = [tuple(r[clip]) for r in runs]
        assert len(set(drawn)) == 3, f"clip {clip}: the same frames in two epochs"
        assert all(list(d) != list(range(len(d))) for d in drawn)  # frames were deleted or duplicated
    # Reproducible for a seed (and the same with or without worker processes), different for another seed.
    assert frames_per_epoch(seed=3, workers=2) == runs
    assert frames_per_epoch(seed=3, workers=0) == runs
    assert frames_per_epoch(seed=4, workers=0) != runs


# -------------------------------------------------------------------------------------------- fp16
def test_fp16_loss_scaling_keeps_gradients_that_fp16_would_flush_to_zero():
    def grads(scaled: bool) -> torch.Tensor:
        torch.manual_seed(0)
        lin = torch.nn.Linear(8, 8)
        x = torch.randn(4, 8)
        opt = torch.optim.SGD(lin.parameters(), lr=0.0)
        scaler = grad_scaler(torch.float16 if scaled else None, torch.device("cpu"))
        with torch.autocast("cpu", dtype=torch.float16):
            loss = lin(x).float().sum() * 1e-8        # gradients below fp16's smallest number
        scaler.scale(loss).backward()
        optimizer_step(opt, scaler, lin.parameters(), grad_clip=1.0)   # unscales before clipping
        return lin.weight.grad

    assert torch.count_nonzero(grads(scaled=False)) == 0                     # underflow without scaling
    g = grads(scaled=True)
    assert torch.count_nonzero(g) == g.numel()
    assert g.abs().max() < 1e-6                                              # unscaled back to the true size


class Pairs(torch.utils.data.Dataset):
    """y = 40 x + 7: large errors at first, so fp16 gradients overflow and the scaler has to back off."""

    def __init__(self, n: int = 16):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x.sum(1, keepdim=True) * 40 + 7

    def __len__(self):
        return len(self.x)

    def __getitem__(self, key):
        i = key[1] if isinstance(key, tuple) else key
        return {"x": self.x[i], "y": self.y[i], "index": i}


def fp16_fit(out: Path, *, epochs: int = 4, resume: bool = False):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))

    def step(net, batch):
        return torch.nn.functional.mse_loss(net(batch["x"]).float(), batch["y"])

    return fit_epochs(model, Pairs(), settings=EpochSettings(epochs=epochs, batch_size=4, lr=1e-2, warmup_epochs=1,
                                                             precision="fp16", grad_clip=1.0),
                      step=step, out=out, resume=resume, progress=False)


def interrupt_after_epoch(monkeypatch, epoch: int) -> None:
    """Saving ``last`` after ``epoch`` raises KeyboardInterrupt once the checkpoint is written, as a kill right
    after it; ``monkeypatch.undo()`` brings the real save back."""
    real_save = ck.save_checkpoint

    def interrupting(ckpt_dir, **kw):
        out = real_save(ckpt_dir, **kw)
        if Path(ckpt_dir).name == "last" and kw["config"]["epoch"] == epoch:
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(ck, "save_checkpoint", interrupting)


def test_fp16_fine_tuning_saves_the_scaler_and_resumes_exactly(tmp_path, monkeypatch):
    fp16_fit(tmp_path / "full")
    st = torch.load(tmp_path / "full" / "checkpoints" / "last" / ck.TRAIN_STATE, weights_only=True)
    assert st["scaler"]["scale"] < 65536.0          # it backed off from overflowing steps: state worth keeping
    interrupt_after_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        fp16_fit(tmp_path / "part")
    monkeypatch.undo()
    fp16_fit(tmp_path / "part", resume=True)
    a, b = (ck.load_state_dict(tmp_path / r / "checkpoints" / "last") for r in ("full", "part"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    st_b = torch.load(tmp_path / "part" / "checkpoints" / "last" / ck.TRAIN_STATE, weights_only=True)
    assert st_b["scaler"] == st["scaler"]
    assert (tmp_path / "full" / "log.csv").read_text() == (tmp_path / "part" / "log.csv").read_text()


def test_pretraining_in_fp16_scales_the_loss_and_resumes_exactly(tmp_path):
    from test_pretrain import cfg_of, random_walk_corpus

    from msmae.tasks.pretrain import pretrain

    data = random_walk_corpus(tmp_path / "c", n=4)
    cfg = cfg_of("train.steps=6", "train.checkpoint_every=3", "train.precision=fp16", "train.device=cpu")
    full = pretrain(cfg, data, tmp_path / "full", progress=False)
    assert np.isfinite(full["final_loss"])
    st = torch.load(ck.latest_checkpoint(tmp_path / "full") / ck.TRAIN_STATE, weights_only=True)
    assert set(st["scaler"]) >= {"scale", "growth_factor", "_growth_tracker"}
    pretrain(cfg, data, tmp_path / "part", progress=False)
    run = tmp_path / "part"
    import shutil

    for p in (run / "checkpoints").glob("step_*"):
        if p.name != "step_0000003":
            shutil.rmtree(p)
    (run / "checkpoints" / "LATEST").write_text("step_0000003\n")
    pretrain(cfg, data, run, resume=True, progress=False)
    a, b = ck.load_state_dict(tmp_path / "full"), ck.load_state_dict(run)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 loss scaling on a GPU needs CUDA (none here)")
def test_fp16_on_cuda_trains_with_finite_loss_and_a_saved_scale(tmp_path):
    from test_pretrain import cfg_of, random_walk_corpus

    from msmae.tasks.pretrain import pretrain

    data = random_walk_corpus(tmp_path / "c", n=4)
    m = pretrain(cfg_of("train.steps=4", "train.precision=fp16", "train.device=cuda"), data, tmp_path / "r",
                 progress=False)
    assert np.isfinite(m["final_loss"])
    st = torch.load(ck.latest_checkpoint(tmp_path / "r") / ck.TRAIN_STATE, weights_only=True)
    assert st["scaler"]["scale"] > 0
    out = fp16_fit(tmp_path / "ft")
    assert all(np.isfinite(r["loss"]) for r in out.history)


# ------------------------------------------------------------------------- distributed SLT validation
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tiny_translator(mbart_dir: str):
    from msmae.models import MultiStreamEncoder, model_config
    from msmae.models.translator import load_mbart
    from msmae.tasks.slt import TranslatorSection, build_translator

    mbart, tok = load_mbart(mbart_dir, lang="de_DE")
    torch.manual_seed(0)
    enc = MultiStreamEncoder(config=model_config("tiny", streams="body,hands", dim=32, depth=1, heads=2))
    return build_translator(enc, mbart, TranslatorSection(num_beams=2, max_new_tokens=8)).eval(), tok


def _clips():
    from msmae.layout import get_layout

    rng = np.random.default_rng(0)
    k = get_layout("body,hands").num_points
    return [Clip(rng.normal(size=(n, k, 2)).astype(np.float16), np.ones((n, k), bool), 25.0)
            for n in (9, 30, 14, 22, 5)]


def _translate(rank: int, world: int, port: int, mbart_dir: str, out: str) -> None:
    import torch.distributed as dist

    from msmae.tasks.slt import translate
    from msmae.train.distributed import DistInfo

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        model, tok = _tiny_translator(mbart_dir)
        hyps = translate(model, tok, _clips(), lang="de_DE", num_beams=2, max_new_tokens=8, batch_size=2,
                         info=DistInfo(rank=rank, world_size=world))
        Path(out, f"rank{rank}.json").write_text(json.dumps(hyps))
    finally:
        dist.destroy_process_group()


def test_slt_validation_split_over_two_gloo_processes_equals_one_process(tmp_path):
    import torch.multiprocessing as mp

    from msmae.models.translator import make_tiny_mbart
    from msmae.tasks.slt import translate

    texts = ["am tag scheint die sonne", "in der nacht regnet es", "morgen wird es kalt", "der wind weht"] * 3
    mbart = make_tiny_mbart(tmp_path / "mbart", texts, vocab_size=80, d_model=16, heads=2, ffn_dim=32)
    model, tok = _tiny_translator(str(mbart))
    single = translate(model, tok, _clips(), lang="de_DE", num_beams=2, max_new_tokens=8, batch_size=2)
    assert len(set(single)) > 1                    # distinct sentences: the order check means something
    mp.spawn(_translate, args=(2, _free_port(), str(mbart), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):                          # every rank gets every hypothesis, in the input's order
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == single
