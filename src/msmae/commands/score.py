"""``msmae score``: BLEU-1, BLEU-4 and ROUGE-L of any hypothesis file against references."""

from __future__ import annotations

import argparse

from msmae.utils import json_text


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "score", help="BLEU-1/BLEU-4/ROUGE-L of a hypothesis file against references",
        description="Score line-parallel text files (one sentence per line, UTF-8) exactly as the "
        "paper does: sacrebleu corpus BLEU-1 and BLEU-4 (tokenizer zh for Chinese, 13a otherwise; "
        "BLEU-4 equals `sacrebleu REF -i HYP -m bleu -tok 13a|zh`) and ROUGE-L as the paper's source "
        "(TwoStreamSLT) computes it (sentence LCS F with beta = P/R, mean over sentences; words by "
        "whitespace, Chinese by character), with COCO's beta-1.2 ROUGE-L beside it as rouge_l_coco. For "
        "Chinese the scores after the full-/half-width punctuation fix are reported too (the keys ending in _punct_fixed). "
        "Prints one JSON object.")
    p.add_argument("--hyp", required=True, help="hypotheses, one sentence per line")
    p.add_argument("--ref", required=True, help="references, line-parallel to --hyp")
    p.add_argument("--lang", default="en",
                   help="target language code (de, en, zh, zh_CN, ...); zh selects the zh tokenizer, "
                   "character ROUGE and the punctuation fix (default: en)")
    p.add_argument("--out", help="also write the JSON object to this file")
    p.add_argument("--json", action="store_true",
                   help="print JSON (what score always prints; accepted as by the other commands)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from msmae.cli import CommandError
    from msmae.metrics.translation import score_files

    try:
        result = score_files(args.hyp, args.ref, lang=args.lang)
    except ValueError as e:
        raise CommandError(str(e)) from None
    text = json_text(result, indent=1)
    if args.out:
        from pathlib import Path

        from msmae.utils import atomic_write_text
        if Path(args.out).is_dir():
            raise CommandError(f"--out {args.out} is a folder; name a file, e.g. {Path(args.out) / 'scores.json'}")
        try:
            atomic_write_text(args.out, text + "\n")
        except OSError as e:
            raise CommandError(f"--out {args.out}: cannot write ({e.strerror or e})") from None
    print(text)
    return 0
