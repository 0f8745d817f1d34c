"""Readers for the datasets used to evaluate CLIP: CIFAR-10/100, image folders and captions.

The readers return plain Python and NumPy structures:

* :func:`load_cifar` reads CIFAR-10 or CIFAR-100 in either of its published formats (the
  pickled "python version" and the "binary version") into a :class:`ClassificationData`
  holding ``uint8`` images ``[N, 32, 32, 3]`` (HWC, RGB), ``int64`` labels and class names.
  The pickled files are read with a **restricted unpickler** that can only rebuild dicts,
  lists, strings, bytes, numbers and NumPy arrays: a file that tries to call anything else
  (``os.system``, ``eval``...) is refused before the call happens.
* :func:`load_image_folder` lists a torchvision ``ImageFolder``-style tree (one sub-folder
  per class) into a :class:`ClassificationData` holding file paths.
* :func:`read_flickr8k_captions`, :func:`read_caption_csv` and :func:`group_captions` read
  image-caption pairs and turn them into the inputs of
  ``clip.evaluation.retrieval_recall``.

:class:`ImageSource` wraps a :class:`ClassificationData` as a random-access source for
``mindspore.dataset.GeneratorDataset`` (or any loop), optionally applying CLIP's
``preprocess``.
"""
import csv
import io
import os
import pickle
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from .transform import to_pixels

__all__ = [
    "ClassificationData",
    "ImageSource",
    "IMG_EXTENSIONS",
    "load_cifar",
    "load_image_folder",
    "read_flickr8k_captions",
    "iter_flickr_tokens",
    "read_image_list",
    "read_caption_csv",
    "group_captions",
    "restricted_pickle_load",
]

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclass
class ClassificationData:
    """A labelled image-classification split.

    Attributes:
        labels: ``int64`` ``[N]`` class indices into ``classnames``.
        classnames: class names, index ``i`` naming class ``i``.
        images: ``uint8`` ``[N, H, W, 3]`` RGB images (HWC), or ``None`` for file-based data.
        paths: ``N`` image file paths, or ``None`` for in-memory data.
    """

    labels: np.ndarray
    classnames: List[str]
    images: Optional[np.ndarray] = None
    paths: Optional[List[str]] = None

    def __len__(self):
        return int(self.labels.shape[0])

    def __repr__(self):
        kind = (f"images={tuple(self.images.shape)}" if self.images is not None
                else f"paths=[{len(self.paths)} files]")
        return (f"ClassificationData({kind}, labels=[{len(self)}], "
                f"classnames=[{len(self.classnames)} classes])")


class ImageSource:
    """Random-access ``(image, label)`` source over a :class:`ClassificationData`.

    ``source[i]`` returns ``(image, label)`` where ``image`` is, without ``transform``, the
    ``uint8`` HWC RGB array (files are opened with PIL and converted to RGB) and, with
    ``transform`` (e.g. the ``preprocess`` returned by ``clip.load``), ``transform`` applied to
    the in-memory array or to the PIL image as opened (so the conversion to RGB happens inside
    the transform, as in OpenAI's pipeline), returned as a NumPy array. ``label`` is an
    ``int64`` NumPy scalar array. Usable directly as
    ``mindspore.dataset.GeneratorDataset(ImageSource(data, preprocess), ["image", "label"])``.
    """

    def __init__(self, data, transform=None):
        if not isinstance(data, ClassificationData):
            raise TypeError(f"data must be a ClassificationData, got {type(data).__name__}")
        if data.images is None and data.paths is None:
            raise ValueError("data has neither images nor paths")
        self.data = data
        self.transform = transform

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        label = np.asarray(self.data.labels[index], dtype=np.int64)
        if self.data.images is not None:
            image = self.data.images[index]                      # [H, W, 3] uint8
            return (image if self.transform is None else to_pixels(self.transform, image, dtype=None)), label
        from PIL import Image

        with Image.open(self.data.paths[index]) as img:
            img.load()
            if self.transform is None:
                return np.asarray(img.convert("RGB"), dtype=np.uint8), label
            return to_pixels(self.transform, img, dtype=None), label


# --------------------------------------------------------------------------------------
# restricted unpickling
# --------------------------------------------------------------------------------------

