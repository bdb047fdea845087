"""The model card: ``RUN/model/README.md``, written beside ``config.json`` and ``model.safetensors`` so that the
folder says what it holds and can be published to a model hub as it is.

It is built from what the folder already records (``config.json``: task, model, layout, resolved task config)
and, once the run has scored itself, from its final metrics: what the model is (task, streams, size, layout),
what it was trained on (corpus or dataset, number of videos or examples, hours), the resolved config, the
final metrics, and the lines of Python that load it. Training tasks call :func:`write_model_card` once when
the final weights are written and again with the metrics when they are known.
"""

from __future__ import annotations

import datetime
import json
import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from msmae.utils import atomic_write_text, plural

CARD = "README.md"

_TASKS = {
    "pretrain": "MS-MAE self-supervised pre-training (masked multi-stream keypoint reconstruction)",
    "islr": "isolated sign language recognition (ISLR)",
    "slt": "sign language translation (SLT) with mBART-50 + LoRA",
}
_MODES = {"finetune": "fine-tuned ([CLS] token + Linear, all weights trained)",
          "probe": "linear probe (frozen encoder, mean pooling, one Linear)"}
# The metrics each task's card shows first (all of metrics.json's scalar figures follow).
_HEADLINE = {
    "pretrain": ("steps", "final_loss", "eval_loss", "mean_baseline_loss", "samples_per_s"),
    "islr": ("split", "top1", "top5", "per_class_top1", "num_examples"),
    "slt": ("split", "bleu1", "bleu4", "rouge_l", "rouge_l_coco", "bleu4_punct_fixed", "num_examples"),
}


def hours(frames_fps) -> float:
    """Total duration in hours of ``(frames, fps)`` pairs (pairs without a frame rate count nothing)."""
    return sum(n / fps for n, fps in frames_fps if fps and fps > 0) / 3600.0


def weight_counts(weights: Path) -> dict[str, int]:
    """Number of values per top-level module (``encoder``, ``decoder``, ``head``, ...) and ``total``,
    read from the safetensors header only."""
    from safetensors import safe_open

    counts: dict[str, int] = {}
    with safe_open(str(weights), framework="pt") as f:
        for k in f.keys():
            n = 1
            for d in f.get_slice(k).get_shape():
                n *= int(d)
            top = k.split(".", 1)[0].split("_", 1)[0]  # decoder_blocks, decoder_embed, ... -> decoder
            counts[top] = counts.get(top, 0) + n
    counts["total"] = sum(counts.values())
    return counts


def write_model_card(model_dir: str | Path, metrics: dict | None = None) -> Path:
    """(Re)write ``model_dir/README.md`` from ``model_dir/config.json`` (+ the weights' shapes) and ``metrics``
    (the run's final figures; None while they are not known). Returns the card's path."""
    from msmae import __version__
    from msmae.train.checkpoint import CONFIG, WEIGHTS

    model_dir = Path(model_dir)
    meta = json.loads((model_dir / CONFIG).read_text(encoding="utf-8"))
    counts = weight_counts(model_dir / WEIGHTS) if (model_dir / WEIGHTS).is_file() else {}
    text = render_card(meta, metrics, counts, model_dir=str(model_dir), version=__version__)
    path = model_dir / CARD
    atomic_write_text(path, text)
    return path


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n:,}"


def _duration(h: float) -> str:
    """0.0081 -> '29 s', 0.5 -> '30.0 min', 12.3 -> '12.3 h'."""
    return f"{h * 3600:.0f} s" if h < 1 / 60 else f"{h * 60:.1f} min" if h < 1 else f"{h:.1f} h"


