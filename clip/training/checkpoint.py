"""Training checkpoints: a folder that :func:`clip.load` and :func:`resume` both understand.

::

    CHECKPOINT/
        model.ckpt        the weights, MindSpore parameter names, and the architecture:
                          clip.load("CHECKPOINT/model.ckpt")
        optimizer.ckpt    AdamW's moments, named exp_avg.<parameter> / exp_avg_sq.<parameter>
        state.json        step, epoch, schedule, optimiser groups, model config, trained parameters,
                          frozen BatchNorms, accumulation, clipping, your ``extra``, and the SHA-256
                          of the two .ckpt files

Each file is written to a temporary name and renamed into place (``clip._atomic``), so none is
ever half-written; ``state.json`` is written last and names the hashes of the weights it belongs
with, so a checkpoint whose writing was interrupted between files is detected when it is read.
"""
import json
import os
from collections import OrderedDict

import numpy as np

from .._atomic import write_atomically
from ..clip import _load_ms_checkpoint
from .._download import _sha256_file
from ..convert import save_state_dict
from ..open_clip.weights import ARCHITECTURE_KEY
from .trainer import STATE_FORMAT, Trainer

__all__ = ["save_checkpoint", "load_checkpoint", "resume", "WEIGHTS_FILE", "OPTIMIZER_FILE", "STATE_FILE"]

WEIGHTS_FILE = "model.ckpt"
OPTIMIZER_FILE = "optimizer.ckpt"
STATE_FILE = "state.json"


#: Entries of the optimiser's state kept in ``state.json``, not in the moments' file.
_OPTIMIZER_META = ("step", "moment_scale")


def save_checkpoint(path: str, trainer, extra: dict = None) -> str:
    """Write the training state of ``trainer`` (a :class:`Trainer`, or the dict of its
    ``state_dict()``) to the folder ``path``; ``extra`` is any JSON-able dict stored beside it
    (data-loader position, metrics...). Returns ``path``."""
    state = trainer.state_dict() if isinstance(trainer, Trainer) else trainer
    if state.get("format") != STATE_FORMAT:
        raise ValueError("save_checkpoint takes a Trainer or the dict of Trainer.state_dict()")
    os.makedirs(path, exist_ok=True)
    weights = os.path.join(path, WEIGHTS_FILE)
    moments = os.path.join(path, OPTIMIZER_FILE)
    save_state_dict(OrderedDict((k, np.asarray(v, np.float32)) for k, v in state["model"].items()), weights,
                    architecture=state["config"])
    save_state_dict(OrderedDict((k, v) for k, v in state["optimizer"].items() if k not in _OPTIMIZER_META), moments)
    meta = {key: value for key, value in state.items() if key not in ("model", "optimizer")}
    meta["optimizer_step"] = int(np.asarray(state["optimizer"]["step"]))
    if "moment_scale" in state["optimizer"]:  # exact in JSON: floats are written with repr
        meta["optimizer_moment_scale"] = np.asarray(state["optimizer"]["moment_scale"], np.float64).tolist()
    meta["extra"] = extra or {}
    meta["files"] = {WEIGHTS_FILE: _sha256_file(weights).hexdigest(), OPTIMIZER_FILE: _sha256_file(moments).hexdigest()}
    write_atomically(os.path.join(path, STATE_FILE), lambda f: json.dump(meta, f, indent=1, sort_keys=True))
    return path


def _read_ckpt(path):
    """The arrays of a ``.ckpt`` (not the recorded architecture)."""
    return OrderedDict((name, value.asnumpy()) for name, value in _load_ms_checkpoint(path).items()
                       if name != ARCHITECTURE_KEY)


def load_checkpoint(path: str) -> dict:
    """The training state saved in the folder ``path``, as :meth:`Trainer.state_dict` returns it,
    plus ``extra``. Raises ``ValueError`` if a file is missing or does not match ``state.json``."""
    state_file = os.path.join(path, STATE_FILE)
    if not os.path.isfile(state_file):
        raise FileNotFoundError(f"{path}: not a training checkpoint (no {STATE_FILE})")
    with open(state_file, encoding="utf-8") as f:
        meta = json.load(f)
    if meta.get("format") != STATE_FORMAT:
        raise ValueError(f"{state_file}: unknown format {meta.get('format')!r}")
    for name, expected in meta["files"].items():
        file = os.path.join(path, name)
        if not os.path.isfile(file):
            raise ValueError(f"{path}: {name} is missing")
        if _sha256_file(file).hexdigest() != expected:
            raise ValueError(f"{path}: {name} does not belong with {STATE_FILE} (SHA-256 differs); "
                             "the checkpoint was not completely written")
    state = {key: value for key, value in meta.items()
             if key not in ("files", "optimizer_step", "optimizer_moment_scale")}
    state["model"] = _read_ckpt(os.path.join(path, WEIGHTS_FILE))
    state["optimizer"] = _read_ckpt(os.path.join(path, OPTIMIZER_FILE))
    state["optimizer"]["step"] = np.array(meta["optimizer_step"], np.int64)
    if "optimizer_moment_scale" in meta:  # absent from checkpoints of versions before the fused update
        state["optimizer"]["moment_scale"] = np.array(meta["optimizer_moment_scale"], np.float64)
    return state


def resume(path: str, trainer, strict: bool = True) -> dict:
    """Load the checkpoint folder ``path`` into ``trainer`` (its model and optimiser, in place) and
    return the loaded state (``step``, ``epoch``, ``extra``...). ``trainer`` must have been built
    like the one that saved it: same architecture, locks, BatchNorm policy and, with ``strict``,
    the same schedule, ``accum_freq`` and ``grad_clip_norm``. Training then continues exactly as if
    it had not stopped."""
    state = load_checkpoint(path)
    trainer.load_state_dict(state, strict=strict)
    return state