# Globals a CIFAR pickle may name. Plain containers, strings, bytes and numbers are built by
# pickle opcodes without any lookup; the rest rebuild NumPy arrays (the module was renamed
# numpy._core in NumPy 2) and, for files written by Python 3 with protocol 2, bytes
# (``_codecs.encode(str, "latin1")``). None of these can run arbitrary code.
_ALLOWED_GLOBALS = {
    ("builtins", "dict"), ("builtins", "list"), ("builtins", "str"), ("builtins", "bytes"),
    ("builtins", "int"), ("builtins", "bytearray"),
    ("__builtin__", "dict"), ("__builtin__", "list"), ("__builtin__", "str"),
    ("__builtin__", "bytes"), ("__builtin__", "int"),
    ("_codecs", "encode"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}


class _Refused(pickle.UnpicklingError):
    """The pickle asked for something a dataset file has no business asking for."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise _Refused(
            f"refused to load global '{module}.{name}': only dicts, lists, strings, bytes, "
            "numbers and NumPy arrays are allowed in a dataset file")

    def persistent_load(self, pid):
        raise _Refused("refused persistent id in a dataset file")


def restricted_pickle_load(path):
    """Unpickle ``path`` allowing only builtin containers/scalars and NumPy arrays.

    The file is read as Python 2 pickles are (``encoding="bytes"``: Python 2 ``str`` become
    ``bytes``), which is how the CIFAR "python version" files must be read. Raises
    ``ValueError`` naming the file when it is not a valid pickle or names any other global
    (such a global is never imported or called).
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except _Refused as e:
        raise ValueError(f"{path}: not a safe dataset pickle: {e}") from None
    except Exception as e:  # truncated or garbled files raise many different errors
        raise ValueError(f"{path}: corrupt or not a pickle file "
                         f"({type(e).__name__}: {e})") from None


# --------------------------------------------------------------------------------------
# CIFAR
# --------------------------------------------------------------------------------------

_CIFAR_FOLDERS = {
    (10, "python"): "cifar-10-batches-py",
    (10, "binary"): "cifar-10-batches-bin",
    (100, "python"): "cifar-100-python",
    (100, "binary"): "cifar-100-binary",
}
_CIFAR_FILES = {
    (10, "python"): {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"],
                     "meta": "batches.meta"},
    (10, "binary"): {"train": [f"data_batch_{i}.bin" for i in range(1, 6)],
                     "test": ["test_batch.bin"], "meta": "batches.meta.txt"},
    (100, "python"): {"train": ["train"], "test": ["test"], "meta": "meta"},
    (100, "binary"): {"train": ["train.bin"], "test": ["test.bin"],
                      "meta": "fine_label_names.txt"},
}
_CIFAR_PIXELS = 32 * 32 * 3


def _present(folder, key):
    files = _CIFAR_FILES[key]
    names = files["train"] + files["test"] + [files["meta"]]
    return any(os.path.isfile(os.path.join(folder, n)) for n in names)


def _find_cifar(root, variant, fmt):
    """``(folder, (variant, format))`` of the CIFAR files under ``root``."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"CIFAR root {root!r} is not a directory")
    keys = [k for k in _CIFAR_FILES if (variant is None or k[0] == variant)
            and (fmt is None or k[1] == fmt)]
    # files directly in root take precedence over the standard sub-folders
    found = [(root, k) for k in keys if _present(root, k)]
    if not found:
        found = [(os.path.join(root, _CIFAR_FOLDERS[k]), k) for k in keys
                 if _present(os.path.join(root, _CIFAR_FOLDERS[k]), k)]
    if not found:
        want = f"CIFAR-{variant}" if variant else "CIFAR-10/100"
        want += f" ({fmt} version)" if fmt else ""
        raise FileNotFoundError(
            f"no {want} files found in {root!r} or its sub-folders "
            f"{', '.join(sorted({_CIFAR_FOLDERS[k] for k in keys}))}; expected e.g. "
            "test_batch + batches.meta (CIFAR-10 python), test_batch.bin + batches.meta.txt "
            "(CIFAR-10 binary), test + meta (CIFAR-100 python) or test.bin + "
            "fine_label_names.txt (CIFAR-100 binary)")
    variants = sorted({k[0] for _, k in found})
    if len(variants) > 1:
        raise ValueError(f"both CIFAR-10 and CIFAR-100 files found under {root!r}; "
                         "pass variant=10 or variant=100")
    # the python version is preferred when both versions are present
    found.sort(key=lambda item: item[1][1] != "python")
    return found[0]


def _require(folder, name):
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"missing CIFAR file {path}")
    return path


def _decode(name, path):
    if isinstance(name, bytes):
        try:
            return name.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{path}: class name {name!r} is not UTF-8") from None
    if isinstance(name, str):
        return name
    raise ValueError(f"{path}: class names must be strings, found {type(name).__name__}")


def _get(d, key, path):
    """``d[key]`` for a dict pickled with bytes (Python 2) or str keys."""
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a pickled dict, found {type(d).__name__}")
    for k in (key.encode("ascii"), key):
        if k in d:
            return d[k]
    keys = ", ".join(sorted(k.decode("latin1") if isinstance(k, bytes) else str(k) for k in d))
    raise ValueError(f"{path}: no '{key}' entry (found: {keys})")


def _chw_to_hwc(flat, path):
    """``[N, 3072]`` uint8 rows (1024 R, 1024 G, 1024 B, row-major) -> ``[N, 32, 32, 3]``."""
    flat = np.asarray(flat)
    if flat.ndim != 2 or flat.shape[1] != _CIFAR_PIXELS:
        raise ValueError(f"{path}: image data must be [N, {_CIFAR_PIXELS}], got shape "
                         f"{tuple(flat.shape)}")
    if flat.dtype != np.uint8:
        if not np.issubdtype(flat.dtype, np.integer) or flat.min(initial=0) < 0 \
                or flat.max(initial=0) > 255:
            raise ValueError(f"{path}: image data must be uint8, got {flat.dtype}")
        flat = flat.astype(np.uint8)
    return np.ascontiguousarray(flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _labels_array(values, n, num_classes, path, what):
    labels = np.asarray(values)
    if labels.ndim != 1 or labels.shape[0] != n or not (
            labels.size == 0 or np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(f"{path}: {what} must be {n} integers, got "
                         f"{labels.shape[0] if labels.ndim == 1 else tuple(labels.shape)} "
                         f"of dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{path}: {what} must be in [0, {num_classes}), found "
                         f"{int(labels.min())}..{int(labels.max())}")
    return labels


def _read_name_list(path):
    """Class names, one a line (blank lines ignored)."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            names = [line.strip() for line in f]
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a UTF-8 text file") from None
    return [n for n in names if n]


def _load_cifar_python(folder, variant, split, label):
    files = _CIFAR_FILES[(variant, "python")]
    meta_path = _require(folder, files["meta"])
    paths = [_require(folder, n) for n in files[split]]
    meta = restricted_pickle_load(meta_path)
    names_key = "label_names" if variant == 10 else f"{label}_label_names"
    classnames = [_decode(n, meta_path) for n in _get(meta, names_key, meta_path)]
    labels_key = "labels" if variant == 10 else f"{label}_labels"
    images, labels = [], []
    for path in paths:
        batch = restricted_pickle_load(path)
        imgs = _chw_to_hwc(_get(batch, "data", path), path)
        images.append(imgs)
        labels.append(_labels_array(_get(batch, labels_key, path), imgs.shape[0],
                                    len(classnames), path, labels_key))
    return images, labels, classnames


def _load_cifar_binary(folder, variant, split, label):
    files = _CIFAR_FILES[(variant, "binary")]
    if variant == 10:
        names_path = _require(folder, files["meta"])
    else:
        names_path = _require(folder, f"{label}_label_names.txt")
    classnames = _read_name_list(names_path)
    paths = [_require(folder, n) for n in files[split]]
    n_label_bytes = 1 if variant == 10 else 2
    record = n_label_bytes + _CIFAR_PIXELS
    label_byte = 0 if variant == 10 else (1 if label == "fine" else 0)  # CIFAR-100: coarse, fine
    images, labels = [], []
    for path in paths:
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.size == 0 or raw.size % record:
            raise ValueError(f"{path}: size {raw.size} bytes is not a whole number of "
                             f"{record}-byte CIFAR-{variant} records (corrupt or truncated?)")
        rows = raw.reshape(-1, record)
        images.append(_chw_to_hwc(rows[:, n_label_bytes:], path))
        labels.append(_labels_array(rows[:, label_byte], rows.shape[0], len(classnames), path,
                                    f"{label} labels" if variant == 100 else "labels"))
    return images, labels, classnames


def load_cifar(root, split="test", variant=None, label="fine", format=None):
    """Read CIFAR-10 or CIFAR-100 from the files published at cs.toronto.edu/~kriz/cifar.html.

    Args:
        root: the extracted folder (``cifar-10-batches-py``, ``cifar-10-batches-bin``,
            ``cifar-100-python`` or ``cifar-100-binary``) or the folder that contains it.
        split: ``"train"`` (CIFAR-10: ``data_batch_1`` ... ``data_batch_5``) or ``"test"``.
        variant: ``10``, ``100`` (also ``"cifar10"``/``"cifar100"``) or ``None`` to detect it
            from the files present (an error if both are found).
        label: CIFAR-100 only: ``"fine"`` (100 classes) or ``"coarse"`` (20 superclasses).
        format: ``"python"`` (pickled batches), ``"binary"`` (``.bin`` records) or ``None`` to
            detect it (the python version is used when both are present).

    Returns:
        :class:`ClassificationData` with ``images`` ``uint8 [N, 32, 32, 3]`` (HWC, RGB; the
        files store each image as 1024 red, 1024 green then 1024 blue bytes, row-major),
        ``labels`` ``int64 [N]`` and ``classnames`` as written in the dataset's meta file
        (e.g. ``"aquarium_fish"``; use ``clip.prompts`` for prompt-ready names).

    Raises:
        FileNotFoundError: no CIFAR files under ``root``, or a required file is missing (the
            message names it).
        ValueError: a file is corrupt, truncated, has unexpected content or (python version)
            holds anything but plain data and NumPy arrays.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    aliases = {10: 10, 100: 100, "10": 10, "100": 100, "cifar10": 10, "cifar100": 100,
               "cifar-10": 10, "cifar-100": 100}
    if variant is not None:
        key = variant.lower() if isinstance(variant, str) else variant
        if isinstance(key, bool) or key not in aliases:
            raise ValueError(f"variant must be 10, 100 or None, got {variant!r}")
        variant = aliases[key]
    if format not in (None, "python", "binary"):
        raise ValueError(f"format must be 'python', 'binary' or None, got {format!r}")
    if label not in ("fine", "coarse"):
        raise ValueError(f"label must be 'fine' or 'coarse', got {label!r}")
    root = os.fspath(root)
    folder, (variant, fmt) = _find_cifar(root, variant, format)
    if variant == 10 and label != "fine":
        raise ValueError("CIFAR-10 has a single set of labels; label='coarse' is for CIFAR-100")
    reader = _load_cifar_python if fmt == "python" else _load_cifar_binary
    images, labels, classnames = reader(folder, variant, split, label)
    return ClassificationData(labels=np.concatenate(labels), classnames=classnames,
                              images=np.concatenate(images))


# --------------------------------------------------------------------------------------
# image folders
# --------------------------------------------------------------------------------------

def load_image_folder(root, extensions=IMG_EXTENSIONS, allow_empty=False):
    """List an ``ImageFolder``-style tree: ``root/<class>/**/<image>``.

    Classes are the sub-folders of ``root`` sorted by name (Python string order, so ``"B"``
    comes before ``"a"``), exactly as torchvision's ``ImageFolder`` does, and so is the order
    of the files: each class's folder is walked recursively (following symlinks), folders in
    sorted order and files sorted by name within each. A file belongs to the dataset when its
    name ends with one of ``extensions`` (case-insensitive).

    Returns:
        :class:`ClassificationData` with ``paths`` (``os.path.join(root, class, ...)``),
        ``labels`` ``int64 [N]`` and ``classnames``; ``images`` is ``None``.

    Raises:
        FileNotFoundError: ``root`` is not a directory, has no class folders, or (unless
            ``allow_empty``) a class folder holds no matching file (the message names them).
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder root {root!r} is not a directory")
    if isinstance(extensions, str):
        extensions = (extensions,)
    extensions = tuple(e.lower() for e in extensions)
    if not extensions:
        raise ValueError("extensions is empty")
    classnames = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if not classnames:
        raise FileNotFoundError(f"no class folders found in {root!r}")
    paths, labels, empty = [], [], []
    for index, name in enumerate(classnames):
        count = 0
        for dirpath, _, fnames in sorted(os.walk(os.path.join(root, name), followlinks=True)):
            for fname in sorted(fnames):
                if fname.lower().endswith(extensions):
                    paths.append(os.path.join(dirpath, fname))
                    labels.append(index)
                    count += 1
        if count == 0:
            empty.append(name)
    if empty and not allow_empty:
        raise FileNotFoundError(f"no files ending with {', '.join(extensions)} in the class "
                                f"folder(s) {', '.join(empty)} of {root!r}")
    return ClassificationData(labels=np.asarray(labels, dtype=np.int64), classnames=classnames,
                              paths=paths)


# --------------------------------------------------------------------------------------
# captions
# --------------------------------------------------------------------------------------

def _read_lines(path):
    try:
        with open(path, "r", encoding="utf-8-sig") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"caption file {path!r} not found") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a UTF-8 text file ({e})") from None


