"""Image preprocessing for CLIP, matching OpenAI's torchvision pipeline.

OpenAI's ``clip.load`` returns::

    Compose([Resize(n_px, interpolation=BICUBIC), CenterCrop(n_px),
             convert("RGB"), ToTensor(), Normalize(MEAN, STD)])

:class:`Preprocess` performs the same steps with PIL and NumPy only (no torch or
torchvision) and returns a ``mindspore.Tensor`` of shape ``[3, n_px, n_px]`` and
dtype float32, so ``preprocess(image).unsqueeze(0)`` works as in OpenAI's examples.

Resize and crop run in the image's own mode (``P``, ``RGBA``, ``I;16``...), before
the conversion to RGB, exactly like the original pipeline.

The same object can be given to ``mindspore.dataset``'s ``map``: the dataset engine
passes decoded images as uint8 NumPy arrays (HWC or HW), which are accepted. A
:class:`Preprocess` is a ``mindspore.dataset.transforms.Compose`` of one step, and ``map``
runs a ``Compose``'s steps: that step returns the float32 NumPy array itself
(:meth:`ArrayTransform.array`), so the pipeline's worker threads never build a
``mindspore.Tensor`` only to convert it back. (Converting a tensor to NumPy waits for
every operation MindSpore has queued, so workers doing it while the model computes took
the cores from the model: 6x slower encoding of a ``map``-ed CIFAR in a measurement.)
"""
import numbers

import mindspore
import numpy as np
from mindspore.dataset.transforms import Compose
from PIL import Image

__all__ = ["MEAN", "STD", "ArrayTransform", "Preprocess", "resize", "center_crop", "normalised_array", "to_pixels"]

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)

# channel count of an HWC uint8 array -> PIL mode it is read as
_CHANNEL_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}

_ACCEPTED = ("a PIL.Image.Image (any mode), a uint8 numpy.ndarray of shape (H, W) or "
             "(H, W, C) with C in 1, 2, 3, 4, or a mindspore.Tensor holding such an array")


def _check_size(size, name="size"):
    """Return ``size`` as a positive int, or raise TypeError/ValueError."""
    if isinstance(size, bool) or not isinstance(size, numbers.Integral):
        raise TypeError(f"{name} must be a positive int, got {type(size).__name__} {size!r}")
    size = int(size)
    if size <= 0:
        raise ValueError(f"{name} must be a positive int, got {size}")
    return size


def _check_pil(img):
    if not isinstance(img, Image.Image):
        raise TypeError(f"expected a PIL.Image.Image, got {type(img).__name__}")
    width, height = img.size
    if width <= 0 or height <= 0:
        raise ValueError(f"cannot preprocess an empty image of size {width}x{height} (WxH)")


def resize(img, size):
    """Resize a PIL image so that its shorter side becomes ``size`` (bicubic).

    Same output size as torchvision's ``Resize(size)`` with an int ``size``: the
    longer side becomes ``int(size * long / short)``. The image is returned
    unchanged when it already has that size. Like torchvision, PIL's own
    ``Image.resize`` is used, so modes ``"1"`` and ``"P"`` are resampled with
    nearest neighbour (PIL's rule) and ``LA``/``RGBA`` with premultiplied alpha.
    """
    _check_pil(img)
    size = _check_size(size)
    width, height = img.size
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    if (new_w, new_h) == (width, height):
        return img
    return img.resize((new_w, new_h), Image.BICUBIC)


def _pad(img, left, top, right, bottom):
    """Pad with zeros in the image's own mode (palette index 0 for ``P`` images)."""
    width, height = img.size
    out = Image.new(img.mode, (left + width + right, top + height + bottom), 0)
    if img.palette is not None:
        out.putpalette(img.getpalette())
    out.paste(img, (left, top))
    return out


