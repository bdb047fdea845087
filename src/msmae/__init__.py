"""msmae: Multi-Stream Masked AutoEncoder for sign-language keypoint sequences.

From Python (see the README's "Use from Python")::

    import msmae
    seq = msmae.read("clip.pose")                    # a pose file or a video -> PoseSequence
    encoder = msmae.load("runs/pretrain")            # pre-training run -> encoder
    msmae.load("runs/islr").predict(seq, top=5)      # ISLR run -> Classifier
    msmae.load("runs/slt").translate(seq)            # SLT run -> Translator

The command line is ``msmae`` (``msmae --help``).
"""

__version__ = "0.1.0"

# name -> module that defines it; imported on first use, so that ``import msmae`` does not import torch.
_LAZY = {
    "read": "msmae.api", "load": "msmae.api", "predict": "msmae.api", "translate": "msmae.api",
    "pack": "msmae.api", "task_config": "msmae.api", "pretrain": "msmae.api", "finetune": "msmae.api",
    "Classifier": "msmae.api", "Translator": "msmae.api",
    "load_encoder": "msmae.train.checkpoint",
    "read_sequence": "msmae.poses.readers", "PoseSequence": "msmae.poses.sequence",
    "PretrainConfig": "msmae.tasks.pretrain", "IslrConfig": "msmae.tasks.islr", "SltConfig": "msmae.tasks.slt",
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'msmae' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
