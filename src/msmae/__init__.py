"""msmae: Multi-Stream Masked AutoEncoder for sign-language keypoint sequences.

Main entry points::

    from msmae.poses.readers import read_sequence     # any pose file -> PoseSequence (canonical layout)
    import msmae; encoder = msmae.load_encoder("RUN") # a ready pre-trained encoder from a run/checkpoint

The command line is ``msmae`` (``msmae --help``).
"""

__version__ = "0.1.0"

__all__ = ["load_encoder", "__version__"]


def __getattr__(name: str):
    # Lazy, so that ``import msmae`` does not import torch.
    if name == "load_encoder":
        from msmae.train.checkpoint import load_encoder

        return load_encoder
    raise AttributeError(f"module 'msmae' has no attribute {name!r}")
