"""Access to OpenAI's reference implementation for the parity tests.

OpenAI's code is taken from the pip package ``clip-anytorch==2.6.0``, unpacked with
``pip install --no-deps --target DIR clip-anytorch==2.6.0``. Its import name is also
``clip``, so it is never put on ``sys.path``: its ``model.py`` and ``simple_tokenizer.py``
are loaded by file path under private module names.

``CLIP_REFERENCE_DIR`` names ``DIR`` (the folder that holds ``clip/model.py``).
Missing reference code is an error, never a skip.
"""
import importlib.util
import os
import sys
from functools import lru_cache

REFERENCE_ENV = "CLIP_REFERENCE_DIR"


def reference_dir():
    root = os.environ.get(REFERENCE_ENV)
    if not root:
        raise RuntimeError(
            f"{REFERENCE_ENV} is not set: unpack the reference with "
            "'pip install --no-deps --target DIR clip-anytorch==2.6.0' and set "
            f"{REFERENCE_ENV}=DIR (see .ci/run)")
    path = os.path.join(root, "clip")
    if not os.path.isfile(os.path.join(path, "model.py")):
        raise RuntimeError(f"{REFERENCE_ENV}={root} does not contain clip/model.py")
    return path


@lru_cache(maxsize=None)
def load(module):
    """Load ``clip/<module>.py`` of the reference as ``_openai_clip_<module>``."""
    name = f"_openai_clip_{module}"
    spec = importlib.util.spec_from_file_location(name, os.path.join(reference_dir(), f"{module}.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def model_module():
    """OpenAI's ``clip/model.py`` (imports torch)."""
    return load("model")


def tokenizer_module():
    """OpenAI's ``clip/simple_tokenizer.py``."""
    return load("simple_tokenizer")
