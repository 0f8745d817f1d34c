"""The public API: ``available_models``, ``load`` and ``tokenize``, as in OpenAI's ``clip``."""
import contextlib
import ctypes
import functools
import logging
import os
from typing import List, Union

import numpy as np
import mindspore as ms
from mindspore import Tensor

from . import _download, pt_reader, transform
from .model import ModelConfigError, ModifiedResNet, build_model, convert_torch_state_dict
from .simple_tokenizer import SimpleTokenizer as _Tokenizer

__all__ = ["available_models", "load", "tokenize"]

_tokenizer = _Tokenizer()

# OpenAI's release files; the second-to-last part of each URL is the file's SHA-256.
_MODELS = {
    "RN50": "https://openaipublic.azureedge.net/clip/models/afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt",
    "RN101": "https://openaipublic.azureedge.net/clip/models/8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599/RN101.pt",
    "RN50x4": "https://openaipublic.azureedge.net/clip/models/7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd/RN50x4.pt",
    "RN50x16": "https://openaipublic.azureedge.net/clip/models/52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa/RN50x16.pt",
    "RN50x64": "https://openaipublic.azureedge.net/clip/models/be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c/RN50x64.pt",
    "ViT-B/32": "https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
    "ViT-B/16": "https://openaipublic.azureedge.net/clip/models/5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
    "ViT-L/14": "https://openaipublic.azureedge.net/clip/models/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
    "ViT-L/14@336px": "https://openaipublic.azureedge.net/clip/models/3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt",
}

_DEVICE_ALIASES = {"ascend": "Ascend", "npu": "Ascend", "gpu": "GPU", "cuda": "GPU", "cpu": "CPU"}
_MODES = {0: ms.GRAPH_MODE, 1: ms.PYNATIVE_MODE, "graph": ms.GRAPH_MODE, "pynative": ms.PYNATIVE_MODE}
_TORCH_SUFFIXES = (".pt", ".pth", ".bin")
_MINDSPORE_SUFFIXES = (".ckpt", ".safetensors")
# MindSpore's message for a file it cannot parse, also given when a CRC check fails
_UNREADABLE = "Failed to read the checkpoint file"


def available_models() -> List[str]:
    """Returns the names of the available CLIP models (OpenAI's release, in OpenAI's order)."""
    return list(_MODELS.keys())


class _DeviceProbeFilter(logging.Filter):
    """Drops the warnings MindSpore logs while it is asked whether a device exists."""

    def filter(self, record):
        message = record.getMessage()
        return not ("is not available" in message or "loading plugin" in message)


@functools.lru_cache(maxsize=None)
def _device_available(target: str) -> bool:
    """Whether this MindSpore can run on ``target``. MindSpore answers "no" with warnings
    (plugin load errors); they are filtered while asking, and the answer is cached."""
    module = {"Ascend": ms.device_context.ascend, "GPU": ms.device_context.gpu, "CPU": ms.device_context.cpu}[target]
    # MindSpore's loggers are registered with the standard logging module under "ME."
    loggers = [logger for name, logger in list(logging.Logger.manager.loggerDict.items())
               if name.startswith("ME.") and isinstance(logger, logging.Logger)]
    probe_filter = _DeviceProbeFilter()
    for logger in loggers:
        logger.addFilter(probe_filter)
    try:
        return bool(module.is_available())
    except Exception:  # a build without that backend may raise instead of answering
        return False
    finally:
        for logger in loggers:
            logger.removeFilter(probe_filter)


def _resolve_device(device):
    """``(target, device_id)`` for a device spelled the OpenAI or the MindSpore way."""
    if device is None:
        for target in ("Ascend", "GPU"):
            if _device_available(target):
                return target, None
        return "CPU", None
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'CPU', 'GPU' or 'Ascend', got {type(device).__name__}")
    name, _, index = device.strip().partition(":")
    target = _DEVICE_ALIASES.get(name.lower())
    if target is None:
        raise ValueError(f"unknown device {device!r}; use 'Ascend', 'GPU' or 'CPU' "
                         "(OpenAI's 'cuda' and 'cpu' are accepted too)")
    if index and not index.isdigit():
        raise ValueError(f"device {device!r}: the index after ':' must be a whole number")
    if not _device_available(target):
        available = [t for t in ("Ascend", "GPU", "CPU") if _device_available(t)]
        raise RuntimeError(f"device {device!r} is not available on this machine (this MindSpore can use: "
                           f"{', '.join(available) or 'nothing'}); pass device=None to pick the best one")
    return target, int(index) if index else None


