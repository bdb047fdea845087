"""MS-MAE model: config registry, embedding, encoder, attention weights, decoder (issue 3 items 1 and 7)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from msmae.layout import get_layout
from msmae.models import MSMAE, SIZES, ModelConfig, MultiStreamEncoder, make_visible, model_config
from msmae.models.attention import Attention
from msmae.models.embed import sinusoidal_encoding

torch.set_num_threads(1)


def _inputs(cfg, b=2, t=14, seed=0, lengths=None):
    g = torch.Generator().manual_seed(seed)
    k = cfg.layout.num_points
    present = torch.rand(b, t, k, generator=g) > 0.2
    coords = torch.randn(b, t, k, 2, generator=g) * present[..., None]
    frame_valid = torch.ones(b, t, dtype=torch.bool)
    for i, n in enumerate(lengths or []):
        frame_valid[i, n:] = False
    return coords, present, frame_valid


# ---------------------------------------------------------------------- config
def test_config_defaults_are_the_papers_and_sizes_resolve():
    paper = model_config("paper")
    assert paper == ModelConfig()
    assert (paper.cubelet, paper.dim, paper.depth, paper.heads) == (4, 512, 8, 8)
    assert (paper.decoder_dim, paper.decoder_depth, paper.decoder_heads, paper.mlp_ratio) == (512, 4, 8, 4.0)
    tiny = model_config("tiny", streams="body,hands,face")
    assert tiny.dim == SIZES["tiny"]["dim"] < paper.dim and tiny.layout.num_points == 160
    assert ModelConfig.from_dict(tiny.to_dict()) == tiny
    with pytest.raises(ValueError, match="unknown model size 'huge'"):
        model_config("huge")
    with pytest.raises(ValueError, match="unknown model config fields \\['width'\\]"):
        model_config("tiny", width=3)
    with pytest.raises(ValueError, match="unknown fields"):
        ModelConfig.from_dict({"dim": 8, "colour": 1})
    with pytest.raises(ValueError, match="not divisible"):
        model_config("tiny", dim=130)
    with pytest.raises(ValueError, match="unknown stream"):
        model_config("tiny", streams="body,feet")


# ---------------------------------------------------------------------- every size and stream set
@pytest.mark.parametrize("size", ["tiny", "paper"])
@pytest.mark.parametrize("streams", ["body,hands", "body,hands,face"])
def test_forward_backward_shapes_counts_and_gradients(size, streams):
    torch.manual_seed(0)
    cfg = model_config(size, streams=streams)
    model = MSMAE(config=cfg)
    coords, present, frame_valid = _inputs(cfg, b=2, t=14, lengths=[14, 9])   # 4 and 3 tokens per stream
    p, k = len(cfg.layout.streams), cfg.layout.num_points
    out = model(coords, present, frame_valid, mask_ratio=0.5, generator=torch.Generator().manual_seed(0))
    assert out.pred.shape == out.target.shape == (2, 4, 4, k, 2)              # frame layout (B, Nt, S, K, 2)
    assert out.weight.shape == (2, 4, 4, k)
    assert out.token_valid[:, 0].sum(dim=1).tolist() == [4, 3]
    # round(0.5 * 4) = 2 and round(0.5 * 3) = 2 masked per stream
    assert out.masked.sum(dim=2).tolist() == [[2] * p, [2] * p]
    assert out.visible.sum(dim=2).tolist() == [[2] * p, [1] * p]
    enc = model.forward_encoder(coords, frame_valid, out.visible)
    assert enc.tokens.shape == (2, 2 * p, cfg.dim)            # the encoder sees visible tokens only
    assert enc.padding.sum(dim=1).tolist() == [0, p]
    assert torch.isfinite(out.loss) and out.loss.item() > 0
    out.loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(param.grad).all(), name
    assert model.mask_token.grad.abs().sum() > 0 and model.encoder.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_bf16_autocast_forward_backward_on_cpu():
    torch.manual_seed(0)
    model = MSMAE(config=model_config("tiny", streams="body,hands,face"))
    coords, present, frame_valid = _inputs(model.config, t=20, lengths=[20, 11])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(coords, present, frame_valid)
    assert out.loss.dtype == torch.float32
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_bad_inputs_give_clear_errors():
    model = MSMAE(config=model_config("tiny"))
    coords, present, frame_valid = _inputs(model.config)
    with pytest.raises(ValueError, match="coords must be \\(B, T, 48, 2\\)"):
        model(coords[:, :, :40], present[:, :, :40], frame_valid)
    with pytest.raises(ValueError, match="present must be"):
        model(coords, present[:, :5], frame_valid)
    with pytest.raises(ValueError, match="frame_valid must be"):
        model.encoder(coords, frame_valid[:, :3])
    with pytest.raises(ValueError, match="visible must be"):
        model.encoder(coords, frame_valid, visible=torch.ones(2, 3, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="out of range"):
        model.encoder(coords, frame_valid, return_attention=[4])


# ---------------------------------------------------------------------- embedding
def test_tokenize_pads_time_and_marks_valid_tokens():
    enc = MultiStreamEncoder(config=model_config("tiny"))
    coords, _, frame_valid = _inputs(enc.config, b=3, t=10, lengths=[10, 8, 9])
    tokens, token_valid = enc.tokenize(coords, frame_valid)
    assert tokens.shape == (3, 3, 3, 128)                     # ceil(10 / 4) = 3 tokens per stream
    assert token_valid[:, 0].tolist() == [[True, True, True], [True, True, False], [True, True, True]]
    assert torch.equal(token_valid, enc.token_valid(frame_valid))
    assert (token_valid == token_valid[:, :1]).all()          # validity is per time step, same for all streams


def test_embedding_is_linear_then_conv1d_plus_shared_positions():
    torch.manual_seed(0)
    enc = MultiStreamEncoder(config=model_config("tiny", streams="body,hands,face"))
    emb = enc.embed
    assert set(emb.linear) == set(emb.conv) == {"body", "hand", "face"}   # one module pair for both hands
    coords, _, frame_valid = _inputs(enc.config, b=1, t=8)
    tokens, _ = enc.tokenize(coords, frame_valid)
    pe = sinusoidal_encoding(2, 128)
    for p, (name, group) in enumerate([("body", "body"), ("left_hand", "hand"), ("right_hand", "hand"),
                                       ("face", "face")]):
        x = coords[0, :, enc.layout.stream_slice(name)].flatten(1)               # (T, K_p*2)
        h = emb.linear[group](x).T[None]                                         # (1, C, T)
        ref = F.conv1d(h, emb.conv[group].weight, emb.conv[group].bias, stride=4)[0].T + pe
        torch.testing.assert_close(tokens[0, p], ref, rtol=1e-4, atol=1e-4)


def test_hands_share_weights_and_positions_are_the_same_for_every_stream():
    torch.manual_seed(0)
    enc = MultiStreamEncoder(config=model_config("tiny"))
    coords, _, frame_valid = _inputs(enc.config, b=1, t=12)
    lh, rh = enc.layout.stream_slice("left_hand"), enc.layout.stream_slice("right_hand")
    coords[:, :, rh] = coords[:, :, lh]
    tokens, _ = enc.tokenize(coords, frame_valid)
    torch.testing.assert_close(tokens[0, 1], tokens[0, 2], rtol=0, atol=0)
    zero, _ = enc.tokenize(torch.zeros_like(coords), frame_valid)    # bias only + PE: same steps in all streams
    steps = zero[0] - zero[0, :, :1]
    expected = sinusoidal_encoding(3, 128) - sinusoidal_encoding(3, 128)[:1]
    for p in range(3):
        torch.testing.assert_close(steps[p], expected, rtol=1e-5, atol=1e-5)
    pe = sinusoidal_encoding(5, 8)
    assert pe[0].tolist() == [0, 1, 0, 1, 0, 1, 0, 1]
    assert pe[3, 0].item() == pytest.approx(math.sin(3)) and pe[3, 3].item() == pytest.approx(math.cos(3 / 10))


# ---------------------------------------------------------------------- encoder
def test_encoder_keeps_visible_valid_tokens_in_stream_then_time_order():
    torch.manual_seed(0)
    enc = MultiStreamEncoder(config=model_config("tiny")).eval()
    coords, _, frame_valid = _inputs(enc.config, b=3, t=24, lengths=[24, 13, 5])
    token_valid = enc.token_valid(frame_valid)
    visible = make_visible(token_valid, 0.5, "diff", torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = enc(coords, frame_valid, visible=visible)
    keep = (token_valid & visible).reshape(3, -1)
    assert out.tokens.shape == (3, int(keep.sum(dim=1).max()), 128)
    for b in range(3):
        real = ~out.padding[b]
        assert int(real.sum()) == int(keep[b].sum())
        expected = torch.nonzero(keep[b])[:, 0]
        got = out.stream_index[b, real] * 6 + out.time_index[b, real]
        assert torch.equal(got, expected)
        assert (out.stream_index[b, ~real] == -1).all()
    with torch.no_grad():
        full = enc(coords, frame_valid)
    grid, valid = enc.per_stream(full, nt=6)
    assert torch.equal(valid, token_valid)
    assert grid.shape == (3, 3, 6, 128) and not grid[~valid].any()
    torch.testing.assert_close(grid[0].reshape(18, 128), full.tokens[0])


def test_padding_does_not_change_real_tokens():
    torch.manual_seed(0)
    model = MSMAE(config=model_config("tiny")).eval()
    cfg = model.config
    short, present, fv = _inputs(cfg, b=1, t=12, seed=1)
    long_, present_l, fv_l = _inputs(cfg, b=2, t=28, seed=2, lengths=[28, 12])
    long_[1, :12], present_l[1, :12] = short[0], present[0]
    long_[1, 12:] = 5.0                                                    # junk in the padding frames
    visible_short = make_visible(model.encoder.token_valid(fv), 0.5, "diff", torch.Generator().manual_seed(0))
    visible = torch.ones(2, 3, 7, dtype=torch.bool)
    visible[1, :, :3] = visible_short[0]
    with torch.no_grad():
        a = model.encoder(short, fv)
        b = model.encoder(long_, fv_l)
        ga, _ = model.encoder.per_stream(a, 3)
        gb, vb = model.encoder.per_stream(b, 7)
        torch.testing.assert_close(gb[1, :, :3], ga[0], rtol=1e-5, atol=1e-5)
        assert not vb[1, :, 3:].any()
        # and the decoder: same predictions for the short sample's tokens, alone or in a padded batch
        pa = model.forward_decoder(model.forward_encoder(short, fv, visible_short), model.encoder.token_valid(fv))
        pb = model.forward_decoder(model.forward_encoder(long_, fv_l, visible), model.encoder.token_valid(fv_l))
        torch.testing.assert_close(pb[1, :3], pa[0], rtol=1e-5, atol=1e-5)          # (Nt, S, K, 2)


def test_prefix_tokens_come_first_without_positional_encoding():
    torch.manual_seed(0)
    enc = MultiStreamEncoder(config=model_config("tiny")).eval()
    coords, _, frame_valid = _inputs(enc.config, b=2, t=8, lengths=[8, 4])
    prefix = torch.randn(2, 1, 128)
    seen = {}
    hook = enc.blocks[0].register_forward_pre_hook(lambda m, args: seen.update(x=args[0].clone()))
    with torch.no_grad():
        out = enc(coords, frame_valid, prefix=prefix)
    hook.remove()
    assert out.tokens.shape == (2, 7, 128)
    assert torch.equal(seen["x"][:, :1], prefix)
    assert out.stream_index[:, 0].tolist() == [-1, -1] and out.time_index[:, 0].tolist() == [-1, -1]
    assert out.padding.sum(dim=1).tolist() == [0, 3] and not out.padding[:, 0].any()


# ---------------------------------------------------------------------- attention
@pytest.mark.parametrize("grad", [False, True])
def test_attention_weights_match_the_fused_path(grad):
    torch.manual_seed(0)
    enc = MultiStreamEncoder(config=model_config("tiny", streams="body,hands,face")).eval()
    coords, _, frame_valid = _inputs(enc.config, b=2, t=20, lengths=[20, 9])
    seen = {}
    hook = enc.blocks[-1].attn.register_forward_pre_hook(lambda m, args: seen.update(x=args[0].detach()))
    with torch.set_grad_enabled(grad):
        fused = enc(coords, frame_valid)
        plain = enc(coords, frame_valid, return_attention=(0, -1))
    hook.remove()
    assert set(fused.attentions) == set() and set(plain.attentions) == {0, 3}
    torch.testing.assert_close(plain.tokens, fused.tokens, rtol=1e-5, atol=1e-5)
    w = plain.attentions[3]
    assert w.shape == (2, 4, 20, 20)
    torch.testing.assert_close(w.sum(dim=-1), torch.ones(2, 4, 20))
    assert not w[1][..., ~(~plain.padding[1])].any()                      # nothing flows from padding keys
    assert plain.padding[1].sum() == 8
    # recompute softmax(QK^T / sqrt(d)) from the layer's input
    x = seen["x"]
    attn = enc.blocks[-1].attn
    q, k, _ = attn.qkv(x).view(2, 20, 3, 4, 32).permute(2, 0, 3, 1, 4)
    s = (q @ k.transpose(-2, -1)) / math.sqrt(32)
    s = s.masked_fill(plain.padding[:, None, None, :], float("-inf"))
    torch.testing.assert_close(w, s.softmax(dim=-1), rtol=1e-5, atol=1e-6)


def test_attention_module_paths_agree_with_masks():
    torch.manual_seed(0)
    attn = Attention(dim=32, heads=4)
    x = torch.randn(3, 9, 32)
    mask = torch.ones(3, 1, 1, 9, dtype=torch.bool)
    mask[1, ..., 6:] = False
    with torch.no_grad():
        fused, none = attn(x, mask)
        plain, w = attn(x, mask, need_weights=True)
    assert none is None and w.shape == (3, 4, 9, 9)
    torch.testing.assert_close(plain, fused, rtol=1e-5, atol=1e-5)
    assert not w[1, ..., 6:].any()



def test_chunked_training_path_equals_the_fused_path_outputs_and_gradients(monkeypatch):
    # With gradients on CPU, attention goes through the batch a few samples at a time: tiles of 2 and of 1
    # sample's scores (4 heads x 9 x 9) make chunks of 2 + 1 and 1 + 1 + 1 samples; sample 1 has padding.
    torch.manual_seed(0)
    attn = Attention(dim=32, heads=4)
    x = torch.randn(3, 9, 32)
    mask = torch.ones(3, 1, 1, 9, dtype=torch.bool)
    mask[1, ..., 6:] = False
    grads, default = {}, Attention.SCORE_TILE
    for tile in (default, 2 * 4 * 9 * 9, 4 * 9 * 9):
        monkeypatch.setattr(Attention, "SCORE_TILE", tile)
        xi = x.clone().requires_grad_(True)
        out, _ = attn(xi, mask)
        (out * torch.arange(32.0)).sum().backward()
        grads[tile] = (out.detach(), xi.grad, attn.qkv.weight.grad.clone())
        attn.zero_grad()
    with torch.no_grad():
        fused, _ = attn(x, mask)
    for out, gx, gw in grads.values():
        torch.testing.assert_close(out, fused, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(gx, grads[default][1], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(gw, grads[default][2], rtol=1e-5, atol=1e-5)

# ---------------------------------------------------------------------- learning
def _smooth_batch(cfg, b=4, t=32, seed=0):
    """Keypoints moving on smooth random sinusoids (something a model can reconstruct from context)."""
    g = torch.Generator().manual_seed(seed)
    k = cfg.layout.num_points
    base = torch.randn(b, 1, k, 2, generator=g)
    amp = 0.5 * torch.rand(b, 1, k, 2, generator=g)
    freq = 0.1 + 0.2 * torch.rand(b, 1, 1, 1, generator=g)
    phase = 6.28 * torch.rand(b, 1, k, 2, generator=g)
    time = torch.arange(t, dtype=torch.float32)[None, :, None, None]
    coords = base + amp * torch.sin(freq * time + phase)
    present = torch.ones(b, t, k, dtype=torch.bool)
    present[:, :, 6:27] = torch.rand(b, t, 1, generator=g) > 0.2      # left hand sometimes not detected
    coords = coords * present[..., None]
    return coords, present, torch.ones(b, t, dtype=torch.bool)


def test_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    model = MSMAE(config=model_config("tiny"))
    coords, present, frame_valid = _smooth_batch(model.config)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.95))
    losses = []
    for _ in range(100):
        out = model(coords, present, frame_valid, mask_ratio=0.5, generator=torch.Generator().manual_seed(0))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert losses[-1] < 0.05 * losses[0], (losses[0], losses[-1])


def test_dropout_config_trains_and_eval_is_deterministic():
    torch.manual_seed(0)
    model = MSMAE(config=model_config("tiny", dropout=0.1))
    coords, present, frame_valid = _inputs(model.config, t=16)
    out = model(coords, present, frame_valid, generator=torch.Generator().manual_seed(0))
    out.loss.backward()
    model.eval()
    with torch.no_grad():
        a = model(coords, present, frame_valid, generator=torch.Generator().manual_seed(0)).loss
        b = model(coords, present, frame_valid, generator=torch.Generator().manual_seed(0)).loss
    assert a.item() == b.item()
    assert get_layout(model.config.streams) == model.layout