def read_image_list(path):
    """Image names listed one a line (e.g. Flickr8k's ``Flickr_8k.testImages.txt``)."""
    return [line.strip() for line in _read_lines(os.fspath(path)) if line.strip()]


def read_flickr8k_captions(token_file, split_file=None):
    """Read ``(image_name, caption)`` pairs from a Flickr8k/Flickr30k token file.

    Each non-blank line is ``<image_name>#<n>\\t<caption>``, e.g.
    ``1000268201_693b08cb0e.jpg#0\\tA child in a pink dress is climbing up ...``; the
    ``#<n>`` caption number is dropped and the caption stripped of surrounding spaces.

    Args:
        token_file: ``Flickr8k.token.txt`` (or ``Flickr8k.lemma.token.txt``, or Flickr30k's
            ``results_20130124.token``).
        split_file: optional list of image names, one a line (``Flickr_8k.testImages.txt``):
            only captions of those images are kept.

    Returns:
        The pairs in file order.

    Raises:
        ValueError: a line is not in that format (the message names file and line).
    """
    token_file = os.fspath(token_file)
    keep = None
    if split_file is not None:
        keep = set(read_image_list(split_file))
    pairs = []
    for number, name, caption in iter_flickr_tokens(token_file):
        if not caption:
            raise ValueError(f"{token_file}, line {number}: empty caption")
        if keep is None or name in keep:
            pairs.append((name, caption))
    return pairs