def _select_device(target, device_id):
    """Point MindSpore at ``target``; MindSpore runs one device type per process."""
    current = ms.get_context("device_target")
    if current == target and device_id is None:
        return
    try:
        if device_id is None:
            ms.set_device(target)
        else:
            ms.set_device(target, device_id)
    except Exception as error:
        raise RuntimeError(f"cannot switch MindSpore to device {target!r}: MindSpore already runs on "
                           f"{current!r} in this process ({error})") from error


def _resolve_mode(mode, jit, eager=False):
    """The execution mode asked for by ``mode``/``jit``, checked against ``eager``."""
    key = mode.lower() if isinstance(mode, str) else mode
    if isinstance(key, bool) or key not in _MODES:
        raise ValueError(f"mode must be 0 / mindspore.GRAPH_MODE or 1 / mindspore.PYNATIVE_MODE, got {mode!r}")
    run_mode = ms.GRAPH_MODE if jit else _MODES[key]
    if eager and run_mode == ms.GRAPH_MODE:
        raise ValueError("eager=True runs nothing compiled; it cannot be combined with jit=True / mode=0")
    return run_mode


def _first_line(error):
    return f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"


def _mem_available():
    """Bytes of memory the kernel can give (``MemAvailable``: free memory plus reclaimable page
    cache), or ``None`` where ``/proc/meminfo`` does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


@contextlib.contextmanager
def _available_memory_check():
    """MindSpore 2.10's ``load_checkpoint`` refuses a ``.ckpt`` larger than the memory it finds
    free, counting ``os.sysconf("SC_AVPHYS_PAGES")`` (``MemFree``), which leaves out the page cache
    the kernel hands back on demand: after large files were written, a 350 MB checkpoint was refused
    with 15 GB available. During one read this makes the check count ``MemAvailable`` instead (no
    change where ``/proc/meminfo`` is missing); MindSpore's function is restored afterwards."""
    from mindspore.train import serialization

    original = getattr(serialization, "_get_available_memory", None)
    if original is None or _mem_available() is None:
        yield
        return
    serialization._get_available_memory = lambda: max(_mem_available() or 0, original() or 0) or None
    try:
        yield
    finally:
        serialization._get_available_memory = original


def _load_ms_checkpoint(path, **kwargs):
    """``mindspore.load_checkpoint(path, **kwargs)`` with its free-memory check counting the
    reclaimable page cache (see :func:`_available_memory_check`)."""
    with _available_memory_check():
        return ms.load_checkpoint(path, **kwargs)


def _read_ckpt_entries(path, format="ckpt"):
    """Entry name -> numpy array (or string, for recorded text such as an architecture) of a
    MindSpore checkpoint (``format`` "ckpt" or "safetensors").

    The CRC written by ``save_checkpoint(..., crc_check=True)`` is verified; files without one
    load as before. MindSpore reports a failed CRC check of a ``.ckpt`` as a file it "may not have
    permission" to read; it is reported here as the corruption it is."""
    try:
        params = _load_ms_checkpoint(path, crc_check=True, format=format)
    except Exception as error:
        corrupt = "crc check has failed" in str(error)
        if not corrupt and _UNREADABLE in str(error):
            try:  # the same file without the CRC check: readable means the CRC did not match
                _load_ms_checkpoint(path, format=format)
                corrupt = True
            except Exception:
                pass
        if corrupt:
            raise pt_reader.CheckpointError(f"{path}: the file is corrupted: its CRC check failed (the data "
                                            "differs from what was written); restore or re-create it") from None
        raise pt_reader.CheckpointError(f"{path}: not a readable MindSpore checkpoint, damaged or of another "
                                        f"format ({_first_line(error)})") from error
    if not params:
        raise pt_reader.CheckpointError(f"{path}: the checkpoint holds no parameters")
    return {name: value if isinstance(value, str) else value.asnumpy() for name, value in params.items()}


def _read_ckpt(path):
    """Parameter name -> numpy array from a MindSpore checkpoint (CRC checked when it has one;
    recorded text entries are left out)."""
    return {name: value for name, value in _read_ckpt_entries(path).items() if not isinstance(value, str)}


