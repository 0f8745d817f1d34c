"""PyTorch weights -> MindSpore ``.ckpt`` (or ``.safetensors``), without PyTorch (the logic behind
``ckpt_transform.py``): OpenAI's ``.pt`` files, and open_clip's ``open_clip_pytorch_model.bin`` /
``open_clip_model.safetensors`` given their model name, whose architecture the output records."""
import argparse
import os
import sys

import numpy as np
from mindspore import Tensor, save_checkpoint

from . import _download
from ._atomic import atomic_path
from .model import convert_torch_state_dict
from .pt_reader import CheckpointError, read_pt

__all__ = ["convert", "default_output_path", "save_state_dict", "main", "FORMATS"]

#: output formats: MindSpore's checkpoint, or safetensors written by MindSpore
FORMATS = {"ckpt": ".ckpt", "safetensors": ".safetensors"}


def default_output_path(pt_path: str, format: str = "ckpt") -> str:
    """``PATH`` with its suffix (``.pt``, ``.pth``...) replaced by ``.ckpt`` (or ``.safetensors``)."""
    root, _ = os.path.splitext(pt_path)
    return root + FORMATS[format]


def save_state_dict(state_dict, path: str, architecture: dict = None, format: str = "ckpt") -> str:
    """Write ``{name: array}`` as a MindSpore checkpoint at ``path``, atomically, with a CRC.

    The data goes to a temporary file in the same folder, which is renamed onto ``path``
    only once complete, so ``path`` never holds a partial file. Dtypes are kept. The file carries
    a CRC (``save_checkpoint(..., crc_check=True)``), verified when it is loaded. ``architecture``
    (``CLIP(...)`` arguments) is recorded as JSON under ``clip.open_clip.ARCHITECTURE_KEY``: a
    string in a ``.ckpt``, a uint8 tensor of its bytes in safetensors (whose entries are tensors).
    ``format``: "ckpt" or "safetensors".
    """
    from .open_clip.weights import ARCHITECTURE_KEY, encode_architecture

    if format not in FORMATS:
        raise ValueError(f"format must be one of {list(FORMATS)}, got {format!r}")
    append = None
    if architecture is not None:
        text = encode_architecture(architecture)
        append = {ARCHITECTURE_KEY: text if format == "ckpt" else
                  Tensor(np.frombuffer(text.encode("utf-8"), np.uint8).copy())}
    # save_checkpoint appends the format's suffix to names without it, so the temporary name ends with it
    with atomic_path(path, suffix=".tmp" + FORMATS[format]) as temp:
        save_checkpoint([{"name": name, "data": Tensor(np.ascontiguousarray(value))}
                         for name, value in state_dict.items()], temp, append_dict=append,
                        crc_check=True, format=format)
    return path


def _open_clip_state_dict(source, model_name):
    """MindSpore-named weights and architecture of an open_clip (or OpenAI) file for ``model_name``."""
    from .open_clip.config import architecture_of, get_model_config
    from .open_clip.model import OpenCLIP
    from .open_clip.weights import read_weights, torch_to_mindspore

    architecture = architecture_of(get_model_config(model_name))
    state, recorded, torch_names = read_weights(source)
    if recorded is not None and recorded != architecture:
        raise ValueError(f"{source} records another architecture than {model_name}'s")
    if torch_names:
        state = torch_to_mindspore(state, OpenCLIP(**architecture), source=source)
    return state, architecture


def convert(pth_path: str, output: str = None, download_root: str = None, model_name: str = None,
            format: str = "ckpt", quick_gelu: bool = False) -> str:
    """Convert OpenAI's PyTorch weights to a MindSpore ``.ckpt`` and return its path.

    ``pth_path`` is a ``.pt``/``.pth`` file (OpenAI's TorchScript release or a plain state
    dict, fp16 or fp32) or a model name from ``clip.available_models()``, which is downloaded
    first (SHA-256 checked). The output defaults to the input path with its suffix replaced
    by ``.ckpt`` — for a model name, ``<file stem>.ckpt`` in the current folder (for example
    ``ViT-B-32.ckpt``). Parameter names are MindSpore's (see ``clip.model.TORCH_NAMES``);
    dtypes are kept. The file is read without PyTorch and nothing in it is executed.

    ``model_name`` (an architecture of ``clip.open_clip.list_models()``): the input is open_clip's
    ``open_clip_pytorch_model.bin`` / ``open_clip_model.safetensors`` (or an OpenAI ``.pt``) of that
    architecture, and the output records it, so ``clip.load`` and ``clip.open_clip`` need no name.
    ``quick_gelu``: the weights were trained with QuickGELU (open_clip's ``force_quick_gelu``).
    ``format``: "ckpt" (default) or "safetensors". Without ``model_name``, open_clip's files are
    refused (their activation and head width cannot be told from the weights).
    """
    from .clip import _MODELS  # the URL table lives with the public API

    if format not in FORMATS:
        raise ValueError(f"format must be one of {list(FORMATS)}, got {format!r}")
    if pth_path in _MODELS:
        source = _download.download(_MODELS[pth_path], _download.default_cache_dir(download_root))
        default = os.path.basename(default_output_path(source, format))
    elif os.path.isfile(pth_path):
        source = pth_path
        default = default_output_path(pth_path, format)
    else:
        raise FileNotFoundError(f"{pth_path} is neither a file nor a model name; "
                                f"available models = {list(_MODELS)}")
    output = output or default
    if os.path.abspath(output) == os.path.abspath(source):
        raise ValueError(f"the output {output} would overwrite the input file")
    if model_name is not None:
        state_dict, architecture = _open_clip_state_dict(source, model_name)
        architecture["quick_gelu"] = architecture["quick_gelu"] or bool(quick_gelu)
        return save_state_dict(state_dict, output, architecture, format)
    if os.path.splitext(source)[1].lower() in (".bin", ".safetensors"):
        raise ValueError(f"{source} looks like an open_clip file: pass its architecture with --model-name "
                         "(see clip.open_clip.list_models())")
    state_dict = convert_torch_state_dict(read_pt(source), source=source)
    return save_state_dict(state_dict, output, format=format)


def add_open_clip_arguments(parser):
    """The converter's ``--model-name``, ``--quick-gelu`` and ``--format`` options."""
    parser.add_argument("--model-name", "--model_name", dest="model_name", default=None,
                        help="open_clip architecture of the input (e.g. ViT-H-14), for open_clip's "
                             "open_clip_pytorch_model.bin / open_clip_model.safetensors; recorded in the output")
    parser.add_argument("--quick-gelu", dest="quick_gelu", action="store_true",
                        help="with --model-name: the weights were trained with QuickGELU")
    parser.add_argument("--format", choices=sorted(FORMATS), default="ckpt",
                        help="output format (default: ckpt; both carry a CRC)")


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
    add_open_clip_arguments(parser)
    args = parser.parse_args(argv)
    try:
        path = convert(args.pth_path, args.output, args.download_root, args.model_name, args.format,
                       args.quick_gelu)
    except (CheckpointError, ValueError, FileNotFoundError, _download.DownloadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"saved {path}")
    return 0
