"""The end of every command's ``--help``: what it reads, one example that works as written, and the page of the
documentation that explains it. One table, so that ``tests/test_help.py`` can parse every example and check
every ``--set`` key against the command's config."""

from __future__ import annotations

import argparse
import textwrap

# command path -> (inputs, example, documentation page). Pages are docs/<page>.md in the source tree.
HELP: dict[str, tuple[str, str, str]] = {
    "inspect": ("pose files (.pose, GISLR .parquet, MediaPipe .npy, msmae .npz), folders of them, or a run folder",
                "msmae inspect poses/clip.pose", "corpus"),
    "extract": ("videos, folders of videos or of frame images, list files; optionally a clips file",
                "msmae extract videos/ --out poses/ --frame-stride 2", "extraction"),
    "pack": ("pose files, folders of them (recursively) or .txt lists of paths",
             "msmae pack poses/ --out corpus/", "corpus"),
    "pretrain": ("a corpus folder made by `msmae pack`",
                 "msmae pretrain --data corpus/ --out runs/pretrain --config pretrain/tiny --set train.steps=2000",
                 "pretraining"),
    "finetune islr": ("an annotation file of one of the --dataset formats, a folder of pose files, a pre-training "
                      "run (or none)",
                      "msmae finetune islr --dataset manifest --annotations signs.csv --poses poses/ "
                      "--init runs/pretrain --out runs/signs --set train.epochs=30", "islr"),
    "finetune slt": ("a local mBART-50 folder, an annotation file or folder of one of the --dataset formats, a "
                     "folder of pose files, a pre-training run (or none)",
                     "msmae finetune slt --config slt/p14t --mbart mbart-large-50/ "
                     "--annotations PHOENIX-2014-T/annotations/manual --poses poses/ --init runs/pretrain "
                     "--out runs/p14t --set train.epochs=30", "slt"),
    "probe": ("the same as `msmae finetune islr`",
              "msmae probe --dataset manifest --annotations signs.csv --poses poses/ --init runs/pretrain "
              "--out runs/probe --set train.epochs=30", "islr"),
    "evaluate": ("an ISLR or SLT run folder (and, if the data moved, its new pose folder)",
                 "msmae evaluate runs/signs --split test", "islr"),
    "predict": ("a video or a pose file, and an ISLR or SLT run (or its model/ folder)",
                "msmae predict sign.mp4 --model runs/signs --top 5", "islr"),
    "attention": ("a video or a pose file, and any trained run (pre-training, ISLR or SLT)",
                  "msmae attention clip.mp4 --model runs/pretrain --out attention/clip", "attention"),
    "view": ("a video or a pose file, and one or more runs (pre-training, ISLR, SLT)",
             "msmae view clip.mp4 --model runs/pretrain --model runs/signs --out view/clip", "view"),
    "score": ("two line-parallel text files: hypotheses and references",
              "msmae score --hyp hypotheses.txt --ref references.txt --lang de", "slt"),
    "demo": ("nothing (synthetic data), or a folder of your own videos",
             "msmae demo --out demo-output", "getting-started"),
    "configs": ("a shipped config's name or your own YAML file (optional)",
                "msmae configs wlasl --set train.epochs=30", "getting-started"),
}

# What --annotations and --poses are for each --dataset of `msmae finetune islr` / `msmae probe`.
ISLR_DATASETS = {
    "wlasl": "--annotations WLASL_v0.3.json, --poses one pose file per video id (data.num_glosses 100/300/1000/2000)",
    "asl_citizen": "--annotations the dataset folder (its splits/ CSVs), --poses one pose file per video",
    "slovo": "--annotations annotations.csv (train/valid), --poses POSES/ (or POSES/train and POSES/test)",
    "gislr": "--annotations Kaggle's train.csv (the parquet files it names; splits by data.val_participants and "
             "data.test_participants)",
    "manifest": "--annotations a CSV path,label,split[,start,end,signer,id] (start/end in seconds); paths relative "
                "to --poses, else to the CSV's folder",
}
# The same for `msmae finetune slt`.
SLT_DATASETS = {
    "p14t": "--annotations PHOENIX-2014-T/annotations/manual (PHOENIX-2014-T.{train,dev,test}.corpus.csv)",
    "csl_daily": "--annotations the folder holding sentence_label/split_1.txt and sentence_label/csl2020ct_v2.pkl",
    "how2sign": "--annotations the folder of the re-aligned CSVs (or one of them); whole-video pose files are cut by START/END",
    "manifest": "--annotations a CSV path,text,split[,start,end,id]; paths relative to --poses, else to the CSV's "
                "folder",
    "dgs": "--annotations the folder of the DGS Corpus sentence sample ({split}_{i}_metadata.json beside "
           "{split}_{i}_original.pose)",
}


def dataset_help(datasets: dict[str, str]) -> str:
    """The ``--dataset`` help: what each choice expects."""
    return "annotation format (sets data.dataset): " + "; ".join(f"{k}: {v}" for k, v in datasets.items())


# The --set example each training command shows: a key of that command's config.
SET_EXAMPLES = {"pretrain": "train.steps=2000", "islr": "train.epochs=30", "slt": "train.epochs=30"}


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, except that paragraphs starting with two spaces (examples) are kept as written."""

    def _fill_text(self, text, width, indent):
        return "\n\n".join(textwrap.indent(part, indent) if part.startswith("  ")
                           else super(HelpFormatter, self)._fill_text(part, width, indent)
                           for part in text.split("\n\n"))


def epilog(command: str) -> str:
    inputs, example, page = HELP[command]
    return (f"inputs: {inputs}.\n\nexample:\n\n  {example}\n\n"
            f"documentation: docs/{page}.md in the msmae source (`make docs` builds the site)")


def finish(parser: argparse.ArgumentParser, command: str = "") -> None:
    """Give ``parser`` and every sub-command's parser below it its inputs, example and documentation page."""
    if not command:
        parser.epilog = ("`msmae COMMAND --help` explains a command, with an example. documentation: docs/index.md in "
                         "the msmae source (`make docs` builds the site); the README's recipe goes from your own videos "
                         "to a fine-tuned model.")
    if command in HELP:
        parser.epilog = epilog(command)
        if parser.formatter_class is argparse.HelpFormatter:
            parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                finish(sub, f"{command} {name}".strip())
