"""The SLT side of ``msmae finetune slt``, ``msmae evaluate`` and ``msmae predict``: arguments ->
:class:`msmae.tasks.slt.SltConfig`, calls into :mod:`msmae.tasks.slt`, printed results."""

from __future__ import annotations

from pathlib import Path

from msmae.utils import json_text


def add_finetune_arguments(p) -> None:
    """Arguments of ``msmae finetune slt``."""
    from msmae.commands._help import SLT_DATASETS, dataset_help
    from msmae.commands.pretrain import add_config_arguments
    from msmae.data.slt import DATASETS

    p.description = (
        "Fine-tune a pre-trained pose encoder with mBART-50 for translation (paper 4.3): tokens fused flat or "
        "per time step (mean), projected into mBART's encoder (trained fully), decoder adapted with LoRA "
        "(r=alpha=32), 20% frame deletion/duplication, AdamW wd 1e-3, cosine with 10-epoch warm-up, lr and "
        "gradient clipping per appendix table 8 (--config slt/p14t, slt/csl_daily, slt/how2sign), best epoch on "
        "dev BLEU-4, test scored with beam search. Writes RUN/metrics.json with hypotheses.txt and "
        "references.txt beside it.")
    p.add_argument("--out", required=True, metavar="RUN", help="run directory")
    p.add_argument("--init", required=True, metavar="CHECKPOINT",
                   help="encoder to start from: a pre-training run or checkpoint directory, or `none` "
                   "(random initialisation, i.e. from scratch)")
    p.add_argument("--mbart", metavar="DIR", help="local copy of facebook/mbart-large-50-many-to-many-mmt "
                   "(sets translator.mbart; never downloaded)")
    p.add_argument("--dataset", choices=DATASETS, help=dataset_help(SLT_DATASETS))
    p.add_argument("--annotations", metavar="PATH", help="annotation folder or file (sets data.annotations)")
    p.add_argument("--poses", metavar="DIR", help="folder of pose files (sets data.poses)")
    p.add_argument("--fusion", choices=("flat", "mean"), help="stream fusion (sets translator.fusion)")
    p.add_argument("--freeze-encoder", action="store_true",
                   help="keep the pose encoder frozen (sets translator.freeze_encoder; lr/clip from table 8)")
    add_config_arguments(p, "slt")
    p.add_argument("--resume", action="store_true",
                   help="continue RUN from its last complete checkpoint, exactly (also a run stopped by SIGTERM or "
                   "SIGUSR1, which ends with exit status 75 after a checkpoint)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args):
    from msmae.config import load_config
    from msmae.tasks.common import absolute_data_paths
    from msmae.tasks.slt import SltConfig

    overrides = []
    for flag, key in (("mbart", "translator.mbart"), ("dataset", "data.dataset"),
                      ("annotations", "data.annotations"), ("poses", "data.poses"), ("fusion", "translator.fusion")):
        if getattr(args, flag, None):
            overrides.append(f"{key}={getattr(args, flag)}")
    if getattr(args, "freeze_encoder", False):
        overrides.append("translator.freeze_encoder=true")
    cfg = load_config(SltConfig, args.config, overrides + list(args.overrides))
    cfg.init = args.init
    absolute_data_paths(cfg)
    return cfg


def _one_line(e: Exception) -> str:
    if isinstance(e, ImportError):
        return f"{e}: SLT needs the `slt` extra (pip install 'msmae[slt]')"
    return str(e).strip("'\"")


def run_finetune(args) -> int:
    """``msmae finetune slt``."""
    from msmae.commands._runs import run_training_command
    from msmae.tasks.slt import finetune, setup_errors

    return run_training_command(
        args, config_from_args=config_from_args, train=finetune, errors=setup_errors(), one_line=_one_line,
        summary_keys=("split", "bleu1", "bleu4", "rouge_l", "bleu1_punct_fixed", "bleu4_punct_fixed",
                      "rouge_l_punct_fixed"))


def run_evaluate(run_dir: Path, split: str, args) -> int:
    """``msmae evaluate RUN --split S``: translate a split of the run's data with beam search and score it."""
    from msmae.cli import CommandError
    from msmae.tasks.slt import evaluate_run, setup_errors

    try:
        m, out_dir = evaluate_run(run_dir, split, out=args.out, annotations=getattr(args, "annotations", None),
                                  poses=getattr(args, "poses", None), batch_size=args.batch_size,
                                  progress=not args.json)
    except setup_errors() as e:
        raise CommandError(_one_line(e)) from None
    if args.json:
        print(json_text(m))
    else:
        extra = (f"  (punctuation fixed: BLEU-1 {m['bleu1_punct_fixed']:.2f}  BLEU-4 {m['bleu4_punct_fixed']:.2f}  "
                 f"ROUGE-L {m['rouge_l_punct_fixed']:.2f})") if "bleu4_punct_fixed" in m else ""
        lang = _language(run_dir)
        print(f"{run_dir} on {m['split']} ({m['num_examples']} sentences, {lang}): BLEU-1 {m['bleu1']:.2f}  "
              f"BLEU-4 {m['bleu4']:.2f}  ROUGE-L {m['rouge_l']:.2f}{extra}")
        print(f"written to {out_dir} (metrics.json, hypotheses.txt, references.txt, translations.tsv)")
    return 0


def _language(run_dir: Path) -> str:
    from msmae.train.checkpoint import read_checkpoint_config

    return read_checkpoint_config(run_dir).get("language", "")


def run_predict(input_path: Path, run_dir: Path, args) -> int:
    """``msmae predict INPUT --model RUN``: the translation of a video or pose file."""
    from msmae.cli import CommandError
    from msmae.poses.sequence import PoseDataError
    from msmae.tasks.common import read_input_sequence
    from msmae.tasks.slt import prepare_input, setup_errors, translate, translator_from_run

    try:
        model, tokenizer, meta = translator_from_run(run_dir)
        cfg_t = meta["task_config"]["translator"]
    except setup_errors() as e:
        raise CommandError(_one_line(e)) from None
    try:
        seq = read_input_sequence(input_path)
        clip = prepare_input(model, meta, seq)
    except ImportError as e:
        raise CommandError(f"{input_path}: extracting keypoints from a video needs MediaPipe "
                           f"(pip install 'msmae[extract]'): {e}") from None
    except PoseDataError as e:  # its message names the file already
        raise CommandError(str(e).splitlines()[0]) from None
    except (OSError, RuntimeError) as e:
        raise CommandError(f"{input_path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    beams = getattr(args, "beams", None) or int(cfg_t["num_beams"])
    try:
        text = translate(model, tokenizer, [clip], lang=meta["language"], num_beams=beams,
                         max_new_tokens=int(cfg_t["max_new_tokens"]),
                         length_penalty=float(cfg_t["length_penalty"]))[0]
    except ValueError as e:  # e.g. more pose tokens than mBART's positions
        raise CommandError(f"{input_path}: {e}") from None
    if getattr(args, "json", False):
        print(json_text({"input": str(input_path), "model": str(run_dir), "frames": seq.num_frames,
                          "language": meta["language"], "translation": text}))
    else:
        print(text)
    return 0