def _state_dict_from_file(path):
    """MindSpore-named weights from a ``.ckpt``, ``.safetensors`` or PyTorch ``.pt``/``.pth``/``.bin``
    file, and the architecture (``CLIP(...)`` arguments) the file records, or ``None``."""
    from .open_clip.weights import read_weights

    suffix = os.path.splitext(path)[1].lower()
    if suffix not in _MINDSPORE_SUFFIXES + _TORCH_SUFFIXES:
        raise ValueError(f"{path}: unsupported file type {suffix or '(no suffix)'!r}; clip.load reads MindSpore "
                         "'.ckpt'/'.safetensors' files and PyTorch '.pt'/'.pth'/'.bin' files (OpenAI's releases, "
                         "state dicts, open_clip's files)")
    state, architecture, torch_names = read_weights(path)
    if torch_names and suffix in (".bin", ".safetensors"):
        raise ModelConfigError(f"{path} is an open_clip file, which does not record its architecture (activation, "
                               "head width): use clip.open_clip.create_model(name, pretrained=path), or convert "
                               "it with 'python -m clip convert --model-name NAME'")
    if torch_names:
        state = convert_torch_state_dict(state, source=path)
    return state, architecture


def _graph_memory_budget():
    """Bytes a compiled ResNet image tower may keep: ``$CLIP_GRAPH_MEMORY_GB`` if set, else a
    quarter of the memory available now, at least 3 GB and at most 8 GB."""
    value = os.environ.get("CLIP_GRAPH_MEMORY_GB")
    if value is None:
        return min(max(3 * 2 ** 30, (_mem_available() or 0) // 4), 8 * 2 ** 30)
    try:
        budget = float(value)
    except ValueError:
        raise ValueError(f"CLIP_GRAPH_MEMORY_GB must be a number of gigabytes, got {value!r}") from None
    return budget * 2 ** 30


def _graph_image_rows(visual):
    """How many images a compiled ResNet image tower takes per call within the memory budget: the
    largest power of two up to 16 whose graph, with the one-image graph that serves small
    remainders (from 4 rows on, see ``clip.model.image_chunks``), fits (so that the usual batch
    sizes split into whole calls). A tower whose one-image graph exceeds the default budget
    (RN50x64: about 9 GB) is still compiled for one image per call if that graph fits in three
    quarters of the memory available now: eagerly it runs 3x slower. 0: the tower stays eager."""
    budget, fixed, per_image = _graph_memory_budget(), visual.graph_fixed_bytes(), visual.graph_bytes_per_image()
    rows = 16
    while rows and fixed + rows * per_image + (fixed + per_image if rows >= 4 else 0) > budget:
        rows //= 2
    if not rows and os.environ.get("CLIP_GRAPH_MEMORY_GB") is None:
        rows = int(fixed + per_image <= 0.75 * (_mem_available() or 0))
    return rows


def _release_free_memory():
    """Return the C heap's free pages to the system (glibc's ``malloc_trim``): reading a checkpoint
    leaves hundreds of MB of freed buffers in the process's resident set (ViT-B/32: 180 MB; the
    peak while encoding 16 images drops by 34 MB, as the graphs reuse part of it). Nothing
    happens where the C library has no ``malloc_trim``."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):  # no such function, or (Windows) no C library by None
        return
    trim(0)  # (a gc.collect() first took 0.1 s and freed 3 MB more: the arrays go by reference count)


#: Images per call of a compiled ViT image tower (larger batches run in chunks, see
#: ``clip.model.image_chunks``): its graph keeps the buffers of this many images (ViT-B/32: ~15 MB
#: each on MindSpore 2.10's CPU backend), and more images per call are not faster (measured: 8 and
#: 16 per call take the same time for 16 images, 8 keeps half the memory).
VIT_IMAGE_ROWS = 8


def _compile_towers(model):
    """``load``'s default: both towers compiled; a ViT's image tower for :data:`VIT_IMAGE_ROWS`
    images per call, a ResNet's for as many as fit in the memory budget (eager when not one does)."""
    if isinstance(model.visual, ModifiedResNet):
        image_rows = _graph_image_rows(model.visual)
    else:
        image_rows = VIT_IMAGE_ROWS
    model.compile_towers(image=bool(image_rows), text=True, image_rows=image_rows or None)


def load(name: str, device: str = None, mode: int = ms.PYNATIVE_MODE, download_root: str = None,
         jit: bool = False, sha256: str = None, eager: bool = False):
    """Load a CLIP model.

    Parameters
    ----------
    name : str
        A model name listed by :func:`available_models` (downloaded and SHA-256 checked),
        or the path to a MindSpore ``.ckpt`` or a PyTorch ``.pt``/``.pth`` file (OpenAI's
        TorchScript release files and plain state dicts, read without PyTorch).
    device : str
        ``"Ascend"``, ``"GPU"`` or ``"CPU"`` (``"cuda"``/``"cpu"`` accepted, with an optional
        ``":<id>"``). Default: the best available. On CPU the model computes in float32; on
        GPU/Ascend it keeps OpenAI's float16 weights, with LayerNorm and softmax in float32.
        If MindSpore is not yet on this device, ``load`` switches it (``mindspore.set_device``):
        the only global MindSpore state ``load`` may change.
    mode : int
        Accepted for the handbook's signature; the global execution mode is left as it is. Either
        way ``load`` uses MindSpore's PyNative-plus-``jit`` style: the towers run as compiled graphs
        (``mindspore.jit``), 2-4x faster than eager execution. A compiled graph keeps all its
        intermediate buffers while the model lives, so a ViT's image tower is compiled for 8
        images per call (:data:`VIT_IMAGE_ROWS`) and a ResNet's image tower for as
        many images per call (a power of two up to 16) as fit in the graph memory budget
        (``$CLIP_GRAPH_MEMORY_GB``; default a quarter of the available memory, 3-8 GB; RN50 takes
        about 1 GB plus 0.04 GB per image; larger batches run in chunks, small remainders one
        image per call). Without ``$CLIP_GRAPH_MEMORY_GB``, a tower too large for the default
        budget is compiled for one image per call if that graph fits in three quarters of the
        available memory (RN50x64: about 9 GB, estimated 10.7), else it stays eager (3x slower).
        ``eager=True`` compiles nothing.
    download_root : str
        Where model files are cached; default ``$CLIP_CACHE_DIR`` or ``~/.cache/clip``.
    jit : bool
        OpenAI's flag, accepted for compatibility: ``True`` is the same as ``mode=0``.
    sha256 : str
        Optional expected SHA-256 of a local file given by path; a mismatch is an error.
    eager : bool
        ``True``: nothing is compiled, every operation runs eagerly and can be stepped through
        (slower: 2-4x for the compiled towers). Not with ``mode=0``.

    Returns
    -------
    model : CLIP
        The model, in inference mode.
    preprocess : Callable
        Converts a PIL image (or an HWC uint8 array) into the ``[3, R, R]`` float32 tensor the
        model takes.
    """
    target, device_id = _resolve_device(device)
    _resolve_mode(mode, jit, eager)
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"name must be a model name or a file path, got {type(name).__name__}")
    name = os.fspath(name)
    if name in _MODELS:
        path = _download.download(_MODELS[name], _download.default_cache_dir(download_root))
    elif os.path.isdir(name):
        raise IsADirectoryError(f"{name} is a directory; pass a model name or a checkpoint file")
    elif os.path.isfile(name):
        path = name
        if not os.access(path, os.R_OK):
            raise PermissionError(f"{path}: the file is not readable")
    else:
        raise RuntimeError(f"Model {name} not found; available models = {available_models()}")
    if sha256 is not None:
        actual = _download._sha256_file(path).hexdigest()
        if actual != sha256.lower():
            raise pt_reader.CheckpointError(f"{path}: SHA-256 is {actual}, expected {sha256}")

    state_dict, architecture = _state_dict_from_file(path)
    _select_device(target, device_id)
    dtype = ms.float32 if target == "CPU" else ms.float16
    model = build_model(state_dict, dtype=dtype, source=path, architecture=architecture)
    del state_dict
    _release_free_memory()
    if not eager:
        _compile_towers(model)
    return model, transform._transform(model.visual.input_resolution)


def tokenize(texts: Union[str, List[str]], context_length: int = 77, truncate: bool = False) -> Tensor:
    """Token ids of the given text(s): ``[start] + BPE + [end]``, zero padded.

    Parameters
    ----------
    texts : Union[str, List[str]]
        A string or a list of strings.
    context_length : int
        Length of each row; all CLIP models use 77.
    truncate : bool
        Cut texts that are too long (the last kept token becomes the end token) instead of
        raising ``RuntimeError``.

    Returns
    -------
    An int32 ``mindspore.Tensor`` of shape ``[number of texts, context_length]``.
    """
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, (list, tuple)):
        raise TypeError(f"texts must be a string or a list of strings, got {type(texts).__name__}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is a {type(text).__name__}, not a string")
    if isinstance(context_length, bool) or not isinstance(context_length, (int, np.integer)):
        raise ValueError(f"context_length must be an integer, got {context_length!r}")
    if context_length < 2:
        raise ValueError(f"context_length must be at least 2 (start and end tokens), got {context_length}")

    return Tensor(_tokenizer.token_array(texts, int(context_length), truncate))
