"""CLIP for MindSpore: a drop-in port of OpenAI's ``clip`` package.

``available_models``, ``load`` and ``tokenize`` behave as in OpenAI's package; the zero-shot,
feature-extraction and evaluation toolkit is exported beside them (see the README).
"""
from .clip import *  # noqa: F401,F403
from .clip import __all__ as _clip_all
from . import datasets, distributed, evaluation, model, plotting, prompts  # noqa: F401
from .features import ImageFeatures, extract_image_features, extract_text_features
from .prompts import available_prompt_sets, get_prompt_set
from .zeroshot import ZeroShotClassifier, zero_shot_classifier, zero_shot_logits

__version__ = "1.0.0"
__all__ = list(_clip_all) + [
    "zero_shot_classifier", "zero_shot_logits", "ZeroShotClassifier",
    "extract_image_features", "extract_text_features", "ImageFeatures",
    "get_prompt_set", "available_prompt_sets",
]
