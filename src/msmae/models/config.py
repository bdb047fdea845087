"""Model configuration and the registry of named sizes (DESIGN.md "Model")."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from msmae.layout import get_layout


@dataclass
class ModelConfig:
    """Hyper-parameters of MS-MAE. Defaults are the paper's (section 4.1)."""

    streams: str = "body,hands"   # layout spec (msmae.layout.get_layout): "body,hands" or "body,hands,face"
    cubelet: int = 4              # S: frames per token; Conv1D kernel = stride = S
    dim: int = 512                # C: encoder width
    depth: int = 8                # L: encoder layers
    heads: int = 8                # encoder attention heads
    mlp_ratio: float = 4.0        # MLP hidden width = mlp_ratio * width (encoder and decoder)
    dropout: float = 0.0          # dropout on attention weights and residual branches
    decoder_dim: int = 512        # decoder width
    decoder_depth: int = 4        # decoder layers
    decoder_heads: int = 8        # decoder attention heads

    def __post_init__(self) -> None:
        get_layout(self.streams)  # fails early with the layout module's message
        for name in ("cubelet", "dim", "depth", "heads", "decoder_dim", "decoder_depth", "decoder_heads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"model config: {name} must be a positive integer, got {getattr(self, name)!r}")
        if self.dim % self.heads:
            raise ValueError(f"model config: dim {self.dim} is not divisible by heads {self.heads}")
        if self.decoder_dim % self.decoder_heads:
            raise ValueError(
                f"model config: decoder_dim {self.decoder_dim} is not divisible by "
                f"decoder_heads {self.decoder_heads}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"model config: mlp_ratio must be positive, got {self.mlp_ratio}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model config: dropout must be in [0, 1), got {self.dropout}")

    @property
    def layout(self):
        """The :class:`msmae.layout.Layout` of ``streams``."""
        return get_layout(self.streams)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"model config: unknown fields {unknown}; known: {sorted(known)}")
        return cls(**d)


# Named sizes. "paper" is section 4.1; "tiny" trains in a few hundred CPU steps (tests, demo).
SIZES: dict[str, dict] = {
    "paper": dict(cubelet=4, dim=512, depth=8, heads=8, decoder_dim=512, decoder_depth=4, decoder_heads=8),
    "tiny": dict(cubelet=4, dim=128, depth=4, heads=4, decoder_dim=128, decoder_depth=2, decoder_heads=4),
}


def model_config(size: str = "paper", **overrides) -> ModelConfig:
    """The config of a named size with field overrides, e.g. ``model_config("tiny", streams="body,hands,face")``."""
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}; choose from {sorted(SIZES)}")
    known = {f.name for f in fields(ModelConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown model config fields {unknown}; known: {sorted(known)}")
    return ModelConfig(**{**SIZES[size], **overrides})
