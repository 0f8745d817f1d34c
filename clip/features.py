"""Batch feature extraction: CLIP features of many images or texts at once.

:func:`extract_image_features` encodes every image of a folder (recursively), of a list
of files, or of a ``mindspore.dataset`` pipeline::

    model, preprocess = clip.load("ViT-B/32")
    result = extract_image_features(model, preprocess, "photos/", save_to="photos-vitb32")
    result.features  # float32 [N, embed_dim], row i belongs to result.paths[i]
    result.failed    # [(path, error message)] of the files that could not be read

Files are decoded and preprocessed by the worker threads of a
``mindspore.dataset.GeneratorDataset`` while the model encodes the previous batch.
Threads rather than processes (``python_multiprocessing=False``): PIL releases the GIL
while it decodes and resizes, so threads decode in parallel too, without the start-up
cost, the pickling of ``preprocess`` and the shared-memory files of worker processes.
A file that cannot be read (corrupt, truncated, not an image, missing) is skipped and
listed in :attr:`ImageFeatures.failed`; it never stops the run.

:func:`extract_text_features` encodes a list of strings in batches.
"""
import io
import os
import warnings
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import mindspore.dataset as ds
from mindspore import Tensor
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from ._atomic import write_atomically
from .clip import tokenize
from .transform import to_pixels

__all__ = ["IMAGE_EXTENSIONS", "ImageFeatures", "find_images", "open_image",
           "extract_image_features", "extract_text_features", "default_num_workers"]

#: File extensions read as images (compared case-insensitively).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

_PathLike = Union[str, os.PathLike]


# ---------------------------------------------------------------------------------------------
# argument checks

def _check_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return int(value)


def _check_model(model, method):
    if not callable(getattr(model, method, None)):
        raise TypeError(f"model must be a CLIP model from clip.load (it needs .{method}), "
                        f"got {type(model).__name__}")


def _embed_dim(model):
    """The feature width, for empty results."""
    dim = getattr(model, "embed_dim", None)
    return int(dim) if isinstance(dim, (int, np.integer)) else 0


def _describe(error):
    """``"TypeName: first line of the message"``."""
    message = str(error).strip()
    return f"{type(error).__name__}: {message.splitlines()[0]}" if message else type(error).__name__


def _normalise(features):
    """Rows scaled to unit L2 norm (float32). [N, D] -> [N, D]"""
    return features / np.linalg.norm(features, axis=-1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# files

def find_images(folder: _PathLike) -> List[str]:
    """Every image file under ``folder`` (recursively), by extension (:data:`IMAGE_EXTENSIONS`,
    any case), sorted by path. Symbolic links to folders are not followed."""
    if not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"folder must be a path, got {type(folder).__name__}")
    folder = os.fspath(folder)
    if not os.path.exists(folder):
        raise FileNotFoundError(f"image folder {folder!r} does not exist")
    if not os.path.isdir(folder):
        raise NotADirectoryError(f"{folder!r} is a file, not a folder; pass a folder or a list of image paths")

    def fail(error):
        raise error

    found = []
    for root, dirs, files in os.walk(folder, onerror=fail):
        dirs.sort()
        found.extend(os.path.join(root, name) for name in sorted(files)
                     if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS)
    return sorted(found)


def open_image(path: _PathLike) -> Image.Image:
    """Open and fully decode an image file with PIL (the first frame of an animation).

    Decoding here, rather than lazily, makes a corrupt or truncated file fail now, with
    PIL's error, and leaves no file handle open."""
    with open(path, "rb") as f:
        try:
            image = Image.open(f)
        except UnidentifiedImageError:
            raise UnidentifiedImageError(f"cannot identify image file {os.fspath(path)!r}") from None
        image.load()
    return image


class _FileRows:
    """Random-access source of a ``GeneratorDataset``: row ``i`` is
    ``(pixels [3, R, R] float32, i, error message)``; the message is empty when the file
    was read, and the pixels are zeros when it was not."""

    def __init__(self, paths, preprocess, resolution):
        self.paths = paths
        self.preprocess = preprocess
        self.shape = (3, resolution, resolution)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        try:
            pixels = to_pixels(self.preprocess, open_image(self.paths[index]))
            if pixels.shape != self.shape:
                raise ValueError(f"preprocess returned an array of shape {pixels.shape}, the model takes {self.shape}")
            return pixels, np.int64(index), np.array("")
        except Exception as error:  # noqa: BLE001 - any failure of one file is reported, never fatal
            return np.zeros(self.shape, np.float32), np.int64(index), np.array(_describe(error))


