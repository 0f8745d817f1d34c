"""CLIP for MindSpore: a drop-in port of OpenAI's ``clip`` package."""
from .clip import *  # noqa: F401,F403
from .clip import __all__ as _clip_all

__version__ = "1.0.0"
__all__ = list(_clip_all)
