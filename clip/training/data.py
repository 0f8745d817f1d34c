"""Training data: image-caption pairs read from three layouts, fed through ``mindspore.dataset``.

Readers (each returns a :class:`CaptionedImages`; rows with an empty caption are skipped and
counted in ``skipped``, never fatal):

- :func:`read_csv_data`: open_clip's CSV/TSV layout, one image path and one caption per row;
  separator and column names configurable (open_clip's defaults: tab, ``filepath``, ``title``);
  relative paths are relative to the folder of the file.
- :func:`read_flickr_data`: Flickr8k / Flickr30k token files (``<image>#<n><TAB><caption>``) with an
  optional split list (``Flickr_8k.trainImages.txt``); every image keeps all its captions and one
  of them is drawn at random each epoch (MindFormers' behaviour).
- :func:`read_image_folder_data`: a class-per-folder tree (``clip.datasets.load_image_folder``); each
  image's captions are the prompt templates filled with its class name, one drawn per epoch.

:class:`CaptionDataset` turns one of these into batches: ``[B, 3, R, R]`` float32 images and
``[B, L]`` int32 tokens (``clip.tokenize``, truncated to the model's context, then cut to the
longest caption of the data set: the text tower is causal, so the features are unchanged).

Order and randomness are functions of ``(seed, epoch, sample)`` only: epoch ``e`` uses one seeded
permutation of all samples, cut into *global* batches of ``batch_size * num_shards`` rows; rank
``shard_id`` takes rows ``[shard_id * batch_size, (shard_id + 1) * batch_size)`` of each, and the
incomplete last global batch is dropped. So ``N`` processes with batch ``B`` see exactly the
batches of one process with batch ``N * B``, and a run resumed at batch ``k`` of an epoch
continues with the same data as if it had not stopped. The augmentation of a sample (open_clip's
training transform: ``RandomResizedCrop(R, scale=(0.9, 1.0))`` bicubic, RGB, OpenAI's
normalisation) and its caption are drawn from a generator seeded with ``(seed, epoch, index)``,
so they do not depend on the number of decoding workers either. Images that cannot be read are
dropped from their batch (which becomes smaller) and counted.
"""
import csv
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
from PIL import Image

from .. import datasets as _datasets
from ..clip import tokenize
from ..transform import center_crop, normalised_array, resize

__all__ = ["CaptionedImages", "CaptionDataset", "read_csv_data", "read_flickr_data", "read_image_folder_data",
           "read_data", "DATA_FORMATS", "TRAIN_CROP_SCALE", "epoch_batches", "train_transform",
           "eval_transform", "classname_from_folder", "trim_tokens"]

#: the layouts :func:`read_data` knows
DATA_FORMATS = ("csv", "flickr", "imagefolder")
#: open_clip's training crop: ``RandomResizedCrop(scale=(0.9, 1.0))``, torchvision's aspect ratios
TRAIN_CROP_SCALE = (0.9, 1.0)
_RATIO = (3.0 / 4.0, 4.0 / 3.0)
# folders that hold the pictures of the Flickr releases, beside their token files
_FLICKR_IMAGE_FOLDERS = ("Flicker8k_Dataset", "Flickr8k_Dataset", "flickr30k-images", "Images", "images")


@dataclass
class CaptionedImages:
    """Images with one or more captions each.

    Attributes:
        paths: image files.
        captions: ``captions[i]`` lists the captions of ``paths[i]`` (at least one).
        skipped: what the reader left out, by reason (``{"empty caption": 3}``).
        labels: class index of each image (ImageFolder data only), ``int64 [N]``.
        classnames: class names (ImageFolder data only).
        source: where the data came from (for messages).
    """

    paths: List[str]
    captions: List[List[str]]
    skipped: Counter = field(default_factory=Counter)
    labels: Optional[np.ndarray] = None
    classnames: Optional[List[str]] = None
    source: str = ""

    def __len__(self):
        return len(self.paths)


def _check_file(path, what):
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} {path!r} not found")
    return path


def _not_empty(data: CaptionedImages) -> CaptionedImages:
    if not len(data):
        reasons = ", ".join(f"{n} {why}" for why, n in data.skipped.items()) or "no rows"
        raise ValueError(f"{data.source}: no usable image-caption pairs ({reasons})")
    return data


