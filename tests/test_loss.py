"""The masked reconstruction loss (issue 3 item 3): MSE over masked tokens and present keypoints only."""

from __future__ import annotations

import pytest
import torch

from msmae.models import MSMAE, model_config

torch.set_num_threads(1)


def _batch(model, b=2, t=22, seed=0, missing=0.3):
    g = torch.Generator().manual_seed(seed)
    k = model.layout.num_points
    present = torch.rand(b, t, k, generator=g) > missing
    coords = torch.randn(b, t, k, 2, generator=g) * present[..., None]
    frame_valid = torch.ones(b, t, dtype=torch.bool)
    frame_valid[1, 13:] = False
    return coords, present, frame_valid


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MSMAE(config=model_config("tiny", streams="body,hands")).eval()


def _loss(model, coords, present, frame_valid, pred, masked):
    return model.forward_loss(coords, present, frame_valid, pred, masked)[0]


def test_loss_matches_a_brute_force_reference(model):
    coords, present, frame_valid = _batch(model)
    out = model(coords, present, frame_valid, generator=torch.Generator().manual_seed(1))
    s = model.config.cubelet
    sse, count = 0.0, 0
    for b in range(coords.shape[0]):
        for p, stream in enumerate(model.layout.streams):
            sl = model.layout.stream_slice(stream.name)
            for tok in range(out.masked.shape[2]):
                if not out.masked[b, p, tok]:
                    continue
                for j in range(s):
                    f = tok * s + j
                    if f >= coords.shape[1] or not frame_valid[b, f]:
                        continue
                    for kk in range(stream.size):
                        if present[b, f, sl.start + kk]:
                            d = out.pred[b, tok, j, sl.start + kk].detach().double() - coords[b, f, sl.start + kk].double()
                            sse += float((d ** 2).sum())
                            count += 2
    assert count > 0 and float(out.count) == count
    assert out.loss.item() == pytest.approx(sse / count, rel=1e-5)
    # a keypoint counts only while its own stream's token is masked: the weight follows each stream's mask
    for p, stream in enumerate(model.layout.streams):
        sl = model.layout.stream_slice(stream.name)
        assert not out.weight[..., sl][~out.masked[:, p]].any()


def test_target_at_missing_keypoints_and_visible_tokens_does_not_matter(model):
    coords, present, frame_valid = _batch(model)
    out = model(coords, present, frame_valid, generator=torch.Generator().manual_seed(2))
    base = _loss(model, coords, present, frame_valid, out.pred, out.masked)
    changed = coords.clone()
    changed[~present] = 50.0                                       # every missing keypoint
    # every keypoint of frames that only belong to visible tokens
    vis_frames = out.visible[:, 0].repeat_interleave(model.config.cubelet, dim=1)[:, : coords.shape[1]]
    sl = model.layout.stream_slice("body")
    changed[:, :, sl][vis_frames] = -50.0
    assert _loss(model, changed, present, frame_valid, out.pred, out.masked) == base
    # ...while a present keypoint of a masked token does matter
    b, tok = (int(i) for i in torch.nonzero(out.masked[:, 0])[0])   # a masked body token
    f = tok * model.config.cubelet
    k = int(torch.nonzero(present[b, f, sl])[0])
    changed[b, f, sl.start + k] += 3.0
    assert _loss(model, changed, present, frame_valid, out.pred, out.masked) != base


def test_whole_model_ignores_missing_keypoints_of_masked_tokens(model):
    # masked tokens never reach the encoder, so a change at their missing keypoints changes nothing at all
    coords, present, frame_valid = _batch(model)
    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    out = model(coords, present, frame_valid, generator=gen())
    tok_masked = out.masked.any(dim=1).repeat_interleave(model.config.cubelet, dim=1)[:, : coords.shape[1]]
    visible_any = out.visible.any(dim=1).repeat_interleave(model.config.cubelet, dim=1)[:, : coords.shape[1]]
    only_masked = tok_masked & ~visible_any                              # frames hidden in every stream
    changed = coords.clone()
    sel = ~present & only_masked[..., None]
    changed[sel] = 9.0
    assert sel.any()
    out2 = model(changed, present, frame_valid, generator=gen())
    assert torch.equal(out2.pred, out.pred) and out2.loss.item() == out.loss.item()


