"""Small random-weight CLIP checkpoints for tests, built without PyTorch.

``write_tiny_checkpoint(path, kind="vit"|"resnet", seed=0)`` writes a MindSpore
``.ckpt`` with the parameter names of ``clip.model.CLIP`` (``gamma``/``beta``,
``moving_mean``/``moving_variance``, ``embedding_table``), holding seeded random
float32 values. ``clip.load`` infers the architecture from the weights, so these
files load exactly like OpenAI's converted checkpoints, only much smaller.

The text tower keeps the real vocabulary (49408) and context length (77), so
``clip.tokenize`` output can be fed to the model as it is; widths are the smallest
the architecture allows (heads are 64 wide, so widths are multiples of 64).
"""
import math

import numpy as np

__all__ = ["TINY_CONFIGS", "tiny_config", "tiny_state_dict", "write_tiny_checkpoint"]

_TEXT = dict(context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1,
             transformer_layers=1)

TINY_CONFIGS = {
    # a ViT-B/32 layout (224 px, 32 px patches), one block of width 64
    "vit": dict(embed_dim=32, image_resolution=224, vision_layers=1, vision_width=64,
                vision_patch_size=32, **_TEXT),
    # a ModifiedResNet (RN50 layout) with one bottleneck per stage; width 32 (16 heads of 64)
    # rather than RN50's 64 keeps the file at ~34 MB instead of ~96 MB (the attention
    # pool's four projections are (32 * width)^2 each)
    "resnet": dict(embed_dim=32, image_resolution=224, vision_layers=(1, 1, 1, 1), vision_width=32,
                   vision_patch_size=None, **_TEXT),
}


def tiny_config(kind="vit", **overrides):
    """The ``clip.model.CLIP(...)`` arguments of a tiny model of ``kind``, with ``overrides``."""
    if kind not in TINY_CONFIGS:
        raise ValueError(f"kind must be one of {sorted(TINY_CONFIGS)}, got {kind!r}")
    config = dict(TINY_CONFIGS[kind])
    unknown = set(overrides) - set(config)
    if unknown:
        raise TypeError(f"unknown CLIP arguments: {sorted(unknown)}")
    config.update(overrides)
    return config


def _random_value(name, shape, rng):
    """A plausible random value for the parameter ``name``: unit-variance activations
    through convolutions and dense layers, positive BatchNorm variances, CLIP's
    ``logit_scale`` = log(100)."""
    leaf = name.rsplit(".", 1)[-1]
    if name == "logit_scale":
        return np.full(shape, math.log(100.0), dtype=np.float32)
    if leaf == "moving_variance":
        return rng.uniform(0.5, 1.5, size=shape).astype(np.float32)
    if leaf == "moving_mean":
        return (0.1 * rng.standard_normal(shape)).astype(np.float32)
    if leaf == "gamma":
        return (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
    if leaf in ("beta", "bias", "in_proj_bias"):
        return (0.02 * rng.standard_normal(shape)).astype(np.float32)
    if leaf in ("embedding_table", "positional_embedding", "class_embedding"):
        return (0.02 * rng.standard_normal(shape)).astype(np.float32)
    if name in ("text_projection", "visual.proj"):  # stored [width, embed_dim]: fan-in first
        return (rng.standard_normal(shape) / math.sqrt(shape[0])).astype(np.float32)
    if len(shape) >= 2:  # Conv2d [out, in, kh, kw], Dense [out, in], in_proj_weight [3D, D]
        fan_in = int(np.prod(shape[1:]))
        return (rng.standard_normal(shape) / math.sqrt(fan_in)).astype(np.float32)
    return (0.02 * rng.standard_normal(shape)).astype(np.float32)


def tiny_state_dict(kind="vit", seed=0, **overrides):
    """``{MindSpore parameter name: float32 array}`` of a tiny random CLIP of ``kind``."""
    from clip.model import CLIP  # imported late: MindSpore is slow to import

    model = CLIP(**tiny_config(kind, **overrides))  # only the names and shapes are used
    rng = np.random.default_rng(seed)
    return {name: _random_value(name, tuple(param.shape), rng) for name, param in model.parameters_and_names()}


def write_tiny_checkpoint(path, kind="vit", seed=0, **overrides):
    """Write a tiny random CLIP of ``kind`` ("vit" or "resnet") as a MindSpore ``.ckpt``
    at ``path`` (with ``clip.convert.save_state_dict``) and return ``path``."""
    from clip.convert import save_state_dict

    return save_state_dict(tiny_state_dict(kind, seed, **overrides), str(path))


if __name__ == "__main__":  # python tests/tiny_checkpoint.py OUT.ckpt [vit|resnet]
    import sys

    out = write_tiny_checkpoint(sys.argv[1], *(sys.argv[2:3] or ["vit"]))
    print(f"saved {out}")