def read_csv_data(path, separator: str = "\t", image_key: str = "filepath", caption_key: str = "title"):
    """Image-caption rows of a CSV/TSV file with a header (open_clip's ``--csv-separator``,
    ``--csv-img-key``, ``--csv-caption-key``; their defaults). Relative image paths are taken
    relative to the file's folder. Rows with an empty caption or path are skipped and counted."""
    path = os.fspath(path)
    _check_file(path, "CSV file")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder; --data-format csv expects a CSV/TSV file")
    if len(separator) != 1:
        raise ValueError(f"the CSV separator must be one character, got {separator!r}")
    folder = os.path.dirname(os.path.abspath(path))
    paths, captions, skipped = [], [], Counter()
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f, delimiter=separator)
            header = reader.fieldnames or []
            missing = [key for key in (image_key, caption_key) if key not in header]
            if missing:
                raise ValueError(f"{path}: no column {', '.join(map(repr, missing))} in the header "
                                 f"{header} (separator {separator!r}); set --csv-img-key / --csv-caption-key "
                                 "/ --csv-separator")
            for row in reader:
                image, caption = (row.get(image_key) or "").strip(), (row.get(caption_key) or "").strip()
                if not image:
                    skipped["empty image path"] += 1
                elif not caption:
                    skipped["empty caption"] += 1
                else:
                    paths.append(os.path.join(folder, image))
                    captions.append([caption])
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not a UTF-8 text file ({error})") from None
    except csv.Error as error:
        raise ValueError(f"{path}: malformed CSV ({error})") from None
    return _not_empty(CaptionedImages(paths, captions, skipped, source=path))