# ---------------------------------------------------------------------------------------------
# encoding

class _BatchEncoder:
    """Collects preprocessed images and encodes them ``batch_size`` at a time, so that every
    call to ``encode_image`` but the last has the same shape (one compiled graph in graph mode)."""

    def __init__(self, model, batch_size):
        self.model = model
        self.batch_size = batch_size
        self.pending = []  # arrays [n, 3, R, R]
        self.count = 0
        self.outputs = []  # arrays [batch, D]

    def add(self, pixels):
        if len(pixels) == 0:
            return
        self.pending.append(pixels)
        self.count += len(pixels)
        while self.count >= self.batch_size:
            self._encode(self.batch_size)

    def _encode(self, n):
        stacked = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
        batch, rest = stacked[:n], stacked[n:]
        self.pending = [rest] if len(rest) else []
        self.count = len(rest)
        features = self.model.encode_image(Tensor(np.ascontiguousarray(batch)))  # [n, D]
        self.outputs.append(features.asnumpy().astype(np.float32))

    def finish(self, embed_dim):
        if self.count:
            self._encode(self.count)
        if not self.outputs:
            return np.zeros((0, embed_dim), np.float32)
        return np.concatenate(self.outputs)  # [N, D]


def _resolution(model, preprocess):
    resolution = getattr(getattr(model, "visual", None), "input_resolution", None)
    if resolution is None:
        raise TypeError(f"model must be a CLIP model from clip.load (it needs .visual.input_resolution), "
                        f"got {type(model).__name__}")
    n_px = getattr(preprocess, "n_px", None)
    if n_px is not None and n_px != resolution:
        raise ValueError(f"preprocess makes {n_px}x{n_px} images but the model takes {resolution}x{resolution}; "
                         "use the preprocess returned by clip.load with this model")
    return int(resolution)


