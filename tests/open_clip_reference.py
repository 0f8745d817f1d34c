"""Access to open_clip's own PyTorch code (``open_clip_torch==3.3.0``) for the open_clip tests.

The package is unpacked beside the environment, never into it, with
``pip install --no-deps --target DIR open_clip_torch==3.3.0`` (``tests/run_tests.sh`` does it;
``OPEN_CLIP_REFERENCE_DIR`` names ``DIR``, default ``.cache/open_clip_ref``) and loaded by path
under the private name ``_open_clip_ref``, so the reference code runs unmodified.

open_clip imports torchvision at import time (its transforms, and ``FrozenBatchNorm2d`` for
freezing towers). PyPI's torchvision does not load beside this project's torch build, so
:func:`install_torchvision_standin` registers a minimal stand-in module providing exactly those
names. Its image operations are written from torchvision's documented semantics with PIL and
NumPy (as ``tests/test_preprocess.py`` does); ``RandomResizedCrop.get_params`` follows
torchvision's sampling. Anything else in it raises when used. ``huggingface_hub`` and ``timm``
are optional imports of open_clip (guarded by ``try``) and are not needed.

Missing reference code is an error, never a skip.
"""
import enum
import importlib.util
import math
import os
import sys
import types
from functools import lru_cache

import numpy as np
from PIL import Image

REFERENCE_ENV = "OPEN_CLIP_REFERENCE_DIR"
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "_open_clip_ref"


def reference_dir():
    root = os.environ.get(REFERENCE_ENV) or os.path.join(_ROOT, ".cache", "open_clip_ref")
    path = os.path.join(root, "open_clip")
    if not os.path.isfile(os.path.join(path, "factory.py")):
        raise RuntimeError(
            f"open_clip's reference code is not at {path}: unpack it with 'pip install --no-deps --target "
            f"{root} open_clip_torch==3.3.0' (tests/run_tests.sh does) or set {REFERENCE_ENV}")
    return path


# ---------------------------------------------------------------------------------------------
# the torchvision stand-in

class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


_PIL_FILTERS = {InterpolationMode.NEAREST: Image.NEAREST, InterpolationMode.BILINEAR: Image.BILINEAR,
                InterpolationMode.BICUBIC: Image.BICUBIC}


def _resize(img, size, interpolation=InterpolationMode.BILINEAR, max_size=None, antialias=True):
    """torchvision's ``F.resize`` of a PIL image: an int is the shorter side, the longer one
    ``int(size * long / short)``; a pair is ``(h, w)``."""
    w, h = img.size
    if isinstance(size, (list, tuple)) and len(size) == 1:
        size = size[0]
    if isinstance(size, int):
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = size, int(size * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    else:
        new_h, new_w = size
    if (new_w, new_h) == (w, h):
        return img
    return img.resize((new_w, new_h), _PIL_FILTERS[interpolation])


def _crop(img, top, left, height, width):
    return img.crop((left, top, left + width, top + height))


def _get_dimensions(img):
    return [len(img.getbands()), img.size[1], img.size[0]]


def _to_tensor(pic):
    import torch
    array = np.asarray(pic.convert("RGB") if pic.mode not in ("RGB", "L") else pic, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.transpose(2, 0, 1).astype(np.float32) / np.float32(255))


def _unsupported(name):
    def fail(*args, **kwargs):
        raise NotImplementedError(f"the torchvision stand-in of the tests has no {name}")
    return fail


class Compose:
    def __init__(self, transforms):
        self.transforms = transforms

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img


class ToTensor:
    def __call__(self, pic):
        return _to_tensor(pic)


class Normalize:
    def __init__(self, mean, std, inplace=False):
        self.mean, self.std = mean, std

    def __call__(self, tensor):
        import torch
        mean = torch.as_tensor(self.mean, dtype=tensor.dtype).reshape(-1, 1, 1)
        std = torch.as_tensor(self.std, dtype=tensor.dtype).reshape(-1, 1, 1)
        return (tensor - mean) / std


class Resize:
    def __init__(self, size, interpolation=InterpolationMode.BILINEAR, max_size=None, antialias=True):
        self.size, self.interpolation = size, interpolation

    def __call__(self, img):
        return _resize(img, self.size, self.interpolation)


class CenterCrop:
    def __init__(self, size):
        self.size = (size, size) if isinstance(size, int) else tuple(size)

    def __call__(self, img):
        th, tw = self.size
        w, h = img.size
        if tw > w or th > h:
            raise NotImplementedError("the torchvision stand-in does not pad in CenterCrop")
        top, left = int(round((h - th) / 2.0)), int(round((w - tw) / 2.0))
        return _crop(img, top, left, th, tw)


class RandomResizedCrop:
    """torchvision's RandomResizedCrop: :meth:`get_params` samples with torch's generator as
    torchvision does; the crop is then resized to ``size`` (PIL)."""

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3.0 / 4.0, 4.0 / 3.0),
                 interpolation=InterpolationMode.BILINEAR, antialias=True):
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.scale, self.ratio, self.interpolation = scale, ratio, interpolation

    @staticmethod
    def get_params(img, scale, ratio):
        import torch
        width, height = img.size
        area = height * width
        log_ratio = torch.log(torch.tensor(ratio))
        for _ in range(10):
            target_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
            aspect_ratio = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1])).item()
            w = int(round(math.sqrt(target_area * aspect_ratio)))
            h = int(round(math.sqrt(target_area / aspect_ratio)))
            if 0 < w <= width and 0 < h <= height:
                i = torch.randint(0, height - h + 1, size=(1,)).item()
                j = torch.randint(0, width - w + 1, size=(1,)).item()
                return i, j, h, w
        in_ratio = float(width) / float(height)
        if in_ratio < min(ratio):
            w, h = width, int(round(width / min(ratio)))
        elif in_ratio > max(ratio):
            h, w = height, int(round(height * max(ratio)))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, img):
        i, j, h, w = self.get_params(img, self.scale, self.ratio)
        return _crop(img, i, j, h, w).resize((self.size[1], self.size[0]), _PIL_FILTERS[self.interpolation])


