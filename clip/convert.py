"""PyTorch ``.pt`` -> MindSpore ``.ckpt``, without PyTorch (the logic behind ``ckpt_transform.py``)."""
import argparse
import os
import sys

import numpy as np
from mindspore import Tensor, save_checkpoint

from . import _download
from ._atomic import atomic_path
from .model import convert_torch_state_dict
from .pt_reader import CheckpointError, read_pt

__all__ = ["convert", "default_output_path", "save_state_dict", "main"]


def default_output_path(pt_path: str) -> str:
    """``PATH`` with its suffix (``.pt``, ``.pth``...) replaced by ``.ckpt``; nothing else changes."""
    root, _ = os.path.splitext(pt_path)
    return root + ".ckpt"


def save_state_dict(state_dict, path: str) -> str:
    """Write ``{name: array}`` as a MindSpore checkpoint at ``path``, atomically.

    The data goes to a temporary file in the same folder, which is renamed onto ``path``
    only once complete, so ``path`` never holds a partial file. Dtypes are kept.
    """
    # save_checkpoint appends ".ckpt" to names without it, so the temporary name ends with it
    with atomic_path(path, suffix=".tmp.ckpt") as temp:
        save_checkpoint([{"name": name, "data": Tensor(np.ascontiguousarray(value))}
                         for name, value in state_dict.items()], temp)
    return path


def convert(pth_path: str, output: str = None, download_root: str = None) -> str:
    """Convert OpenAI's PyTorch weights to a MindSpore ``.ckpt`` and return its path.

    ``pth_path`` is a ``.pt``/``.pth`` file (OpenAI's TorchScript release or a plain state
    dict, fp16 or fp32) or a model name from ``clip.available_models()``, which is downloaded
    first (SHA-256 checked). The output defaults to the input path with its suffix replaced
    by ``.ckpt`` — for a model name, ``<file stem>.ckpt`` in the current folder (for example
    ``ViT-B-32.ckpt``). Parameter names are MindSpore's (see ``clip.model.TORCH_NAMES``);
    dtypes are kept. The file is read without PyTorch and nothing in it is executed.
    """
    from .clip import _MODELS  # the URL table lives with the public API

    if pth_path in _MODELS:
        source = _download.download(_MODELS[pth_path], _download.default_cache_dir(download_root))
        default = os.path.basename(default_output_path(source))
    elif os.path.isfile(pth_path):
        source = pth_path
        default = default_output_path(pth_path)
    else:
        raise FileNotFoundError(f"{pth_path} is neither a file nor a model name; "
                                f"available models = {list(_MODELS)}")
    output = output or default
    if os.path.abspath(output) == os.path.abspath(source):
        raise ValueError(f"the output {output} would overwrite the input file")
    state_dict = convert_torch_state_dict(read_pt(source), source=source)
    return save_state_dict(state_dict, output)


def main(argv=None):
    """Command line: ``python ckpt_transform.py --pth_path PATH_OR_MODEL_NAME [--output OUT.ckpt]``."""
    parser = argparse.ArgumentParser(
        prog="ckpt_transform.py",
        description="Convert OpenAI CLIP PyTorch weights (.pt) to a MindSpore checkpoint (.ckpt) "
                    "without PyTorch.")
    parser.add_argument("--pth_path", required=True,
                        help="path of a .pt/.pth file, or a model name such as ViT-B/32 (downloaded)")
    parser.add_argument("--output", default=None,
                        help="output .ckpt path (default: the input path with the suffix .ckpt)")
    parser.add_argument("--download_root", default=None,
                        help="cache folder for downloads (default: $CLIP_CACHE_DIR or ~/.cache/clip)")
    args = parser.parse_args(argv)
    try:
        path = convert(args.pth_path, args.output, args.download_root)
    except (CheckpointError, ValueError, FileNotFoundError, _download.DownloadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"saved {path}")
    return 0