def default_num_workers() -> int:
    """Decoding threads of :func:`extract_image_features` when none are asked for: 0 (files are
    decoded in the calling thread, between model calls) where this process may use at most 4 CPUs,
    since there decoding threads take the cores the model computes on (measured on 2 cores, 512
    JPEGs, ViT-B/32: 34 s in the calling thread, 65 s with 2 threads); else 2."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return 0 if cpus <= 4 else 2


def _check_workers(num_workers):
    return default_num_workers() if num_workers is None else _check_int(num_workers, "num_workers", minimum=0)


def _batches_in_this_thread(source, batch_size):
    """The rows of a :class:`_FileRows` as the batched dataset gives them, decoded here."""
    for start in range(0, len(source), batch_size):
        rows = [source[i] for i in range(start, min(start + batch_size, len(source)))]
        yield tuple(np.stack([row[k] for row in rows]) for k in range(3))  # pixels, indices, errors


def _extract_from_files(model, preprocess, paths, resolution, batch_size, num_workers, progress):
    """``(features [n, D], rows, failed)``: the features of the readable files of ``paths``,
    the position in ``paths`` of each row, and ``(position, error message)`` of
    each file that could not be read. ``num_workers`` 0: decoded in this thread."""
    source = _FileRows(paths, preprocess, resolution)
    iterator = None
    if num_workers:
        dataset = ds.GeneratorDataset(source, column_names=["image", "index", "error"], shuffle=False,
                                      num_parallel_workers=num_workers, python_multiprocessing=False)
        iterator = dataset.batch(batch_size).create_tuple_iterator(output_numpy=True, num_epochs=1)
    encoder = _BatchEncoder(model, batch_size)
    kept, failed = [], []
    bar = tqdm(total=len(paths), unit="image", desc="image features", disable=not progress)
    try:
        for pixels, indices, errors in iterator or _batches_in_this_thread(source, batch_size):
            ok = np.array([not str(e) for e in errors], dtype=bool)
            for index, error in zip(indices[~ok], errors[~ok]):
                failed.append((int(index), str(error)))
            kept.extend(int(i) for i in indices[ok])
            encoder.add(pixels[ok])
            bar.update(len(indices))
            if failed:
                bar.set_postfix(failed=len(failed))
        features = encoder.finish(_embed_dim(model))
    finally:
        bar.close()
        if iterator is not None:
            iterator.stop()
    return features, kept, failed


class _DatasetRow:
    """``map`` operation turning one value of the image column into preprocessed pixels:
    decoded images (uint8 ``[H, W]``/``[H, W, C]``, or a batch ``[B, H, W, C]``) and encoded
    files (1-D uint8, e.g. ``ImageFolderDataset(decode=False)``) go through ``preprocess``;
    float arrays, already preprocessed, pass through (checked in the main thread)."""

    def __init__(self, preprocess):
        self.preprocess = preprocess

    def __call__(self, value):
        value = np.asarray(value)
        if value.dtype != np.uint8:
            return value
        if value.ndim == 1:  # the bytes of an image file
            return to_pixels(self.preprocess, Image.open(io.BytesIO(value.tobytes())))
        if value.ndim == 4:  # a batch of decoded images
            return np.stack([to_pixels(self.preprocess, image) for image in value])
        return to_pixels(self.preprocess, value)


def _image_column(dataset, column):
    names = dataset.get_col_names()
    if column is None:
        if "image" in names:
            return "image"
        if len(names) == 1:
            return names[0]
        raise ValueError(f"the dataset has columns {names}; name the one holding the images with column=...")
    if column not in names:
        raise ValueError(f"the dataset has no column {column!r}; its columns are {names}")
    return column


def _extract_from_dataset(model, preprocess, dataset, column, resolution, batch_size, num_workers, progress):
    column = _image_column(dataset, column)
    pipeline = dataset.project([column]).map(operations=_DatasetRow(preprocess), input_columns=[column],
                                             num_parallel_workers=max(1, num_workers), python_multiprocessing=False)
    try:
        total = int(dataset.get_dataset_size())
    except Exception:  # noqa: BLE001 - the size is only for the progress bar
        total = None
    shape = (3, resolution, resolution)
    encoder = _BatchEncoder(model, batch_size)
    bar = tqdm(total=total if total and total > 0 else None, unit="row", desc="image features",
               disable=not progress)
    iterator = pipeline.create_tuple_iterator(output_numpy=True, num_epochs=1)
    try:
        for row, (pixels,) in enumerate(iterator):
            if (pixels.ndim not in (3, 4) or tuple(pixels.shape[-3:]) != shape
                    or not np.issubdtype(pixels.dtype, np.floating)):
                raise ValueError(
                    f"dataset column {column!r}, row {row}: expected a decoded image (uint8 [H, W, C]), an "
                    f"encoded image file (1-D uint8) or preprocessed pixels (float {list(shape)} or a batch "
                    f"[B, {', '.join(map(str, shape))}]), got dtype {pixels.dtype} and shape {pixels.shape}")
            encoder.add(pixels.astype(np.float32).reshape((-1,) + shape))  # [n, 3, R, R]
            bar.update(1)
        features = encoder.finish(_embed_dim(model))
    finally:
        bar.close()
        iterator.stop()
    return features


# ---------------------------------------------------------------------------------------------
# results

def _split_prefix(prefix):
    if not isinstance(prefix, (str, os.PathLike)):
        raise TypeError(f"prefix must be a path, got {type(prefix).__name__}")
    prefix = os.fspath(prefix)
    if prefix.endswith(".npy"):
        prefix = prefix[:-len(".npy")]
    if not os.path.basename(prefix):
        raise ValueError(f"prefix {prefix!r} names a folder; add a file name stem, e.g. 'features'")
    return prefix + ".npy", prefix + ".paths.txt"


@dataclass
class ImageFeatures:
    """Result of :func:`extract_image_features`.

    Attributes
    ----------
    features : numpy.ndarray
        float32 ``[N, embed_dim]``.
    paths : List[str]
        The file of each row of ``features`` (same order); empty when the images came
        from a ``mindspore.dataset`` pipeline, which has no file names.
    failed : List[Tuple[str, str]]
        ``(path, error message)`` of each file that could not be read; not saved by :meth:`save`.
    """
    features: np.ndarray
    paths: List[str] = field(default_factory=list)
    failed: List[Tuple[str, str]] = field(default_factory=list)

    def __post_init__(self):
        self.features = np.asarray(self.features, dtype=np.float32)
        if self.features.ndim != 2:
            raise ValueError(f"features must be a 2-D array [N, D], got shape {self.features.shape}")
        self.paths = [os.fspath(p) for p in self.paths]
        if self.paths and len(self.paths) != len(self.features):
            raise ValueError(f"{len(self.paths)} paths for {len(self.features)} feature rows; "
                             "there must be one path per row (or none)")
        self.failed = [tuple(item) for item in self.failed]

    def __len__(self):
        return len(self.features)

    def save(self, prefix: _PathLike) -> Tuple[str, str]:
        """Write ``<prefix>.npy`` (the features) and ``<prefix>.paths.txt`` (one path per line,
        UTF-8), each atomically (temporary file + ``os.replace``); a trailing ``.npy`` on
        ``prefix`` is ignored and missing parent folders are created. Returns both paths."""
        npy, txt = _split_prefix(prefix)
        for path in self.paths:
            if "\n" in path:
                raise ValueError(f"cannot save the path {path!r}: a line break in a path cannot be "
                                 "stored in the one-path-per-line .paths.txt file")
        os.makedirs(os.path.dirname(os.path.abspath(npy)), exist_ok=True)
        features = np.ascontiguousarray(self.features, dtype=np.float32)
        write_atomically(npy, lambda f: np.save(f, features, allow_pickle=False), binary=True)
        write_atomically(txt, lambda f: f.write("".join(path + "\n" for path in self.paths)), binary=False)
        return npy, txt

    @classmethod
    def load(cls, prefix: _PathLike) -> "ImageFeatures":
        """Read what :meth:`save` wrote (``failed`` comes back empty)."""
        npy, txt = _split_prefix(prefix)
        for path in (npy, txt):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{path} does not exist; ImageFeatures.save writes "
                                        f"'<prefix>.npy' and '<prefix>.paths.txt'")
        features = np.load(npy, allow_pickle=False)
        with open(txt, "r", encoding="utf-8", newline="") as f:
            text = f.read()
        paths = text.split("\n")[:-1] if text else []  # every line ends with "\n"
        if features.ndim != 2:
            raise ValueError(f"{npy}: expected a 2-D array of features, got shape {features.shape}")
        if paths and len(paths) != len(features):
            raise ValueError(f"{txt} lists {len(paths)} paths but {npy} holds {len(features)} rows; "
                             "the two files do not belong together")
        return cls(features, paths)


# ---------------------------------------------------------------------------------------------
# public functions

def extract_image_features(model, preprocess, source, batch_size: int = 64, num_workers: Optional[int] = None,
                           progress: bool = True, normalize: bool = False, save_to: Optional[_PathLike] = None,
                           column: Optional[str] = None) -> ImageFeatures:
    """Encode many images with ``model.encode_image``.

    Parameters
    ----------
    model : CLIP
        A model from :func:`clip.load`.
    preprocess : Callable
        The preprocess returned by :func:`clip.load` (any callable from a PIL image to a
        ``[3, R, R]`` array or tensor works).
    source : str, os.PathLike, list of paths, or mindspore.dataset.Dataset
        - a folder: every file under it (recursively) whose extension is in
          :data:`IMAGE_EXTENSIONS`, in sorted path order;
        - a list (or tuple) of image file paths, in that order;
        - a ``mindspore.dataset`` pipeline whose image column (``column``; default ``"image"``,
          or the only column) holds decoded images (uint8 ``[H, W, C]``, as after
          ``vision.Decode()``), encoded image files (1-D uint8) or preprocessed float pixels
          ``[3, R, R]`` (or batches of either). Its rows are encoded in order.
    batch_size : int
        Images per ``encode_image`` call.
    num_workers : int, optional
        Threads that decode and preprocess images while the model runs; 0: decode in this thread,
        between model calls. Default: :func:`default_num_workers` (0 on machines of up to 4 CPUs,
        where decoding threads slow the model down more than they help; else 2). A dataset
        ``source`` is mapped with at least one thread.
    progress : bool
        Show a tqdm progress bar.
    normalize : bool
        Scale every feature vector to unit L2 norm.
    save_to : str or os.PathLike, optional
        Also save the result with :meth:`ImageFeatures.save` under this prefix.
    column : str, optional
        The image column of a dataset ``source``.

    Returns
    -------
    ImageFeatures
        ``features`` float32 ``[N, embed_dim]``, with the file of each row in ``paths`` (empty
        for a dataset source). Files that cannot be read are skipped, listed in ``failed`` as
        ``(path, error message)`` and reported with a warning. For a dataset source a bad row
        raises instead, since its rows have no other name than their position.
    """
    _check_model(model, "encode_image")
    if not callable(preprocess):
        raise TypeError(f"preprocess must be callable (the preprocess from clip.load), got {type(preprocess).__name__}")
    batch_size = _check_int(batch_size, "batch_size")
    num_workers = _check_workers(num_workers)
    resolution = _resolution(model, preprocess)
    if column is not None and not isinstance(source, ds.Dataset):
        raise ValueError("column is only used with a mindspore.dataset source")

    if isinstance(source, ds.Dataset):
        features = _extract_from_dataset(model, preprocess, source, column, resolution, batch_size,
                                         num_workers, progress)
        paths, failed = [], []
    else:
        if isinstance(source, (str, os.PathLike)):
            paths = find_images(source)
            if not paths:
                raise ValueError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {os.fspath(source)!r}")
        elif isinstance(source, (list, tuple)):
            for i, path in enumerate(source):
                if not isinstance(path, (str, os.PathLike)):
                    raise TypeError(f"source[{i}] is a {type(path).__name__}, not a file path")
            paths = [os.fspath(path) for path in source]
            if not paths:
                raise ValueError("source is an empty list of image paths")
        else:
            raise TypeError(f"source must be a folder, a list of image paths or a mindspore.dataset.Dataset, "
                            f"got {type(source).__name__}")
        features, rows, failed = _extract_from_files(model, preprocess, paths, resolution, batch_size,
                                                     num_workers, progress)
        failed = [(paths[i], message) for i, message in failed]
        paths = [paths[i] for i in rows]
        if failed:
            shown = "; ".join(f"{path} ({message})" for path, message in failed[:3])
            more = f" and {len(failed) - 3} more" if len(failed) > 3 else ""
            warnings.warn(f"skipped {len(failed)} of {len(failed) + len(paths)} images that could not be read: "
                          f"{shown}{more} (see ImageFeatures.failed)", RuntimeWarning, stacklevel=2)

    if normalize and len(features):
        features = _normalise(features)
    result = ImageFeatures(features, paths, failed)
    if save_to is not None:
        result.save(save_to)
    return result


def _extract_rows(model, preprocess, paths, batch_size=64, num_workers=None, progress=True, normalize=False):
    """:func:`extract_image_features` of a list of files, by position: ``(features [n, D] float32,
    rows [n] int64, failed)``, where ``rows`` holds the position in ``paths`` of each feature row
    and ``failed`` is ``[(position, error message)]``; an empty ``paths`` gives no rows.
    No warning. (``python -m clip embed --workers N`` encodes one share of a list per process.)"""
    _check_model(model, "encode_image")
    batch_size = _check_int(batch_size, "batch_size")
    num_workers = _check_workers(num_workers)
    resolution = _resolution(model, preprocess)
    paths = [os.fspath(path) for path in paths]
    if not paths:
        return np.zeros((0, _embed_dim(model)), np.float32), np.zeros(0, np.int64), []
    features, rows, failed = _extract_from_files(model, preprocess, paths, resolution, batch_size,
                                                 num_workers, progress)
    if normalize and len(features):
        features = _normalise(features)
    return np.asarray(features, np.float32), np.asarray(rows, np.int64), failed


def _encode_texts(model, texts, batch_size, progress, truncate, desc):
    """Text features of a checked list of strings, ``batch_size`` per ``encode_text`` call. [N, D]"""
    context_length = getattr(model, "context_length", 77)
    outputs = []
    with tqdm(total=len(texts), unit="text", desc=desc, disable=not progress) as bar:
        for start in range(0, len(texts), batch_size):
            chunk = texts[start:start + batch_size]
            try:
                tokens = tokenize(chunk, context_length=context_length, truncate=truncate)  # [n, n_ctx]
            except RuntimeError as error:
                raise RuntimeError(f"{error}; shorten the text or pass truncate=True") from error
            outputs.append(model.encode_text(tokens).asnumpy().astype(np.float32))  # [n, D]
            bar.update(len(chunk))
    return np.concatenate(outputs)  # [N, D]


def extract_text_features(model, texts: Union[str, Sequence[str]], batch_size: int = 256, progress: bool = True,
                          normalize: bool = False, truncate: bool = False) -> np.ndarray:
    """Encode many texts with ``model.encode_text``, ``batch_size`` at a time.

    Parameters
    ----------
    model : CLIP
        A model from :func:`clip.load`.
    texts : str or list of str
        The texts, tokenized with :func:`clip.tokenize`.
    batch_size : int
        Texts per ``encode_text`` call.
    progress : bool
        Show a tqdm progress bar.
    normalize : bool
        Scale every feature vector to unit L2 norm.
    truncate : bool
        Cut texts longer than the context length instead of raising (see :func:`clip.tokenize`).

    Returns
    -------
    numpy.ndarray
        float32 ``[len(texts), embed_dim]``.
    """
    _check_model(model, "encode_text")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, (list, tuple)):
        raise TypeError(f"texts must be a string or a list of strings, got {type(texts).__name__}")
    if not texts:
        raise ValueError("texts is empty")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is a {type(text).__name__}, not a string")
    batch_size = _check_int(batch_size, "batch_size")
    features = _encode_texts(model, list(texts), batch_size, progress, truncate, "text features")
    return _normalise(features) if normalize else features