class ColorJitter:
    def __init__(self, *args, **kwargs):
        pass

    __call__ = _unsupported("ColorJitter")


class Grayscale:
    def __init__(self, *args, **kwargs):
        pass

    __call__ = _unsupported("Grayscale")


class FrozenBatchNorm2d:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("the torchvision stand-in of the tests has no FrozenBatchNorm2d")


def install_torchvision_standin():
    """Register the stand-in as ``torchvision`` in ``sys.modules`` (only if none is loaded)."""
    if "torchvision" in sys.modules:
        return sys.modules["torchvision"]
    tv = types.ModuleType("torchvision")
    tv.__doc__ = "test stand-in (tests/open_clip_reference.py)"
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    for name, value in dict(resize=_resize, crop=_crop, get_dimensions=_get_dimensions, to_tensor=_to_tensor,
                            pad=_unsupported("pad")).items():
        setattr(functional, name, value)
    for cls in (Compose, ToTensor, Normalize, Resize, CenterCrop, RandomResizedCrop, ColorJitter, Grayscale,
                InterpolationMode):
        setattr(transforms, cls.__name__, cls)
    transforms.functional = functional
    ops = types.ModuleType("torchvision.ops")
    misc = types.ModuleType("torchvision.ops.misc")
    misc.FrozenBatchNorm2d = FrozenBatchNorm2d
    ops.misc = misc
    tv.transforms, tv.ops = transforms, ops
    for module in (tv, transforms, functional, ops, misc):
        sys.modules[module.__name__] = module
    return tv


@lru_cache(maxsize=None)
def open_clip():
    """open_clip's package, loaded by path as ``_open_clip_ref`` (imports torch)."""
    install_torchvision_standin()
    path = reference_dir()
    spec = importlib.util.spec_from_file_location(NAME, os.path.join(path, "__init__.py"),
                                                  submodule_search_locations=[path])
    module = importlib.util.module_from_spec(spec)
    sys.modules[NAME] = module
    spec.loader.exec_module(module)
    return module


def submodule(name):
    """``open_clip.<name>`` of the reference (e.g. ``"transformer"``, ``"transform"``)."""
    open_clip()
    return sys.modules[f"{NAME}.{name}"]


def random_model(folder, name, config=None):
    """open_clip's model ``name`` with random weights (torch seed 0, then the constants of its
    initialisation randomised as ``make_reference.randomise_constants`` does), in eval mode, and
    its state dict written to ``folder/open_clip_pytorch_model.bin``: ``(model, state)``. A
    ``config`` is first registered under ``name`` with open_clip and with ``clip.open_clip``."""
    import json

    import torch

    import make_reference
    from clip import open_clip as ms_open_clip

    oc = open_clip()
    if config is not None:
        path = os.path.join(str(folder), f"{name}.json")
        with open(path, "w") as f:
            json.dump(config, f)
        oc.add_model_config(path)
        ms_open_clip.add_model_config(name, config)
    torch.manual_seed(0)
    model = oc.create_model(name).eval()
    with torch.no_grad():
        make_reference.randomise_constants(model, 1)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    torch.save(state, os.path.join(str(folder), "open_clip_pytorch_model.bin"))
    return model, state
