"""msmae from Python (notebooks, scripts): read poses, load any run, predict, translate, and run the
pipeline's steps from config objects. Everything here is exported lazily by ``msmae`` itself::

    import msmae
    seq = msmae.read("clip.pose")                  # or a video: keypoints extracted with MediaPipe
    clf = msmae.load("runs/islr")                  # an ISLR run -> Classifier
    clf.predict(seq, top=5)                        # [{rank, label, probability}, ...]

These functions return results and raise exceptions; they never print.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable


def read(path: str | Path):
    """A pose file of any format msmae reads (``.pose``, ``.npz``, ``.npy``, ``.parquet``), or a video or folder
    of frames (keypoints extracted on the fly with MediaPipe Holistic: the ``extract`` extra) -> the
    canonical :class:`~msmae.poses.PoseSequence`."""
    from msmae.tasks.common import read_input_sequence

    return read_input_sequence(Path(path))


@dataclass
class Classifier:
    """An ISLR run (fine-tuned or linear probe): the model in eval mode and its classes."""

    model: Any                             # msmae.models.classifier.ISLRClassifier
    classes: list[str]
    meta: dict = field(repr=False)         # the checkpoint's config

    def predict(self, seq, top: int = 5) -> list[dict]:
        """Top-``top`` signs of a PoseSequence: ``[{"rank", "label", "probability"}]``, most likely first."""
        from msmae.tasks.islr import predict_top

        return predict_top(self.model, self.meta, seq, top)


@dataclass
class Translator:
    """An SLT run: the pose translator (encoder + mBART-50 with LoRA) in eval mode and its tokenizer."""

    model: Any                             # msmae.models.translator.PoseTranslator
    tokenizer: Any
    meta: dict = field(repr=False)

    @property
    def language(self) -> str:
        return self.meta["language"]

    def translate(self, seq, *, num_beams: int | None = None) -> str:
        """The translation of a PoseSequence (beam size: the run's unless given)."""
        from msmae.tasks.slt import translate_sequence

        return translate_sequence(self.model, self.tokenizer, self.meta, seq, num_beams=num_beams)


def load(run: str | Path, *, device: str = "cpu"):
    """Any msmae run or checkpoint, ready to use: pre-training -> the encoder
    (:class:`~msmae.models.MultiStreamEncoder`), ISLR -> :class:`Classifier`, SLT -> :class:`Translator`
    (its mBART-50 directory as recorded in the run, or ``MSMAE_MBART``)."""
    from msmae.train.checkpoint import load_encoder, read_checkpoint_config

    task = read_checkpoint_config(run).get("task")
    if task == "islr":
        from msmae.tasks.islr import model_from_run

        model, meta = model_from_run(run, device=device)
        return Classifier(model, list(meta["classes"]), meta)
    if task == "slt":
        from msmae.tasks.slt import translator_from_run

        return Translator(*translator_from_run(run, device=device))
    return load_encoder(run, device=device)


def predict(model: Classifier | str | Path, seq, top: int = 5) -> list[dict]:
    """Top-k signs of a PoseSequence (or of a pose file or video given by path) by an ISLR run."""
    clf = model if isinstance(model, Classifier) else load(model)
    if not isinstance(clf, Classifier):
        raise ValueError(f"{model}: not an ISLR run")
    return clf.predict(read(seq) if isinstance(seq, (str, Path)) else seq, top)


def translate(model: Translator | str | Path, seq, *, num_beams: int | None = None) -> str:
    """The translation of a PoseSequence (or of a pose file or video given by path) by an SLT run."""
    tr = model if isinstance(model, Translator) else load(model)
    if not isinstance(tr, Translator):
        raise ValueError(f"{model}: not an SLT run")
    return tr.translate(read(seq) if isinstance(seq, (str, Path)) else seq, num_beams=num_beams)


def pack(inputs: Iterable[str | Path], out: str | Path, *, workers: int = 1, normalize: bool = True):
    """Pack pose files (or folders of them) into a corpus for pre-training (what ``msmae pack`` does);
    returns the summary (added, unchanged, failed, totals)."""
    from msmae.corpus import pack_corpus

    return pack_corpus(list(inputs), out, workers=workers, normalize=normalize)


def task_config(kind: str, path: str | Path | None = None, overrides: Iterable[str] = ()):
    """A task's config: ``kind`` pretrain | islr | probe | slt, from a YAML file (optional) and ``key=value``
    overrides, as the command line's ``--config`` and ``--set`` make it."""
    from msmae.config import load_config

    if kind == "pretrain":
        from msmae.tasks.pretrain import PretrainConfig

        return load_config(PretrainConfig, path, list(overrides))
    if kind in ("islr", "probe"):
        from msmae.tasks.islr import IslrConfig, probe_base

        cfg = load_config(IslrConfig, path, list(overrides), base=probe_base() if kind == "probe" else None)
        cfg.mode = "probe" if kind == "probe" else "finetune"
        return cfg
    if kind == "slt":
        from msmae.tasks.slt import SltConfig

        return load_config(SltConfig, path, list(overrides))
    raise ValueError(f"unknown config kind {kind!r}; choose pretrain, islr, probe or slt")


def pretrain(cfg, data: str | Path, out: str | Path, *, resume: bool = False, progress: bool = True) -> dict:
    """Pre-train MS-MAE on a packed corpus (``cfg``: a ``PretrainConfig``); returns the final metrics."""
    from msmae.tasks.pretrain import pretrain as run

    return run(cfg, data, out, resume=resume, progress=progress)


def finetune(cfg, out: str | Path, *, resume: bool = False, progress: bool = True) -> dict:
    """Fine-tune for ISLR (``IslrConfig``; ``mode="probe"`` for the linear probe) or SLT (``SltConfig``);
    returns the metrics written to ``out/metrics.json``."""
    from msmae.tasks.islr import IslrConfig
    from msmae.tasks.slt import SltConfig

    if isinstance(cfg, IslrConfig):
        from msmae.tasks.islr import finetune as run
    elif isinstance(cfg, SltConfig):
        from msmae.tasks.slt import finetune as run
    else:
        raise TypeError(f"finetune takes an IslrConfig or an SltConfig, not {type(cfg).__name__}")
    return run(cfg, out, resume=resume, progress=progress)