def _flickr_image_root(token_file):
    folder = os.path.dirname(os.path.abspath(token_file))
    for name in _FLICKR_IMAGE_FOLDERS:
        if os.path.isdir(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return folder


def read_flickr_data(token_file, split_file=None, image_root=None):
    """Flickr8k / Flickr30k captions (``<image>#<n><TAB><caption>`` per line), grouped by image, for
    the images of ``split_file`` (one name a line) or all. Images are looked up in ``image_root``,
    default the ``Flicker8k_Dataset`` / ``flickr30k-images`` / ``Images`` folder beside the token
    file, else its folder. Empty captions are skipped and counted; an image left without a caption
    is dropped."""
    token_file = os.fspath(token_file)
    _check_file(token_file, "Flickr caption file")
    keep = set(_datasets.read_image_list(_check_file(os.fspath(split_file), "split list"))) \
        if split_file is not None else None
    root = os.fspath(image_root) if image_root is not None else _flickr_image_root(token_file)
    by_image, skipped = {}, Counter()
    for _, name, caption in _datasets.iter_flickr_tokens(token_file):
        if keep is not None and name not in keep:
            continue
        if not caption:
            skipped["empty caption"] += 1
            continue
        by_image.setdefault(name, []).append(caption)
    names = list(by_image)
    data = CaptionedImages([os.path.join(root, n) for n in names], [by_image[n] for n in names], skipped,
                           source=token_file)
    return _not_empty(data)


def classname_from_folder(name: str) -> str:
    """A class folder's name as words: ``"golden_retriever"`` -> ``"golden retriever"``."""
    return name.replace("_", " ").strip()


def read_image_folder_data(root, templates=("a photo of a {}.",)):
    """An ImageFolder tree (one sub-folder per class) as captioned images: each image's captions are
    ``templates`` filled with its class name (:func:`classname_from_folder`); labels and class
    names are kept for zero-shot evaluation."""
    root = os.fspath(root)
    _check_file(root, "image folder")
    templates = list(templates)
    if not templates:
        raise ValueError("no prompt templates to caption the image folder with")
    for template in templates:
        if "{}" not in template:
            raise ValueError(f"the template {template!r} has no '{{}}' for the class name")
    data = _datasets.load_image_folder(root, allow_empty=True)
    classnames = [classname_from_folder(c) for c in data.classnames]
    captions = [[t.format(classnames[label]) for t in templates] for label in data.labels]
    return _not_empty(CaptionedImages(list(data.paths), captions, Counter(), labels=data.labels,
                                      classnames=classnames, source=root))


def read_data(path, data_format: str, csv_separator="\t", csv_img_key="filepath", csv_caption_key="title",
              split_file=None, image_root=None, templates=("a photo of a {}.",)):
    """Read ``path`` with the reader of ``data_format`` (one of :data:`DATA_FORMATS`)."""
    if data_format == "csv":
        return read_csv_data(path, csv_separator, csv_img_key, csv_caption_key)
    if data_format == "flickr":
        return read_flickr_data(path, split_file, image_root)
    if data_format == "imagefolder":
        return read_image_folder_data(path, templates)
    raise ValueError(f"unknown data format {data_format!r}; known: {', '.join(DATA_FORMATS)}")


# -- transforms ----------------------------------------------------------------------------------
def _crop_box(width, height, rng, scale, ratio):
    """torchvision's ``RandomResizedCrop.get_params``: ``(left, top, w, h)``."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h
    in_ratio = width / height  # fallback: the central crop of the nearest allowed ratio
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def train_transform(img, size, rng, scale=TRAIN_CROP_SCALE):
    """open_clip's training image transform: a random crop of ``scale`` of the area (aspect
    3/4..4/3) resized to ``size x size`` (bicubic), RGB, OpenAI's normalisation.
    ``PIL image -> float32 [3, size, size]``."""
    left, top, w, h = _crop_box(img.width, img.height, rng, scale, _RATIO)
    img = img.resize((size, size), Image.BICUBIC, box=(left, top, left + w, top + h))
    return normalised_array(img)  # [3, size, size]


def eval_transform(img, size):
    """OpenAI's ``preprocess`` (resize the short side bicubic, centre crop, RGB, normalise) as a NumPy
    array: ``PIL image -> float32 [3, size, size]``."""
    return normalised_array(center_crop(resize(img, size), size))


# -- order ---------------------------------------------------------------------------------------
def epoch_batches(n: int, epoch: int, batch_size: int, seed: int = 0, num_shards: int = 1, shard_id: int = 0,
                  shuffle: bool = True) -> np.ndarray:
    """Sample indices ``[n_batches, batch_size]`` of shard ``shard_id`` in epoch ``epoch``: one
    permutation seeded with ``(seed, epoch)`` cut into global batches of ``batch_size * num_shards``
    (the incomplete last one dropped), each split across the shards in rank order."""
    if batch_size < 1 or num_shards < 1 or not 0 <= shard_id < num_shards:
        raise ValueError(f"need batch_size >= 1 and 0 <= shard_id < num_shards, got {batch_size}, "
                         f"{shard_id}, {num_shards}")
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    global_batch = batch_size * num_shards
    n_batches = n // global_batch
    rows = order[:n_batches * global_batch].reshape(n_batches, num_shards, batch_size)
    return rows[:, shard_id, :]


class _Items:
    """Random-access source for ``GeneratorDataset``: item ``j`` is sample ``indices[j]``, decoded,
    transformed and captioned; ``(image [3, R, R], tokens [L], ok)``, ``ok = 0`` when unreadable."""

    def __init__(self, dataset, indices, epoch):
        self.dataset, self.indices, self.epoch = dataset, indices, epoch

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, j):
        index = int(self.indices[j])
        return self.dataset.item(index, self.epoch)


def trim_tokens(tokens):
    """Token rows ``[C, n_ctx]`` cut after the last end-of-text token of any row (the largest id
    of each row), at least 2 columns: ``[C, L]`` int32. The text tower is causal, so no feature
    changes, and every training step computes ``L`` positions instead of ``n_ctx``."""
    tokens = np.asarray(tokens)
    length = int(tokens.argmax(-1).max()) + 1 if tokens.size else 2
    return tokens[:, :max(length, 2)].astype(np.int32)


class CaptionDataset:
    """Batches of images and tokens from a :class:`CaptionedImages`, through ``mindspore.dataset``.

    Args:
        data: the image-caption pairs.
        resolution: the model's input resolution.
        context_length: the model's context (tokens are truncated to it).
        train: training augmentation and a random caption per epoch; otherwise OpenAI's
            preprocess and the first caption.
        seed: seeds the per-epoch permutation, the crops and the caption choice.
        num_workers: ``num_parallel_workers`` of the decoding stage (threads).
    """

    def __init__(self, data: CaptionedImages, resolution: int, context_length: int = 77, train: bool = True,
                 seed: int = 0, num_workers: int = 2):
        self.data, self.resolution, self.train, self.seed = data, int(resolution), train, int(seed)
        self.num_workers = max(1, min(int(num_workers), os.cpu_count() or 1))  # MindSpore refuses more
        flat = [c for captions in data.captions for c in captions]
        self.tokens = trim_tokens(tokenize(flat, context_length=context_length, truncate=True).asnumpy())  # [C, L]
        starts = np.cumsum([0] + [len(c) for c in data.captions])
        self._caption_rows = [(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])]
        self.skipped = Counter()  # images that could not be read, counted as batches are made

    def __len__(self):
        return len(self.data)

    def steps_per_epoch(self, batch_size: int, num_shards: int = 1) -> int:
        """Batches per epoch of each shard."""
        return len(self.data) // (batch_size * num_shards)

    def item(self, index: int, epoch: int):
        """``(image float32 [3, R, R], tokens int32 [L], ok int32)`` of sample ``index`` in ``epoch``."""
        rng = np.random.default_rng([self.seed, epoch, index])
        first, last = self._caption_rows[index]
        row = first + (int(rng.integers(0, last - first)) if self.train else 0)
        try:
            with Image.open(self.data.paths[index]) as img:
                img.load()
                pixels = (train_transform(img, self.resolution, rng) if self.train
                          else eval_transform(img, self.resolution))
            ok = 1
        except Exception:  # noqa: BLE001 - any unreadable image is skipped and counted, never fatal
            pixels, ok = np.zeros((3, self.resolution, self.resolution), np.float32), 0
        return pixels, self.tokens[row], np.int32(ok)

    def pipeline(self, indices, epoch: int, batch_size: int):
        """The ``mindspore.dataset`` pipeline over ``indices`` (already in batch order)."""
        import mindspore.dataset as ds

        source = _Items(self, np.asarray(indices).reshape(-1), epoch)
        dataset = ds.GeneratorDataset(source, column_names=["image", "text", "ok"], shuffle=False,
                                      num_parallel_workers=self.num_workers, python_multiprocessing=False)
        return dataset.batch(batch_size, drop_remainder=True)

    def batches(self, epoch: int, batch_size: int, num_shards: int = 1, shard_id: int = 0, start: int = 0):
        """Yield ``(images [b, 3, R, R], tokens [b, L])`` NumPy batches of ``epoch`` for this shard, from
        batch ``start`` on; ``b < batch_size`` when images of the batch could not be read (counted in
        :attr:`skipped`)."""
        order = epoch_batches(len(self.data), epoch, batch_size, self.seed, num_shards, shard_id,
                              shuffle=self.train)[start:]
        if not len(order):
            return
        for images, tokens, ok in self.pipeline(order, epoch, batch_size).create_tuple_iterator(
                output_numpy=True, num_epochs=1):
            good = ok.astype(bool)
            if not good.all():
                self.skipped["unreadable image"] += int((~good).sum())
            yield images[good], tokens[good]

    def all_images(self):
        """Every image in data order with OpenAI's preprocess: ``(pixels [M, 3, R, R], kept)`` where
        ``kept`` lists the indices of the readable ones (for evaluation)."""
        eval_self = self if not self.train else CaptionDataset.__new__(CaptionDataset)
        if self.train:
            eval_self.__dict__.update(self.__dict__)
            eval_self.train = False
        pixels, kept = [], []
        n = len(self.data)
        for start in range(0, n, 64):
            idx = np.arange(start, min(start + 64, n))
            for images, _, ok in eval_self.pipeline(idx, 0, len(idx)).create_tuple_iterator(
                    output_numpy=True, num_epochs=1):
                good = ok.astype(bool)
                pixels.append(images[good])
                kept.extend(idx[good].tolist())
        if not pixels:
            return np.zeros((0, 3, self.resolution, self.resolution), np.float32), kept
        return np.concatenate(pixels), kept  # [M, 3, R, R]
