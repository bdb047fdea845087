"""Model configuration and the registry of named sizes (DESIGN.md "Model")."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from msmae.layout import get_layout


MAX_WEIGHTS = 1e10  # about 40 GB of float32: the paper's model has 3e7
MAX_LAYERS = 1000   # per encoder or decoder (the paper's: 8 and 4); even laid out without memory, a million take hours


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
        if not isinstance(self.streams, str):
            raise ValueError(f"model config: streams must be text such as 'body,hands', got {self.streams!r}")
        get_layout(self.streams)  # fails early with the layout module's message
        for name in ("cubelet", "dim", "depth", "heads", "decoder_dim", "decoder_depth", "decoder_heads"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"model config: {name} must be a positive integer, got {v!r}")
        for name in ("mlp_ratio", "dropout"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), (int, float)):
                raise ValueError(f"model config: {name} must be a number, got {getattr(self, name)!r}")
        if self.dim % self.heads:
            raise ValueError(f"model config: dim {self.dim} is not divisible by heads {self.heads}")
        if self.decoder_dim % self.decoder_heads:
            raise ValueError(
                f"model config: decoder_dim {self.decoder_dim} is not divisible by "
                f"decoder_heads {self.decoder_heads}")
        if not 0 < self.mlp_ratio < float("inf"):  # NaN fails too
            raise ValueError(f"model config: mlp_ratio must be positive, got {self.mlp_ratio}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model config: dropout must be in [0, 1), got {self.dropout}")
        for name in ("depth", "decoder_depth"):
            if getattr(self, name) > MAX_LAYERS:
                raise ValueError(f"model config: {name} {getattr(self, name)} is more than {MAX_LAYERS} layers; "
                                 f"refused before anything is built")
        if self.num_weights_estimate() > MAX_WEIGHTS:
            raise ValueError(
                f"model config: about {self.num_weights_estimate():.3g} weights (dim {self.dim}, depth {self.depth}, "
                f"decoder_dim {self.decoder_dim}, decoder_depth {self.decoder_depth}, cubelet {self.cubelet}, "
                f"mlp_ratio {self.mlp_ratio}); more than {MAX_WEIGHTS:.0e} is refused before anything is built")

    def num_weights_estimate(self) -> float:
        """Roughly how many weights the model has (attention 4 C^2 + MLP 2 r C^2 per layer, C^2 S per cubelet
        embedding): computed from the sizes alone, so an absurd config is refused before any allocation."""
        per_layer = 4 + 2 * float(self.mlp_ratio)
        return (float(self.depth) * per_layer * float(self.dim) ** 2 + 3 * float(self.cubelet) * float(self.dim) ** 2
                + float(self.decoder_depth) * per_layer * float(self.decoder_dim) ** 2)

    @property
    def layout(self):
        """The :class:`msmae.layout.Layout` of ``streams``."""
        return get_layout(self.streams)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        if not isinstance(d, dict):
            raise ValueError(f"model config: expected a mapping of model settings, got {d!r}")
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