def test_fully_missing_token_adds_nothing(model):
    coords, present, frame_valid = _batch(model, missing=0.0)
    out = model(coords, present, frame_valid, generator=torch.Generator().manual_seed(3))
    b, p, tok = (int(i) for i in torch.nonzero(out.masked)[0])
    s = model.config.cubelet
    sl = model.layout.stream_slice(model.layout.streams[p].name)
    present2 = present.clone()
    present2[b, tok * s:(tok + 1) * s, sl] = False
    coords2 = coords * present2[..., None]
    loss2, _, w2, count2 = model.forward_loss(coords2, present2, frame_valid, out.pred, out.masked)
    assert not w2[b, tok, :, sl].any()
    assert float(count2) == float(out.count) - 2 * s * model.layout.streams[p].size
    # the loss is the mean over the other tokens' coordinates: any prediction at that token is irrelevant
    pred3 = out.pred.clone()
    pred3[b, tok, :, sl] = 123.0
    assert _loss(model, coords2, present2, frame_valid, pred3, out.masked) == loss2


def test_loss_values_for_known_predictions(model):
    coords, present, frame_valid = _batch(model)
    out = model(coords, present, frame_valid, generator=torch.Generator().manual_seed(4))
    exact = out.target.clone()
    assert float(_loss(model, coords, present, frame_valid, exact, out.masked)) == 0.0
    off = _loss(model, coords, present, frame_valid, exact + 0.3, out.masked)
    assert float(off) == pytest.approx(0.09, rel=1e-5)             # 0.3^2 on every counted coordinate
    assert out.loss.item() > float(off) > 0.0


def test_nothing_counted_gives_zero_loss_with_a_gradient_path(model):
    coords, present, frame_valid = _batch(model)
    present = torch.zeros_like(present)
    coords = torch.zeros_like(coords)
    model.zero_grad()
    out = model(coords, present, frame_valid, generator=torch.Generator().manual_seed(0))
    assert out.loss.item() == 0.0 and float(out.count) == 0.0
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() and not g.any() for g in grads)


def test_padding_frames_never_enter_the_loss(model):
    coords, present, frame_valid = _batch(model)
    out = model(coords, present, frame_valid, generator=torch.Generator().manual_seed(6))
    junk_c, junk_p = coords.clone(), present.clone()
    junk_c[~frame_valid] = 77.0
    junk_p[~frame_valid] = True
    loss2, _, weight2, _ = model.forward_loss(junk_c, junk_p, frame_valid, out.pred, out.masked)
    assert loss2.item() == out.loss.item()
    assert torch.equal(weight2, out.weight)


def test_loss_is_float32_under_bf16_autocast(model):
    coords, present, frame_valid = _batch(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(coords, present, frame_valid, generator=torch.Generator().manual_seed(0))
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    with torch.no_grad():
        ref = model(coords, present, frame_valid, generator=torch.Generator().manual_seed(0))
    assert out.loss.item() == pytest.approx(float(ref.loss), rel=0.05)


def test_stream_losses_add_up_to_the_loss(model):
    coords, present, frame_valid = _batch(model)
    out = model(coords, present, frame_valid, generator=torch.Generator().manual_seed(7))
    per = model.stream_losses(out)
    assert set(per) == set(model.layout.names) and all(v > 0 for v in per.values())
    counts = {s.name: float(out.weight[..., model.layout.stream_slice(s.name)].sum()) * 2 for s in model.layout.streams}
    total = sum(per[n] * counts[n] for n in per) / sum(counts.values())
    assert total == pytest.approx(out.loss.item(), rel=1e-5)
    # a change to one stream's predictions changes that stream's loss only
    first = model.layout.streams[0].name
    out.pred = out.pred.detach().clone()
    out.pred[..., model.layout.stream_slice(first), :] += 1.0
    per2 = model.stream_losses(out)
    assert per2[first] > per[first] and all(per2[n] == per[n] for n in per if n != first)
