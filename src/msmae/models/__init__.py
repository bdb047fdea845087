"""MS-MAE models: config and sizes, multi-stream encoder, masking, the pre-training autoencoder."""

from msmae.models.config import SIZES, ModelConfig, model_config
from msmae.models.encoder import EncoderOutput, MultiStreamEncoder
from msmae.models.mae import MAEOutput, MSMAE
from msmae.models.masking import MASK_MODES, make_visible

__all__ = ["SIZES", "ModelConfig", "model_config", "EncoderOutput", "MultiStreamEncoder", "MAEOutput", "MSMAE",
           "MASK_MODES", "make_visible"]
