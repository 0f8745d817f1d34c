"""open_clip's model configurations (kept as data in ``model_configs.json``) and their
translation into the arguments of :class:`clip.model.CLIP`."""
import copy
import json
import os
import re

__all__ = ["list_models", "get_model_config", "architecture_of", "add_model_config"]

_HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(_HERE, "model_configs.json"), encoding="utf-8") as _f:
    _CONFIGS = json.load(_f)["models"]


def list_models():
    """The architecture names of open_clip that this library builds (sorted as open_clip sorts)."""
    return sorted(_CONFIGS, key=lambda name: [int(p) if p.isdigit() else p.lower()
                                              for p in re.split(r"(\d+)", name)])


def get_model_config(model_name: str) -> dict:
    """A copy of open_clip's JSON configuration of ``model_name``; unknown names raise
    ``RuntimeError`` listing the known ones."""
    if not isinstance(model_name, str):
        raise TypeError(f"model_name must be a string, got {type(model_name).__name__}")
    name = model_name.replace("/", "-")  # OpenAI's spelling ViT-B/32 is accepted too
    if name not in _CONFIGS:
        raise RuntimeError(f"Model config for {model_name} not found; available models = {list_models()}")
    return copy.deepcopy(_CONFIGS[name])


def architecture_of(config: dict, quick_gelu: bool = False, image_size: int = None) -> dict:
    """The keyword arguments of :class:`clip.model.CLIP` for an open_clip configuration.

    open_clip's rules: heads of ``head_width`` channels (default 64) in the image tower
    (``width * 32 // head_width`` for a ResNet), MLP width ``int(width * mlp_ratio)``, exact GELU
    unless the config or ``quick_gelu`` asks for QuickGELU.
    """
    vision, text = config["vision_cfg"], config["text_cfg"]
    resnet = isinstance(vision["layers"], (list, tuple))
    head_width = vision.get("head_width", 64)
    width = vision["width"]
    return dict(
        embed_dim=config["embed_dim"],
        image_resolution=int(image_size or vision["image_size"]),
        vision_layers=list(vision["layers"]) if resnet else vision["layers"],
        vision_width=width,
        vision_patch_size=None if resnet else vision["patch_size"],
        context_length=text.get("context_length", 77),
        vocab_size=text.get("vocab_size", 49408),
        transformer_width=text["width"],
        transformer_heads=text["heads"],
        transformer_layers=text["layers"],
        vision_heads=width * 32 // head_width if resnet else width // head_width,
        vision_mlp_ratio=vision.get("mlp_ratio", 4.0),
        text_mlp_ratio=text.get("mlp_ratio", 4.0),
        quick_gelu=bool(quick_gelu or config.get("quick_gelu", False)),
    )


def add_model_config(name: str, config: dict):
    """Register (or replace) an architecture ``name`` with an open_clip-style configuration dict
    (``embed_dim``, ``vision_cfg``, ``text_cfg``, optional ``quick_gelu``), as open_clip's
    ``add_model_config`` does with JSON files; :func:`architecture_of` must accept it."""
    if not isinstance(config, dict) or not {"embed_dim", "vision_cfg", "text_cfg"} <= set(config):
        raise ValueError("a model config needs 'embed_dim', 'vision_cfg' and 'text_cfg'")
    architecture_of(config)  # refuses what cannot be built
    _CONFIGS[name] = copy.deepcopy(config)
