"""Pose-to-text translator (paper 4.3, appendix C): MS-MAE encoder -> fusion -> Linear -> mBART-50.

The pose encoder's tokens are fused ``flat`` (all stream tokens, stream by stream, in the order the
encoder returns them) or ``mean`` (per token time step, the average of the streams present),
projected to mBART's width and given to mBART as ``inputs_embeds`` with an attention mask.

What trains (``trainable_summary`` reports it):

- the pose encoder, unless ``freeze_pose_encoder`` (then it runs in eval mode under no_grad);
- the projection;
- the mBART encoder fully: its layers, layer norms and learned positions. The token embedding
  matrix is not part of that: mBART ties it to the decoder's input embedding and to the output
  layer, and the encoder never uses it (it receives ``inputs_embeds``), so training it would only
  change the decoder — which the paper adapts with LoRA alone. It stays frozen;
- the mBART decoder through LoRA only (r = alpha = 32 on q, k, v and out projections of its self-
  and cross-attention, via ``peft``); every original decoder weight, the shared embedding and the
  output layer are frozen.

mBART-50 is loaded with :func:`load_mbart` from a local directory laid out like the released
``facebook/mbart-large-50-many-to-many-mmt`` (never from the hub). Its slow sentencepiece
tokenizer (``MBart50Tokenizer``) is used on purpose: transformers' conversion to a fast tokenizer
fails with protobuf < 5, which mediapipe 0.10.14 requires.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

FUSIONS = ("flat", "mean")
# Decoder attention projections that get LoRA (module names inside MBartForConditionalGeneration).
LORA_TARGETS = r".*decoder\.layers\.\d+\.(self_attn|encoder_attn)\.(q_proj|k_proj|v_proj|out_proj)"
MBART_FILES = ("config.json", "sentencepiece.bpe.model")
MBART_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                 "pytorch_model.bin.index.json")
DOWNLOAD_HINT = ("download it once, e.g. `huggingface-cli download facebook/mbart-large-50-many-to-many-mmt "
                 "--local-dir DIR` (about 2.4 GB; msmae never downloads at run time), and pass DIR")
# Tokens every MBart50Tokenizer has besides sentencepiece pieces: <s> <pad> </s> <unk> <mask>.
_SPECIAL = 5


class TranslatorSetupError(ValueError):
    """mBART directory or tokenizer that cannot be used, with what to do about it."""


# ----------------------------------------------------------------------------- loading mBART-50
def check_mbart_dir(path: str | Path) -> Path:
    """The path as a directory holding an mBART-50 model and its sentencepiece tokenizer, or an
    error naming what is missing (hub names such as ``facebook/...`` are refused)."""
    p = Path(path).expanduser()
    if not p.is_dir():
        hub = "/" in str(path) and not str(path).startswith((".", "/", "~")) and not p.exists()
        what = "looks like a hub name, but msmae only loads local directories" if hub else "is not a directory"
        raise TranslatorSetupError(f"mBART path {str(path)!r} {what}: {DOWNLOAD_HINT}")
    missing = [f for f in MBART_FILES if not (p / f).is_file()]
    if not any((p / w).is_file() for w in MBART_WEIGHTS):
        missing.append("model.safetensors (or pytorch_model.bin)")
    if missing:
        raise TranslatorSetupError(
            f"{p}: not an mBART-50 directory, missing {', '.join(missing)}; it must hold the files of "
            f"facebook/mbart-large-50-many-to-many-mmt: {DOWNLOAD_HINT}")
    return p


def load_tokenizer(path: str | Path):
    """The slow sentencepiece ``MBart50Tokenizer`` of a local mBART-50 directory."""
    from transformers import MBart50Tokenizer

    import sentencepiece as spm

    p = check_mbart_dir(path)
    spm_file = p / "sentencepiece.bpe.model"
    try:
        spm.SentencePieceProcessor(model_file=str(spm_file))
        tokenizer = MBart50Tokenizer.from_pretrained(str(p), local_files_only=True)
    except Exception as e:  # sentencepiece raises plain RuntimeError/OSError on a broken model file
        raise TranslatorSetupError(
            f"{p}: cannot load the sentencepiece tokenizer ({type(e).__name__}: {e}); {DOWNLOAD_HINT}") from None
    if not isinstance(tokenizer, MBart50Tokenizer):  # transformers returns False for some broken folders
        raise TranslatorSetupError(f"{p}: cannot load the sentencepiece tokenizer; {DOWNLOAD_HINT}")
    return tokenizer


def check_tokenizer(tokenizer, *, vocab_size: int, lang: str, sample_texts: Sequence[str] = ()) -> None:
    """Fail loudly on a tokenizer that cannot serve this model and language.

    Catches the known failure where a hub name or a folder without ``sentencepiece.bpe.model``
    yields a 58-token tokenizer (special tokens and language codes only), a tokenizer whose size
    differs from the model's embedding table, a missing language code, and text that comes out
    mostly as ``<unk>``.
    """
    codes = getattr(tokenizer, "lang_code_to_id", {}) or {}
    n = len(tokenizer)
    pieces = n - len(codes) - _SPECIAL
    if pieces < 32:
        raise TranslatorSetupError(
            f"useless tokenizer: {n} tokens, of which only {max(pieces, 0)} are text pieces (the known "
            f"'58-token' failure: a hub name or a folder without sentencepiece.bpe.model): {DOWNLOAD_HINT}")
    if n != vocab_size:
        raise TranslatorSetupError(
            f"tokenizer has {n} tokens but the model's embedding table has {vocab_size}: the tokenizer files "
            "do not belong to this model; use the directory of facebook/mbart-large-50-many-to-many-mmt as is")
    if lang not in codes:
        raise TranslatorSetupError(f"language code {lang!r} is not in the tokenizer; choose from {sorted(codes)}")
    sp = getattr(tokenizer, "sp_model", None)
    chars = [c for t in sample_texts[:1000] for c in t if not c.isspace()]
    if sp is not None and chars:
        unknown = {c for c in set(chars) if sp.unk_id() in sp.encode(c)}
        share = sum(c in unknown for c in chars) / len(chars)
        if share > 0.5:
            raise TranslatorSetupError(
                f"{100 * share:.0f}% of the characters of the target text are unknown to the tokenizer (they "
                "would all become <unk>): wrong sentencepiece model for this language?")


def load_mbart(path: str | Path, *, lang: str | None = None, sample_texts: Sequence[str] = (),
               dtype: torch.dtype | None = None):
    """(MBartForConditionalGeneration, MBart50Tokenizer) from a local directory, checked together."""
    from transformers import MBartForConditionalGeneration

    p = check_mbart_dir(path)
    tokenizer = load_tokenizer(p)
    try:
        model = MBartForConditionalGeneration.from_pretrained(str(p), local_files_only=True, torch_dtype=dtype)
    except Exception as e:
        raise TranslatorSetupError(f"{p}: cannot load mBART weights ({type(e).__name__}: {e})") from None
    check_tokenizer(tokenizer, vocab_size=model.config.vocab_size, lang=lang or "en_XX", sample_texts=sample_texts)
    return model, tokenizer


def encode_targets(tokenizer, texts: Sequence[str], *, lang: str, max_length: int = 128) -> Tensor:
    """Labels (B, L) long in mBART-50 target form ``[lang] tokens </s>``, padding = -100."""
    tokenizer.tgt_lang = lang
    batch = tokenizer(text_target=list(texts), max_length=max_length, truncation=True, padding=True,
                      return_tensors="pt")
    labels = batch["input_ids"]
    return labels.masked_fill(labels == tokenizer.pad_token_id, -100)


# ----------------------------------------------------------------------------- the model
class PoseTranslator(nn.Module):
    """Keypoints (B, T, K, 2) -> text tokens through a pose encoder and mBART with a LoRA decoder.

    ``pose_encoder`` is a :class:`msmae.models.MultiStreamEncoder` (anything with its ``forward``,
    ``per_stream``, ``num_streams``, ``dim`` and ``config.cubelet``). State dict keys: ``encoder.*``
    (the pose encoder, so :func:`msmae.train.checkpoint.load_encoder` reads it), ``projection.*``,
    ``mbart.*``.
    """

    def __init__(self, *, pose_encoder: nn.Module, mbart: nn.Module, fusion: str = "mean", lora_r: int = 32,
                 lora_alpha: int = 32, lora_dropout: float = 0.0, freeze_pose_encoder: bool = False) -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        from peft import LoraConfig, inject_adapter_in_model

        self.fusion = fusion
        self.freeze_pose_encoder = freeze_pose_encoder
        self.encoder = pose_encoder
        self.projection = nn.Linear(pose_encoder.dim, mbart.config.d_model)
        nn.init.xavier_uniform_(self.projection.weight)
        nn.init.zeros_(self.projection.bias)
        lora = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                          target_modules=LORA_TARGETS, bias="none")
        self.mbart = inject_adapter_in_model(lora, mbart)
        self._set_trainable()

    # -------------------------------------------------------------- which parameters train
    def _set_trainable(self) -> None:
        for p in self.mbart.parameters():
            p.requires_grad = False
        shared = self.mbart.get_input_embeddings().weight
        for p in self.mbart.model.encoder.parameters():
            if p is not shared:
                p.requires_grad = True
        for name, p in self.mbart.named_parameters():
            if "lora_" in name:
                p.requires_grad = True
        for p in self.encoder.parameters():
            p.requires_grad = not self.freeze_pose_encoder
        self.projection.requires_grad_(True)

    def train(self, mode: bool = True) -> "PoseTranslator":
        super().train(mode)
        if self.freeze_pose_encoder:
            self.encoder.eval()
        return self

    def trainable_summary(self) -> dict[str, int]:
        """Trainable / total parameter counts per part (pose encoder, projection, mBART encoder,
        mBART decoder LoRA, other mBART)."""
        parts = {"pose_encoder": self.encoder, "projection": self.projection}
        out: dict[str, int] = {}
        for k, m in parts.items():
            out[f"{k}_trainable"] = sum(p.numel() for p in m.parameters() if p.requires_grad)
            out[f"{k}_total"] = sum(p.numel() for p in m.parameters())
        enc_ids = {id(p) for p in self.mbart.model.encoder.parameters()}
        shared = id(self.mbart.get_input_embeddings().weight)
        groups = {"mbart_encoder": 0, "mbart_lora": 0, "mbart_other": 0}
        totals = dict.fromkeys(groups, 0)
        for name, p in self.mbart.named_parameters():
            g = "mbart_lora" if "lora_" in name else (
                "mbart_encoder" if id(p) in enc_ids and id(p) != shared else "mbart_other")
            totals[g] += p.numel()
            if p.requires_grad:
                groups[g] += p.numel()
        for g in groups:
            out[f"{g}_trainable"], out[f"{g}_total"] = groups[g], totals[g]
        return out

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """What a checkpoint must hold to rebuild this model from the mBART directory: the pose encoder
        (always, frozen or not), the projection and every trainable mBART tensor (encoder + LoRA)."""
        keep = {n for n, p in self.named_parameters() if p.requires_grad}
        sd = self.state_dict()
        return {k: v for k, v in sd.items() if k in keep or k.startswith(("encoder.", "projection."))}

    # -------------------------------------------------------------- forward
    def encode_poses(self, coords: Tensor, frame_valid: Tensor) -> tuple[Tensor, Tensor]:
        """coords (B, T, K, 2), frame_valid (B, T) -> mBART inputs_embeds (B, N, D), attention_mask (B, N) long."""
        grad = torch.is_grad_enabled() and not self.freeze_pose_encoder
        with torch.set_grad_enabled(grad):
            out = self.encoder(coords, frame_valid)
            if self.fusion == "flat":
                tokens, mask = out.tokens, ~out.padding                             # (B, N, C), (B, N)
            else:
                nt = -(-coords.shape[1] // self.encoder.config.cubelet)
                grid, valid = self.encoder.per_stream(out, nt)                       # (B, P, Nt, C), (B, P, Nt)
                w = valid.to(grid.dtype).unsqueeze(-1)
                tokens = (grid * w).sum(1) / w.sum(1).clamp(min=1)                   # (B, Nt, C)
                mask = valid.any(1)                                                  # (B, Nt)
        limit = self.mbart.config.max_position_embeddings
        if tokens.shape[1] > limit:
            raise ValueError(f"{tokens.shape[1]} pose tokens exceed mBART's {limit} positions: "
                             "use fewer frames (data.max_frames / data.frame_stride) or fusion 'mean'")
        return self.projection(tokens), mask.long()

    def forward(self, coords: Tensor, frame_valid: Tensor, labels: Tensor):
        """Teacher-forced cross-entropy; labels (B, L) with -100 at padding. Returns mBART's output
        (``.loss``, ``.logits`` (B, L, V))."""
        embeds, mask = self.encode_poses(coords, frame_valid)
        return self.mbart(inputs_embeds=embeds, attention_mask=mask, labels=labels)

    @torch.no_grad()
    def generate(self, coords: Tensor, frame_valid: Tensor, *, forced_bos_token_id: int, num_beams: int = 5,
                 max_new_tokens: int = 100, length_penalty: float = 1.0) -> Tensor:
        """Beam search; the target language code is forced as the first generated token. -> ids (B, L)."""
        embeds, mask = self.encode_poses(coords, frame_valid)
        enc = self.mbart.get_encoder()(inputs_embeds=embeds, attention_mask=mask, return_dict=True)
        return self.mbart.generate(
            encoder_outputs=enc, attention_mask=mask, forced_bos_token_id=forced_bos_token_id,
            decoder_start_token_id=self.mbart.config.decoder_start_token_id, num_beams=num_beams,
            max_new_tokens=max_new_tokens, length_penalty=length_penalty, early_stopping=True)


def decode(tokenizer, ids: Tensor) -> list[str]:
    """Generated ids (B, L) -> text, without the language code and special tokens."""
    return [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]


# ----------------------------------------------------------------------------- a tiny mBART-50 stand-in
def make_tiny_mbart(out_dir: str | Path, texts: Sequence[str], *, vocab_size: int = 400, d_model: int = 64,
                    layers: int = 2, heads: int = 4, ffn_dim: int = 128, max_positions: int = 512,
                    seed: int = 0) -> Path:
    """Write a small, randomly initialised mBART-50 model directory for tests and CPU demos.

    It is laid out exactly like the released ``facebook/mbart-large-50-many-to-many-mmt`` (``config.json``,
    ``model.safetensors``, ``sentencepiece.bpe.model``, ``tokenizer_config.json``,
    ``special_tokens_map.json``) so that :func:`load_mbart` takes its real loading path, with a
    sentencepiece model trained here on ``texts`` and all 52 mBART-50 language codes. It knows no
    language: it only learns what it is trained on.
    """
    import io

    import sentencepiece as spm
    from transformers import MBart50Tokenizer, MBartConfig, MBartForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([t for t in texts if t.strip()]), model_writer=buf, vocab_size=vocab_size,
        model_type="bpe", character_coverage=1.0, hard_vocab_limit=False, num_threads=1,
        minloglevel=2)
    spm_path = out / "sentencepiece.bpe.model"
    spm_path.write_bytes(buf.getvalue())
    tokenizer = MBart50Tokenizer(vocab_file=str(spm_path), src_lang="en_XX", tgt_lang="en_XX")
    tokenizer.save_pretrained(str(out))
    config = MBartConfig(
        vocab_size=len(tokenizer), d_model=d_model, encoder_layers=layers, decoder_layers=layers,
        encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=ffn_dim,
        decoder_ffn_dim=ffn_dim, max_position_embeddings=max_positions, scale_embedding=True,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.eos_token_id,
        forced_eos_token_id=tokenizer.eos_token_id, dropout=0.1, attention_dropout=0.0,
        init_std=d_model ** -0.5)
    torch.manual_seed(seed)
    model = MBartForConditionalGeneration(config)
    # A random stand-in must stay trainable with the paper's recipe (frozen decoder + LoRA): at mBART's
    # init scale (std 0.02) every frozen layer is close to zero and cross-attention is uniform, so
    # weights use std 1/sqrt(d_model) (init_std above) and the shared embedding, which is also the
    # frozen output layer, std 0.5 so that its logits can become confident. A released mBART has
    # trained weights instead.
    with torch.no_grad():
        model.get_input_embeddings().weight.normal_(0.0, 0.5)
    model.save_pretrained(str(out), safe_serialization=True)
    return out