def center_crop(img, size):
    """Crop the central ``size`` x ``size`` square of a PIL image.

    Same as torchvision's ``CenterCrop(size)``: the offsets are
    ``int(round((h - size) / 2.0))`` and ``int(round((w - size) / 2.0))`` (Python's
    round), and an image smaller than the crop along a side is first padded with
    zeros on that side (``(size - w) // 2`` before, the rest after).
    """
    _check_pil(img)
    size = _check_size(size)
    width, height = img.size
    if size > width or size > height:
        pad_w = max(size - width, 0)
        pad_h = max(size - height, 0)
        img = _pad(img, pad_w // 2, pad_h // 2, (pad_w + 1) // 2, (pad_h + 1) // 2)
        width, height = img.size
        if width == size and height == size:
            return img
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def _array_to_pil(array, kind):
    """Turn a uint8 HW / HWC numpy array into a PIL image, checking dtype and shape."""
    if array.dtype != np.uint8:
        raise TypeError(f"image arrays must have dtype uint8, got a {kind} of dtype {array.dtype} "
                        f"and shape {array.shape}; accepted: {_ACCEPTED}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        mode = "L"
    elif array.ndim == 3 and array.shape[2] in _CHANNEL_MODES:
        mode = _CHANNEL_MODES[array.shape[2]]
    else:
        hint = ""
        if array.ndim == 1:
            hint = (" (a 1-D uint8 array is usually an encoded image file: decode it first, "
                    "e.g. with mindspore.dataset.vision.Decode())")
        raise ValueError(f"image array must have shape (H, W) or (H, W, C) with C in 1, 2, 3, 4, "
                         f"got shape {array.shape}{hint}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"cannot preprocess an empty image array of shape {array.shape}")
    image = Image.fromarray(np.ascontiguousarray(array))
    if image.mode != mode:  # pragma: no cover - guards against Pillow changing its inference
        image = image.convert(mode)
    return image


def _to_pil(image):
    if isinstance(image, Image.Image):
        _check_pil(image)
        return image
    if isinstance(image, mindspore.Tensor):
        return _array_to_pil(image.asnumpy(), "mindspore.Tensor")
    if isinstance(image, np.ndarray):
        return _array_to_pil(image, "numpy.ndarray")
    raise TypeError(f"preprocess expects {_ACCEPTED}; got {type(image).__name__}"
                    + (" (a file path: open it first with PIL.Image.open)" if isinstance(image, str) else ""))


def normalised_array(img, mean=MEAN, std=STD):
    """A PIL image converted to RGB, scaled to [0, 1] and normalised per channel (torchvision's
    ``ToTensor`` and ``Normalize`` in float32): float32 NumPy ``[3, H, W]``."""
    array = np.asarray(img.convert("RGB"), dtype=np.uint8).astype(np.float32) / np.float32(255.0)
    mean = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
    return np.ascontiguousarray((array.transpose(2, 0, 1) - mean) / std, dtype=np.float32)


class _ArrayStep:
    """The one step of an :class:`ArrayTransform` as ``mindspore.dataset`` runs it."""

    def __init__(self, owner):
        self.owner = owner

    def __call__(self, image):
        return self.owner.array(image)


class ArrayTransform(Compose):
    """Base of the image transforms: a subclass defines :meth:`array` (image -> float32 NumPy
    ``[3, H, W]``); calling the transform returns it as a ``mindspore.Tensor`` (the
    torchvision-like use, ``preprocess(image).unsqueeze(0)``), and ``dataset.map(transform)``
    runs :meth:`array` in the pipeline's workers (a ``Compose`` is split into its steps)."""

    def __init__(self):
        super().__init__([_ArrayStep(self)])

    def array(self, image):
        """The transformed image as a float32 NumPy array ``[3, H, W]``."""
        raise NotImplementedError

    def __call__(self, image):
        return mindspore.Tensor(self.array(image))

    # the step refers back to its transform: pickle (python_multiprocessing) without it
    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("transforms", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        ArrayTransform.__init__(self)


def to_pixels(preprocess, image, dtype=np.float32):
    """``preprocess(image)`` as a NumPy array (of ``dtype``; ``None`` keeps the result's), without
    a ``mindspore.Tensor`` in between when ``preprocess`` is an :class:`ArrayTransform` (any other
    callable's result, a tensor or anything array-like, is converted)."""
    if isinstance(preprocess, ArrayTransform):
        output = preprocess.array(image)
    else:
        output = preprocess(image)
        if isinstance(output, mindspore.Tensor):
            output = output.asnumpy()
    return np.asarray(output, dtype=dtype)


class Preprocess(ArrayTransform):
    """CLIP's image preprocessing: resize, center-crop, RGB, scale to [0, 1], normalise.

    ``Preprocess(n_px)(image)`` returns a float32 ``mindspore.Tensor`` of shape
    ``[3, n_px, n_px]``, equal (to float32 rounding, bit for bit in practice) to
    OpenAI's torchvision pipeline; :meth:`array` returns the same as a NumPy array.
    ``image`` may be a PIL image of any mode, a uint8 numpy array of shape (H, W) or
    (H, W, C) with C in 1, 2, 3, 4 (read as L, LA, RGB, RGBA), or a ``mindspore.Tensor``
    holding such an array.
    """

    MEAN = MEAN
    STD = STD

    def __init__(self, n_px):
        self.n_px = _check_size(n_px, "n_px")
        super().__init__()

    def array(self, image):
        """Preprocess one image into a float32 NumPy array ``[3, n_px, n_px]``."""
        img = _to_pil(image)
        img = resize(img, self.n_px)
        img = center_crop(img, self.n_px)
        return normalised_array(img, MEAN, STD)

    def __repr__(self):
        steps = [
            f"Resize(size={self.n_px}, interpolation=bicubic)",
            f"CenterCrop(size=({self.n_px}, {self.n_px}))",
            "ConvertRGB()",
            "ToTensor()",
            f"Normalize(mean={self.MEAN}, std={self.STD})",
        ]
        return "Preprocess(\n" + "".join(f"    {step}\n" for step in steps) + ")"


def _transform(n_px):
    """Return the preprocessing that ``clip.load`` hands out for input resolution ``n_px``."""
    return Preprocess(n_px)
