"""open_clip's models in MindSpore: the CLIP architectures of open_clip (RN50 ... ViT-bigG-14 and
their ``-quickgelu`` variants) with open_clip's API. Configurations and pretrained tags are data
taken from open_clip (https://github.com/mlfoundations/open_clip, MIT license)."""
from .config import add_model_config, get_model_config, list_models
from .factory import create_model, create_model_and_transforms, get_tokenizer
from .model import OpenCLIP
from .pos_embed import resize_bicubic_antialias, resize_pos_embed
from .pretrained import get_pretrained_cfg, list_pretrained
from .tokenizer import Tokenizer
from .weights import ARCHITECTURE_KEY, read_weights

__all__ = ["list_models", "list_pretrained", "add_model_config", "get_model_config", "get_pretrained_cfg", "create_model",
           "create_model_and_transforms", "get_tokenizer", "OpenCLIP", "Tokenizer", "ARCHITECTURE_KEY",
           "read_weights", "resize_pos_embed", "resize_bicubic_antialias"]
