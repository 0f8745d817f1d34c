"""Reading weights in every format :mod:`clip.open_clip` and :func:`clip.load` accept.

* open_clip's ``open_clip_pytorch_model.bin`` and OpenAI's ``.pt`` (PyTorch zip archives, read
  by :mod:`clip.pt_reader` without torch), and ``.safetensors`` with PyTorch's names (open_clip's
  ``open_clip_model.safetensors``, read with ``safetensors.numpy``);
* this library's ``.ckpt`` / ``.safetensors`` (MindSpore names), which may record their
  architecture under :data:`ARCHITECTURE_KEY` (a JSON string; a uint8 tensor of its bytes in
  safetensors, whose entries must be tensors) and carry a CRC, checked when present.
"""
import json
import os
from collections import OrderedDict

import numpy as np

from ..model import WeightsMismatchError, is_ignored_key, torch_name_map
from ..pt_reader import CheckpointError, read_pt

__all__ = ["ARCHITECTURE_KEY", "read_weights", "torch_to_mindspore", "encode_architecture",
           "decode_architecture"]

#: the entry of a ``.ckpt`` / ``.safetensors`` written by this library that holds the ``CLIP(...)``
#: arguments as JSON
ARCHITECTURE_KEY = "clip_architecture"
_TORCH_SUFFIXES = (".pt", ".pth", ".bin")
_MINDSPORE_MARKERS = (".gamma", ".beta", ".moving_mean", "embedding_table")


def encode_architecture(architecture: dict) -> str:
    """The JSON text recorded in a checkpoint for ``architecture`` (``CLIP(...)`` arguments)."""
    return json.dumps(architecture, sort_keys=True)


def decode_architecture(value, path) -> dict:
    """The ``CLIP(...)`` arguments recorded in a checkpoint entry (a string or uint8 bytes)."""
    try:
        if not isinstance(value, str):
            value = bytes(np.asarray(value, np.uint8).reshape(-1)).decode("utf-8")
        architecture = json.loads(value)
        if not isinstance(architecture, dict):
            raise ValueError("not a JSON object")
        return architecture
    except (ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: the recorded architecture ({ARCHITECTURE_KEY}) is unreadable: {error}") from None


def _read_safetensors(path):
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, "np") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from None
    if metadata.get("format") == "ms":  # written by mindspore.save_checkpoint: CRC-checked there
        from ..clip import _read_ckpt_entries
        return _read_ckpt_entries(path, format="safetensors")
    import safetensors.numpy
    try:
        return dict(safetensors.numpy.load_file(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from None


def _strip_prefixes(state):
    """open_clip's files may come from DistributedDataParallel (``module.``) or a CustomTextCLIP
    (``text.``); both spell the same parameters."""
    out = OrderedDict()
    for key, value in state.items():
        if key.startswith("module."):
            key = key[len("module."):]
        if key.startswith("text."):
            key = key[len("text."):]
        out[key] = value
    return out


def read_weights(path):
    """``(state_dict, architecture, torch_names)`` of a weights file: the entries (NumPy arrays),
    the recorded ``CLIP(...)`` arguments or ``None``, and whether the names are PyTorch's."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".ckpt":
        from ..clip import _read_ckpt_entries
        state = _read_ckpt_entries(path)
    elif suffix == ".safetensors":
        state = _read_safetensors(path)
    elif suffix in _TORCH_SUFFIXES:
        state = read_pt(path)
    else:
        raise ValueError(f"{path}: unsupported file type {suffix or '(no suffix)'!r}; expected .ckpt, "
                         ".safetensors, .bin, .pt or .pth")
    architecture = None
    if ARCHITECTURE_KEY in state:
        architecture = decode_architecture(state.pop(ARCHITECTURE_KEY), path)
    state = OrderedDict((k, v) for k, v in state.items() if not isinstance(v, str))
    if not state:
        raise CheckpointError(f"{path}: the file holds no parameters")
    torch_names = not any(key.endswith(_MINDSPORE_MARKERS) for key in state)
    if torch_names:
        state = _strip_prefixes(state)
    return state, architecture, torch_names


def torch_to_mindspore(state, model, source=None):
    """Rename PyTorch-named weights (open_clip's or OpenAI's) to ``model``'s MindSpore names,
    strictly: every parameter must be there and every entry used (except the ignore set)."""
    where = f" in {source}" if source else ""
    names = torch_name_map(model)
    missing = [torch for torch in names.values() if torch not in state]
    known = set(names.values())
    unexpected = [key for key in state if key not in known and not is_ignored_key(key)]
    if missing or unexpected:
        raise WeightsMismatchError(
            f"the weights{where} do not fit this architecture: missing {missing[:20]} ({len(missing)}), "
            f"unexpected {unexpected[:20]} ({len(unexpected)}); is the model name right?")
    return OrderedDict((ms_name, state[torch]) for ms_name, torch in names.items())
