"""Translator: the real mBART-50 loading path on a tiny model directory, what trains, fusion, generation."""

from __future__ import annotations

import shutil

import pytest
import torch

from msmae.models import MultiStreamEncoder, model_config
from msmae.models.translator import (PoseTranslator, TranslatorSetupError, check_mbart_dir, check_tokenizer,
                                     decode, encode_targets, load_mbart, make_tiny_mbart)

TEXTS = [
    "am tag scheint die sonne im süden", "in der nacht regnet es im norden", "morgen wird es kalt und windig",
    "the weather is nice today", "we are going to paint the wall", "hello my friend how are you",
] * 4


@pytest.fixture(scope="module")
def mbart_dir(tmp_path_factory):
    return make_tiny_mbart(tmp_path_factory.mktemp("mbart"), TEXTS, vocab_size=200, d_model=32, heads=2,
                           ffn_dim=64)


def tiny_encoder(streams="body,hands"):
    torch.manual_seed(0)
    return MultiStreamEncoder(config=model_config("tiny", streams=streams, dim=32, depth=1, heads=2))


def batch(b=2, t=24, k=48, lengths=(24, 13)):
    g = torch.Generator().manual_seed(1)
    coords = torch.randn(b, t, k, 2, generator=g)
    frame_valid = torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]
    return coords, frame_valid


def test_tiny_dir_is_laid_out_like_the_release_and_loads(mbart_dir):
    for f in ("config.json", "model.safetensors", "sentencepiece.bpe.model", "tokenizer_config.json",
              "special_tokens_map.json"):
        assert (mbart_dir / f).is_file(), f
    model, tok = load_mbart(mbart_dir, lang="de_DE", sample_texts=TEXTS)
    assert type(tok).__name__ == "MBart50Tokenizer"  # the slow sentencepiece tokenizer
    assert len(tok) == model.config.vocab_size and len(tok.lang_code_to_id) == 52
    labels = encode_targets(tok, ["morgen wird es kalt", "hello my friend how are you"], lang="de_DE")
    assert labels[0, 0] == tok.lang_code_to_id["de_DE"] and (labels[:, 0] == labels[0, 0]).all()
    assert labels[0, (labels[0] >= 0).sum() - 1] == tok.eos_token_id
    assert (labels[0] == -100).any() and not (labels[1] == -100).any()  # shorter sentence padded with -100
    assert tok.decode(labels[0][labels[0] >= 0], skip_special_tokens=True) == "morgen wird es kalt"


def test_refuses_hub_names_and_incomplete_dirs(mbart_dir, tmp_path):
    with pytest.raises(TranslatorSetupError, match="hub name.*huggingface-cli download"):
        check_mbart_dir("facebook/mbart-large-50-many-to-many-mmt")
    with pytest.raises(TranslatorSetupError, match="is not a directory"):
        check_mbart_dir(tmp_path / "nothing")
    broken = tmp_path / "broken"
    shutil.copytree(mbart_dir, broken)
    (broken / "sentencepiece.bpe.model").unlink()
    with pytest.raises(TranslatorSetupError, match="missing sentencepiece.bpe.model"):
        load_mbart(broken)
    (broken / "sentencepiece.bpe.model").write_bytes(b"garbage")
    with pytest.raises(TranslatorSetupError, match="cannot load the sentencepiece tokenizer"):
        load_mbart(broken)


class FiftyEightTokens:
    """What a hub name gives offline: special tokens and language codes only."""
    lang_code_to_id = {f"xx_{i}": 250001 + i for i in range(52)}

    def __len__(self):
        return 58


def test_tokenizer_checks(mbart_dir):
    _, tok = load_mbart(mbart_dir)
    with pytest.raises(TranslatorSetupError, match="useless tokenizer: 58 tokens.*58-token"):
        check_tokenizer(FiftyEightTokens(), vocab_size=250054, lang="xx_1")
    with pytest.raises(TranslatorSetupError, match=f"has {len(tok)} tokens but the model's embedding table has 250054"):
        check_tokenizer(tok, vocab_size=250054, lang="de_DE")
    with pytest.raises(TranslatorSetupError, match="language code 'de' is not in the tokenizer"):
        check_tokenizer(tok, vocab_size=len(tok), lang="de")
    with pytest.raises(TranslatorSetupError, match="unknown to the tokenizer"):
        check_tokenizer(tok, vocab_size=len(tok), lang="zh_CN", sample_texts=["今天天气很好", "谢谢你的帮助"])
    check_tokenizer(tok, vocab_size=len(tok), lang="de_DE", sample_texts=TEXTS)