def _one_line(v: Any) -> str:
    """``v`` as text on one line: line breaks and other control characters written as escapes (a line break
    inside a value could otherwise start a heading or a list in the card)."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], str(v))


def _text(v: Any) -> str:
    """``v`` as literal Markdown text inside a line: the characters that start HTML, links, code, emphasis or
    table cells backslash-escaped (``_`` unless inside a word), so none of those can come out of a name."""
    return re.sub(r"([\\`*\[\]<>&|~#!{}]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z]))", r"\\\1", _one_line(v))


def _code(v: Any) -> str:
    """``v`` as an inline code span (literal: no HTML, links or emphasis inside), fenced by more backticks
    than any run of them in ``v``."""
    text = _one_line(v)
    ticks = "`" * (max((len(r) for r in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip(" ") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _fence(lang: str, text: str) -> list[str]:
    """A fenced code block of ``text``, fenced by more backticks than any run of them in ``text``."""
    ticks = "`" * max(3, max((len(r) for r in re.findall(r"`+", text)), default=0) + 1)
    return [ticks + lang, text, ticks]


def _shell(*commands: list[str]) -> list[str]:
    """Command lines to paste, as a fenced ``sh`` block: each word quoted for a POSIX shell, so ``$(...)`` or a
    line break in a path stays part of the path."""
    return _fence("sh", "\n".join(shlex.join(words) for words in commands))


def _model_section(meta: dict, counts: dict) -> list[str]:
    m = meta.get("model", {})
    tc = meta.get("task_config", {})
    # The named size describes this encoder only when it was not initialised from another run's.
    size = tc.get("model", {}).get("size") if tc.get("init") in (None, "", "none") else None
    layout = meta.get("layout", {})
    streams = layout.get("streams", [])
    points = layout.get("points", {})
    lines = [
        "## Model",
        "",
        f"- **Task:** {_TASKS.get(meta.get('task'), meta.get('task'))}"
        + (f", {_MODES.get(meta['mode'], meta['mode'])}" if meta.get("mode") else ""),
        f"- **Streams:** {', '.join(f'{_text(s)} ({len(points.get(s, []))} keypoints)' for s in streams)}; "
        f"x, y per keypoint (MediaPipe Holistic, canonical msmae layout {_code(m.get('streams', ','.join(streams)))})",
        f"- **Encoder:** {plural(m.get('depth'), 'layer')} x {plural(m.get('heads'), 'head')}, width {m.get('dim')}, "
        f"cubelets of {m.get('cubelet')} frames per token" + (f" (named size {_code(size)})" if size else ""),
    ]
    if meta.get("task") == "pretrain":
        lines.append(f"- **Decoder** (pre-training only): {plural(m.get('decoder_depth'), 'layer')} x "
                     f"{plural(m.get('decoder_heads'), 'head')}, width {m.get('decoder_dim')}")
    if meta.get("task") == "islr":
        lines.append(f"- **Classes:** {len(meta.get('classes', []))}; pooling {_code(meta.get('pooling'))}, "
                     f"{meta.get('num_frames')} frames per clip")
    if meta.get("task") == "slt":
        lines.append(f"- **Translator:** mBART-50 ({_code(meta.get('mbart'))}, needed to load this model: the folder "
                     f"holds only the trained parts), target language {_code(meta.get('language'))}, fusion "
                     f"{_code(meta.get('fusion'))}, encoder {'frozen' if meta.get('freeze_encoder') else 'trained'}")
    if counts:
        parts = ", ".join(f"{k} {_millions(v)}" for k, v in counts.items() if k != "total")
        lines.append(f"- **Weights:** {_millions(counts['total'])} values in `model.safetensors` ({parts})")
    lines.append(f"- **Keypoints per stream** (MediaPipe landmark indices): {_code(json.dumps(points))}")
    return lines + [""]


def _data_section(meta: dict, metrics: dict | None) -> list[str]:
    task = meta.get("task")
    tc = meta.get("task_config", {})
    data = tc.get("data", {})
    mt = metrics or {}
    lines = ["## Training data", ""]
    if task == "pretrain":
        videos = mt.get("videos", {})
        hrs = mt.get("hours", {})
        lines.append(f"- **Corpus:** {_code(mt.get('corpus', 'see metrics.json of the run'))}")
        if videos:
            lines.append(f"- **Videos:** {videos.get('train')} for training, {videos.get('held_out')} held out "
                         f"for the reconstruction check")
        if hrs:
            lines.append(f"- **Duration:** {_duration(hrs.get('train', 0))} of video for training, "
                         f"{_duration(hrs.get('held_out', 0))} held out")
        lines.append(f"- **Windows:** {_text(data.get('window'))} frames, one frame in "
                     f"{_text(data.get('frame_stride'))} kept; mask ratio {_text(tc.get('mask', {}).get('ratio'))} "
                     f"({_code(tc.get('mask', {}).get('mode'))})")
        if tc.get("init"):
            lines.append(f"- **Continued from:** {_code(tc['init'])}")
    else:
        lang = f", language {_code(meta.get('language'))}" if meta.get("language") else ""
        lines.append(f"- **Dataset:** {_text(data.get('dataset'))}{lang} (annotations {_code(data.get('annotations'))}"
                     + (f", poses {_code(data.get('poses'))}" if data.get("poses") else "") + ")")
        ex = mt.get("examples", {})
        hrs = mt.get("hours", {})
        if ex:
            lines.append("- **Examples:** " + ", ".join(
                f"{_text(s)} {_text(n)}" + (f" ({_duration(hrs[s])})" if s in hrs else "") for s, n in ex.items()))
        if mt.get("excluded"):
            lines.append(f"- **Excluded** (unreadable or empty): {_code(json.dumps(mt['excluded']))}")
        lines.append(f"- **Initialised from:** {_code(tc.get('init'))}")
    if not metrics:
        lines.append("- The numbers of examples and hours are written here when the run has finished "
                     "(they are in the run's `metrics.json`).")
    return lines + [""]


def _metrics_section(meta: dict, metrics: dict | None) -> list[str]:
    lines = ["## Final metrics", ""]
    if not metrics:
        return lines + ["Not yet known: this card is rewritten with them when the run has scored itself.", ""]
    keys = [k for k in _HEADLINE.get(meta.get("task"), ()) if k in metrics]
    keys += [k for k, v in metrics.items() if k not in keys and isinstance(v, (int, float)) and not isinstance(v, bool)]
    lines += ["| metric | value |", "| --- | --- |"] + [f"| {_text(k)} | {_text(_fmt(metrics[k]))} |" for k in keys]
    sel = metrics.get("selected_on")
    if isinstance(sel, dict) and sel.get("split"):
        lines += ["", f"Weights of the epoch with the best validation {_text(sel.get('metric'))} "
                      f"(epoch {_text(sel.get('epoch'))})."]
    return lines + [""]


def _usage_section(meta: dict, model_dir: str) -> list[str]:
    task = meta.get("task")
    lines = ["## Use", "", *_fence("python", f"import msmae\nencoder = msmae.load_encoder({model_dir!r})  "
             "# MultiStreamEncoder, eval mode: encoder(coords (B,T,K,2), frame_valid (B,T)).tokens"), ""]
    predict = ["msmae", "predict", "VIDEO_OR_POSE_FILE", "--model", model_dir]
    if task == "islr":
        lines += ["The whole classifier (encoder + head; `meta['classes']` names its outputs):", "",
                  *_fence("python", f"from msmae.tasks.islr import model_from_run\n"
                                    f"classifier, meta = model_from_run({model_dir!r})"), "",
                  "From the command line:", "", *_shell(predict), ""]
    elif task == "slt":
        lines += ["The translator (needs the mBART-50 folder named above):", "",
                  *_fence("python", f"from msmae.tasks.slt import model_from_run\n"
                                    f"translator, tokenizer, meta = model_from_run({model_dir!r})"), "",
                  "From the command line:", "", *_shell(predict), ""]
    else:
        lines += ["Fine-tune it (with your data options), or draw its attention maps and segments:", "",
                  *_shell(["msmae", "finetune", "islr", "--config", "wlasl", "--init", model_dir],
                          ["msmae", "attention", "INPUT", "--model", model_dir, "--out", "DIR"]), ""]
    return lines


def render_card(meta: dict, metrics: dict | None, counts: dict, *, model_dir: str, version: str) -> str:
    task = meta.get("task", "model")
    tc = meta.get("task_config", {})
    what = (metrics or {}).get("corpus") if task == "pretrain" else tc.get("data", {}).get("dataset")
    title = {"pretrain": "pre-trained encoder", "islr": "sign recognition model", "slt": "translation model"}
    front = {"library_name": "msmae", "tags": ["msmae", "sign-language", "pose", "keypoints", task]}
    if task != "pretrain" and re.fullmatch(r"[\w.-]+", str(tc.get("data", {}).get("dataset") or "")):
        front["tags"].append(tc["data"]["dataset"])
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
             f"# MS-MAE {_text(title.get(task, task))}" + (f": {_text(Path(str(what)).name)}" if what else ""), "",
             f"Written by msmae {version} on {stamp}. This folder holds `model.safetensors` (weights) and "
             "`config.json` (model config, keypoint layout, task and its resolved config); it is loadable as it "
             "is, independent of the run that made it.", ""]
    lines += _model_section(meta, counts)
    lines += _data_section(meta, metrics)
    lines += _metrics_section(meta, metrics)
    lines += _usage_section(meta, model_dir)
    lines += ["## Resolved config", "", "The run's full configuration (msmae's defaults + its `--config` + `--set`); "
              "pass it back with `--config` to train again.", "",
              *_fence("yaml", yaml.safe_dump(tc, sort_keys=False, allow_unicode=True).strip()), ""]
    lines += ["## Citation", "",
              "The method is MS-MAE: Junwen Mo, Duc Minh Vo, Hideki Nakayama. *Improving Sign Language "
              "Understanding with a Multi-Stream Masked Autoencoder Trained on ASL Videos*. The software that "
              "trained this model is msmae (see `CITATION.cff` in its repository).", ""]
    return "\n".join(lines)
