"""open_clip's image transforms, with PIL and NumPy: the evaluation transform (resize, center
crop, normalise with the model's mean/std) and the training augmentation (RandomResizedCrop with
scale (0.9, 1.0) by default, RGB, normalise)."""
import math
import random

import mindspore
from PIL import Image

from ..transform import MEAN, STD, ArrayTransform, _to_pil, center_crop, normalised_array, resize

__all__ = ["EvalTransform", "TrainTransform", "image_transform", "AUGMENTATION_KEYS"]

#: open_clip's ``AugmentationCfg`` fields; only ``scale`` and ``ratio`` of its default path are implemented
AUGMENTATION_KEYS = ("scale", "ratio", "color_jitter", "re_prob", "re_count", "use_timm",
                     "color_jitter_prob", "gray_scale_prob")


class EvalTransform(ArrayTransform):
    """open_clip's evaluation transform: ``resize_mode`` "shortest" (shorter side to ``size``,
    bicubic, then center crop) or "squash" (bicubic resize to ``size x size``), RGB, to [0, 1],
    normalise. Returns a float32 ``mindspore.Tensor`` ``[3, size, size]`` (``array``: the same
    as NumPy; in a ``dataset.map`` the NumPy array, see :class:`clip.transform.ArrayTransform`)."""

    def __init__(self, size: int, mean=MEAN, std=STD, resize_mode: str = "shortest"):
        if resize_mode not in ("shortest", "squash"):
            raise ValueError(f"resize_mode must be 'shortest' or 'squash', got {resize_mode!r}")
        self.size, self.mean, self.std, self.resize_mode = int(size), tuple(mean), tuple(std), resize_mode
        super().__init__()

    def array(self, image):
        img = _to_pil(image)
        if self.resize_mode == "squash":
            if img.size != (self.size, self.size):
                img = img.resize((self.size, self.size), Image.BICUBIC)
        else:
            img = center_crop(resize(img, self.size), self.size)
        return normalised_array(img, self.mean, self.std)

    def __repr__(self):
        return (f"EvalTransform(size={self.size}, resize_mode={self.resize_mode!r}, interpolation=bicubic, "
                f"mean={self.mean}, std={self.std})")


class TrainTransform(ArrayTransform):
    """open_clip's training augmentation: a random crop covering ``scale`` of the image's area with
    an aspect ratio in ``ratio`` (torchvision's RandomResizedCrop sampling: ten tries, then a
    center crop), resized to ``size x size`` (bicubic), RGB, to [0, 1], normalise.
    ``rng``: a ``random.Random`` (default: a new unseeded one)."""

    def __init__(self, size: int, mean=MEAN, std=STD, scale=(0.9, 1.0), ratio=(3 / 4, 4 / 3), rng=None):
        scale, ratio = tuple(float(s) for s in scale), tuple(float(r) for r in ratio)
        if not (len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1):
            raise ValueError(f"scale must be (low, high) with 0 < low <= high <= 1, got {scale}")
        if not (len(ratio) == 2 and 0 < ratio[0] <= ratio[1]):
            raise ValueError(f"ratio must be (low, high) with 0 < low <= high, got {ratio}")
        self.size, self.mean, self.std, self.scale, self.ratio = int(size), tuple(mean), tuple(std), scale, ratio
        self.rng = rng or random.Random()
        super().__init__()

    def crop_box(self, width: int, height: int):
        """``(top, left, h, w)`` of a random crop of a ``width x height`` image."""
        area = width * height
        low, high = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            target = area * self.rng.uniform(*self.scale)
            aspect = math.exp(self.rng.uniform(low, high))
            w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                return self.rng.randint(0, height - h), self.rng.randint(0, width - w), h, w
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            h, w = height, int(round(height * self.ratio[1]))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def apply(self, image, box):
        """The transform with a given crop ``box`` = ``(top, left, h, w)`` (a ``mindspore.Tensor``)."""
        return mindspore.Tensor(self._cropped_array(_to_pil(image), box))

    def array(self, image):
        img = _to_pil(image)
        return self._cropped_array(img, self.crop_box(*img.size))

    def _cropped_array(self, img, box):
        top, left, h, w = box
        img = img.crop((left, top, left + w, top + h)).resize((self.size, self.size), Image.BICUBIC)
        return normalised_array(img, self.mean, self.std)

    def __repr__(self):
        return (f"TrainTransform(size={self.size}, scale={self.scale}, ratio={self.ratio}, interpolation=bicubic, "
                f"mean={self.mean}, std={self.std})")


def image_transform(image_size: int, is_train: bool, mean=None, std=None, resize_mode=None, aug_cfg=None):
    """open_clip's ``image_transform`` for these models (see the classes)."""
    mean, std = tuple(mean or MEAN), tuple(std or STD)
    if len(mean) == 1:
        mean = mean * 3
    if len(std) == 1:
        std = std * 3
    if not is_train:
        return EvalTransform(image_size, mean, std, resize_mode or "shortest")
    aug = dict(aug_cfg or {})
    if not isinstance(aug_cfg or {}, dict):
        aug = {k: getattr(aug_cfg, k) for k in AUGMENTATION_KEYS if getattr(aug_cfg, k, None) is not None}
    unknown = [k for k in aug if k not in AUGMENTATION_KEYS]
    if unknown:
        raise ValueError(f"unknown augmentation settings {unknown}; open_clip's are {list(AUGMENTATION_KEYS)}")
    unsupported = [k for k in ("color_jitter_prob", "gray_scale_prob", "use_timm", "re_prob") if aug.get(k)]
    if unsupported:
        raise NotImplementedError(f"augmentation settings {unsupported} are not implemented; only scale and ratio are")
    return TrainTransform(image_size, mean, std, scale=aug.get("scale") or (0.9, 1.0),
                          ratio=aug.get("ratio") or (3 / 4, 4 / 3))