@pytest.mark.parametrize("freeze", [False, True])
def test_which_parameters_train(mbart_dir, freeze):
    model, tok = load_mbart(mbart_dir)
    tr = PoseTranslator(pose_encoder=tiny_encoder(), mbart=model, freeze_pose_encoder=freeze)
    named = dict(tr.named_parameters())
    lora = [n for n in named if "lora_" in n]
    assert lora and all(".decoder.layers." in n for n in lora)
    # names look like mbart.model.decoder.layers.0.self_attn.q_proj.lora_A.default.weight
    assert {n.split(".")[-4] for n in lora} == {"q_proj", "k_proj", "v_proj", "out_proj"}
    assert {n.split(".")[-5] for n in lora} == {"self_attn", "encoder_attn"}
    assert len(lora) == 2 * 2 * 4 * 2  # layers x attentions x projections x (A, B)
    for n, p in named.items():
        if n.startswith("mbart."):
            inner = n[len("mbart."):]
            expect = "lora_" in n or (inner.startswith("model.encoder.") and "embed_tokens" not in inner)
            assert p.requires_grad == expect, n
        elif n.startswith("encoder."):
            assert p.requires_grad == (not freeze), n
        else:
            assert n.startswith("projection.") and p.requires_grad
    assert not model.get_input_embeddings().weight.requires_grad and not model.lm_head.weight.requires_grad
    s = tr.trainable_summary()
    assert s["mbart_other_trainable"] == 0 and s["mbart_encoder_trainable"] == s["mbart_encoder_total"] > 0
    assert s["pose_encoder_trainable"] == (0 if freeze else s["pose_encoder_total"])
    # gradients reach exactly the trainable tensors
    coords, fv = batch()
    labels = encode_targets(tok, TEXTS[:2], lang="de_DE")
    tr.train()
    assert tr.encoder.training == (not freeze)
    tr(coords, fv, labels).loss.backward()
    for n, p in named.items():
        if p.requires_grad and not n.endswith("lora_B.default.weight") and "lora_A" not in n:
            assert p.grad is not None, n
        if not p.requires_grad:
            assert p.grad is None, n
    # LoRA B starts at zero, so only B gets a gradient at step 0; A's gradient is zero by construction
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in named.items() if "lora_B" in n)


def test_fusion_shapes_and_mean_values(mbart_dir):
    coords, fv = batch(lengths=(24, 13))
    enc = tiny_encoder()
    flat = PoseTranslator(pose_encoder=enc, mbart=load_mbart(mbart_dir)[0], fusion="flat")
    emb, mask = flat.encode_poses(coords, fv)
    nt, p = 6, 3  # 24 frames / S=4; body, left hand, right hand
    assert emb.shape == (2, p * nt, 32) and mask.tolist()[1] == [1] * (p * 4) + [0] * (p * 2)  # 13 frames -> 4 tokens
    mean = PoseTranslator(pose_encoder=enc, mbart=load_mbart(mbart_dir)[0], fusion="mean")
    emb, mask = mean.encode_poses(coords, fv)
    assert emb.shape == (2, nt, 32) and mask.tolist() == [[1] * 6, [1] * 4 + [0] * 2]
    out = enc(coords, fv)
    grid, valid = enc.per_stream(out, nt)
    manual = mean.projection(grid.mean(1))
    torch.testing.assert_close(emb[0], manual[0])
    torch.testing.assert_close(emb[1, :4], manual[1, :4])
    with pytest.raises(ValueError, match="exceed mBART's 512 positions"):
        flat.encode_poses(torch.zeros(1, 700, 48, 2), torch.ones(1, 700, dtype=torch.bool))


def test_frozen_encoder_does_not_move_and_state_round_trip(mbart_dir):
    torch.manual_seed(0)
    tr = PoseTranslator(pose_encoder=tiny_encoder(), mbart=load_mbart(mbart_dir)[0], freeze_pose_encoder=True)
    _, tok = load_mbart(mbart_dir)
    before = {k: v.clone() for k, v in tr.encoder.state_dict().items()}
    opt = torch.optim.AdamW([p for p in tr.parameters() if p.requires_grad], lr=1e-2)
    coords, fv = batch()
    labels = encode_targets(tok, TEXTS[:2], lang="de_DE")
    for _ in range(3):
        opt.zero_grad()
        tr(coords, fv, labels).loss.backward()
        opt.step()
    for k, v in tr.encoder.state_dict().items():
        assert torch.equal(v, before[k]), k
    # a fresh model from the same mBART directory + the trainable state reproduces the outputs
    sd = tr.trainable_state_dict()
    assert any(k.startswith("encoder.") for k in sd) and any("lora_" in k for k in sd)
    assert not any("embed_tokens" in k or "lm_head" in k for k in sd)
    fresh = PoseTranslator(pose_encoder=tiny_encoder(), mbart=load_mbart(mbart_dir)[0], freeze_pose_encoder=True)
    missing, unexpected = fresh.load_state_dict(sd, strict=False)
    # what the checkpoint leaves out is exactly the frozen mBART weights that come from the mBART directory
    assert not unexpected and missing
    for k in missing:
        assert k.startswith("mbart.") and "lora_" not in k, k
        assert not k.startswith("mbart.model.encoder.") or "embed_tokens" in k, k
    tr.eval(), fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(tr(coords, fv, labels).logits, fresh(coords, fv, labels).logits)


def test_learns_two_sentences_and_generates_with_forced_language(mbart_dir):
    torch.manual_seed(0)
    model, tok = load_mbart(mbart_dir)
    tr = PoseTranslator(pose_encoder=tiny_encoder(), mbart=model, fusion="mean")
    targets = ["am tag scheint die sonne im süden", "in der nacht regnet es im norden"]
    labels = encode_targets(tok, targets, lang="de_DE")
    coords, fv = batch(lengths=(24, 20))
    opt = torch.optim.AdamW([p for p in tr.parameters() if p.requires_grad], lr=3e-3)
    tr.train()
    first = None
    for step in range(120):
        opt.zero_grad()
        loss = tr(coords, fv, labels).loss
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.2 * first
    tr.eval()
    de = tok.lang_code_to_id["de_DE"]
    ids = tr.generate(coords, fv, forced_bos_token_id=de, num_beams=3, max_new_tokens=20)
    assert (ids[:, 0] == model.config.decoder_start_token_id).all() and (ids[:, 1] == de).all()
    assert decode(tok, ids) == targets
    # the forced token really is the requested language code
    fr = tok.lang_code_to_id["fr_XX"]
    ids = tr.generate(coords, fv, forced_bos_token_id=fr, num_beams=2, max_new_tokens=5)
    assert (ids[:, 1] == fr).all()