def iter_flickr_tokens(token_file):
    """``(line number, image name, caption)`` of each non-blank line of a Flickr caption file
    (``<image>#<n><TAB><caption>``); the caption stripped, possibly empty.

    Raises:
        ValueError: a line is not in that format (the message names file and line).
    """
    for number, line in enumerate(_read_lines(token_file), start=1):
        if not line.strip():
            continue
        key, tab, caption = line.partition("\t")
        name, hash_, index = key.strip().rpartition("#")
        if not tab or not hash_ or not name or not index.strip().isdigit():
            raise ValueError(f"{token_file}, line {number}: expected "
                             f"'<image>#<n><TAB><caption>', got {line[:80]!r}")
        yield number, name, caption.strip()


def read_caption_csv(path, path_column="path", caption_column="caption"):
    """Read ``(image_path, caption)`` pairs from a CSV file with a header row.

    The file is parsed with the ``csv`` module, so quoted fields may contain commas, quotes
    (doubled) and newlines. Other columns are ignored. Paths are returned as written
    (join them to a folder with :func:`group_captions`' ``image_root``).

    Raises:
        ValueError: the header lacks a column, or a row has an empty path or caption (the
            message names file and line).
    """
    path = os.fspath(path)
    try:
        f = open(path, "r", encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise FileNotFoundError(f"caption file {path!r} not found") from None
    pairs = []
    with f:
        try:
            reader = csv.DictReader(f)
            header = reader.fieldnames
            if header is None:
                raise ValueError(f"{path}: empty file; expected a header "
                                 f"'{path_column},{caption_column}'")
            missing = [c for c in (path_column, caption_column) if c not in header]
            if missing:
                raise ValueError(f"{path}: no column {', '.join(repr(m) for m in missing)} in "
                                 f"the header (found: {', '.join(map(repr, header))})")
            for row in reader:
                image, caption = row[path_column], row[caption_column]
                if image is None or caption is None:
                    raise ValueError(f"{path}, line {reader.line_num}: too few fields")
                image, caption = image.strip(), caption.strip()
                if not image or not caption:
                    raise ValueError(f"{path}, line {reader.line_num}: empty "
                                     f"{path_column if not image else caption_column}")
                pairs.append((image, caption))
        except csv.Error as e:
            raise ValueError(f"{path}: malformed CSV ({e})") from None
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not a UTF-8 text file ({e})") from None
    return pairs


def group_captions(pairs, image_root=None):
    """Turn ``(image, caption)`` pairs into the inputs of ``retrieval_recall``.

    Args:
        pairs: ``(image, caption)`` pairs, several captions per image allowed, in any order.
        image_root: optional folder joined in front of each image name
            (``os.path.join(image_root, image)``; absolute names are left as they are).

    Returns:
        ``(image_paths, captions, text_to_image)``: the distinct images in order of first
        appearance, all captions in input order, and ``int64 [len(captions)]`` with the index
        in ``image_paths`` of each caption's image.
    """
    index, image_paths, captions, t2i = {}, [], [], []
    for n, pair in enumerate(pairs):
        try:
            image, caption = pair
        except (TypeError, ValueError):
            raise ValueError(f"pairs[{n}] must be an (image, caption) pair, got {pair!r}") from None
        if image not in index:
            index[image] = len(image_paths)
            image_paths.append(image if image_root is None
                               else os.path.join(os.fspath(image_root), image))
        captions.append(caption)
        t2i.append(index[image])
    if not captions:
        raise ValueError("no (image, caption) pairs given")
    return image_paths, captions, np.asarray(t2i, dtype=np.int64)
