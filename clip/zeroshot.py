"""Zero-shot classification: class names become a linear classifier through prompts.

OpenAI's recipe (the "Prompt Engineering for ImageNet" notebook): for each class, fill
every prompt template with the class name, encode the texts, L2-normalise each text
embedding, average them over the templates and L2-normalise the average. The columns
of the resulting ``[embed_dim, n_classes]`` matrix are the class weights; an image's
logits are ``scale * normalised image features @ weights``::

    weights = zero_shot_classifier(model, ["cat", "dog"], ["a photo of a {}.", "a drawing of a {}."])
    logits = zero_shot_logits(image_features, weights)            # [N, 2], scale 100 as OpenAI's notebook

or, as a pipeline from images to ranked labels::

    classify = ZeroShotClassifier(model, preprocess, ["cat", "dog"])
    classify("cat.jpg")   # [{"score": 0.97, "label": "cat"}, {"score": 0.03, "label": "dog"}]

Templates are strings with a ``{}`` placeholder (``{0}`` and CLIP_benchmark's ``{c}`` work
too) or callables from the class name to the text (open_clip's style).
"""
import os
from typing import Callable, List, Optional, Sequence, Union

import numpy as np
from mindspore import Tensor
from PIL import Image

from .features import _BatchEncoder, _check_int, _embed_dim, _encode_texts, _normalise, open_image
from .transform import to_pixels

__all__ = ["zero_shot_classifier", "zero_shot_logits", "ZeroShotClassifier"]

Template = Union[str, Callable[[str], str]]

_MARK = "\x00classname\x00"  # stands for the class name while templates are checked


def _check_classnames(classnames, name="classnames") -> List[str]:
    if isinstance(classnames, str):
        raise TypeError(f"{name} must be a list of class names, got the single string {classnames!r}; "
                        f"wrap it in a list")
    try:
        classnames = list(classnames)
    except TypeError:
        raise TypeError(f"{name} must be a list of class names (strings), got {type(classnames).__name__}") from None
    if not classnames:
        raise ValueError(f"{name} is empty: zero-shot classification needs at least one class name")
    for i, classname in enumerate(classnames):
        if not isinstance(classname, str):
            raise TypeError(f"{name}[{i}] is a {type(classname).__name__} ({classname!r}), not a string")
        if not classname.strip():
            raise ValueError(f"{name}[{i}] is an empty class name")
    return [str(classname) for classname in classnames]


def _check_templates(templates) -> List[Template]:
    if isinstance(templates, str) or callable(templates):  # one template
        templates = [templates]
    try:
        templates = list(templates)
    except TypeError:
        raise TypeError("templates must be a list of strings with a '{}' placeholder or of callables, "
                        f"got {type(templates).__name__}") from None
    if not templates:
        raise ValueError("templates is empty: give at least one, e.g. ['a photo of a {}.']")
    for i, template in enumerate(templates):
        if callable(template):
            continue
        if not isinstance(template, str):
            raise TypeError(f"templates[{i}] is a {type(template).__name__}; templates are strings with a "
                            "'{}' placeholder for the class name, or callables classname -> text")
        try:
            filled = template.format(_MARK, c=_MARK)
        except (IndexError, KeyError, ValueError) as error:
            raise ValueError(f"templates[{i}] = {template!r} cannot be filled with a class name "
                             f"({type(error).__name__}: {error}); use '{{}}' as the placeholder and "
                             "'{{'/'}}' for literal braces") from None
        if _MARK not in filled:
            raise ValueError(f"templates[{i}] = {template!r} has no '{{}}' placeholder for the class name")
    return templates


def _fill(template: Template, classname: str) -> str:
    if isinstance(template, str):
        return template.format(classname, c=classname)
    text = template(classname)
    if not isinstance(text, str):
        raise TypeError(f"the template {template!r} returned a {type(text).__name__} for {classname!r}, not a string")
    return text


def zero_shot_classifier(model, classnames: Sequence[str], templates: Union[Template, Sequence[Template]],
                         batch_size: int = 256, progress: bool = True) -> Tensor:
    """Zero-shot class weights from class names and prompt templates (OpenAI's prompt ensembling).

    Parameters
    ----------
    model : CLIP
        A model from :func:`clip.load`.
    classnames : list of str
        The class names, in class-index order.
    templates : list of (str or callable)
        Prompt templates: strings with a ``{}`` placeholder (``"a photo of a {}."``) or callables
        ``classname -> text``. A single template may be given on its own.
    batch_size : int
        At most this many texts per ``encode_text`` call; texts of consecutive classes share calls.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    mindspore.Tensor
        float32 ``[embed_dim, n_classes]``; column ``i`` is the unit-norm mean of the unit-norm text
        embeddings of class ``i``'s prompts.
    """
    classnames = _check_classnames(classnames)
    templates = _check_templates(templates)
    batch_size = _check_int(batch_size, "batch_size")
    if not callable(getattr(model, "encode_text", None)):
        raise TypeError("model must be a CLIP model from clip.load (it needs .encode_text), "
                        f"got {type(model).__name__}")
    texts = [_fill(template, classname) for classname in classnames for template in templates]  # class-major
    embeddings = _encode_texts(model, texts, batch_size, progress, truncate=False,
                               desc="zero-shot classifier")  # [C * T, D]
    embeddings = _normalise(embeddings).reshape(len(classnames), len(templates), -1)  # [C, T, D]
    weights = _normalise(embeddings.mean(axis=1))  # [C, D]
    return Tensor(np.ascontiguousarray(weights.T, dtype=np.float32))  # [D, C]


def _as_numpy(value, name):
    if isinstance(value, Tensor):
        value = value.asnumpy()
    value = np.asarray(value)
    if not np.issubdtype(value.dtype, np.number) or np.issubdtype(value.dtype, np.complexfloating):
        raise TypeError(f"{name} must hold real numbers, got dtype {value.dtype}")
    return value.astype(np.float32)


def zero_shot_logits(image_features, classifier, logit_scale: float = 100.0, normalize: bool = True) -> np.ndarray:
    """Class logits ``logit_scale * normalised image features @ classifier``.

    Parameters
    ----------
    image_features : numpy.ndarray or mindspore.Tensor
        ``[N, embed_dim]`` (or one vector ``[embed_dim]``), e.g. from ``model.encode_image`` or
        :func:`clip.features.extract_image_features`.
    classifier : numpy.ndarray or mindspore.Tensor
        ``[embed_dim, n_classes]`` from :func:`zero_shot_classifier`.
    logit_scale : float
        The multiplier itself: 100 as in OpenAI's zero-shot notebook, or
        ``model.logit_scale.exp()`` to match the probabilities of ``model(image, text)``.
        Ranking does not depend on it; softmax probabilities do.
    normalize : bool
        L2-normalise the image features first (leave True unless they already are).

    Returns
    -------
    numpy.ndarray
        float32 ``[N, n_classes]``; ``argmax(axis=1)`` is the predicted class.
    """
    features = _as_numpy(image_features, "image_features")
    weights = _as_numpy(classifier, "classifier")
    if features.ndim == 1:
        features = features[None]
    if features.ndim != 2:
        raise ValueError(f"image_features must be [N, embed_dim], got shape {features.shape}")
    if weights.ndim != 2 or weights.shape[0] != features.shape[1]:
        raise ValueError(f"classifier must be [embed_dim, n_classes] with embed_dim = {features.shape[1]} "
                         f"(the image features' width), got shape {weights.shape}")
    scale = float(_as_numpy(logit_scale, "logit_scale"))
    if normalize:
        features = _normalise(features)  # [N, D]
    return (np.float32(scale) * (features @ weights)).astype(np.float32)  # [N, C]


def _softmax(logits):
    logits = logits.astype(np.float64)
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


_ONE_IMAGE = (Image.Image, str, os.PathLike, np.ndarray, Tensor)


class ZeroShotClassifier:
    """A zero-shot image classification pipeline over fixed candidate labels.

    The class weights are computed once, here, with :func:`zero_shot_classifier`. Calling the
    pipeline ranks the labels of each image by ``softmax(model.logit_scale.exp() * cosine)``,
    the probabilities of OpenAI's ``model(image, text)``.

    Parameters
    ----------
    model : CLIP
        A model from :func:`clip.load`.
    preprocess : Callable
        The preprocess returned with it.
    candidate_labels : list of str
        The labels to choose from.
    templates : list of (str or callable)
        Prompt templates (see :func:`zero_shot_classifier`); several are averaged.
    batch_size : int
        Images per ``encode_image`` call.
    progress : bool
        Show a progress bar while the class weights are computed.

    Example
    -------
    >>> classify = ZeroShotClassifier(model, preprocess, ["cat", "dog", "car"])
    >>> classify("cat.jpg", top_k=2)
    [{'score': 0.95, 'label': 'cat'}, {'score': 0.04, 'label': 'dog'}]
    >>> classify(["cat.jpg", "car.png"])   # one list per image
    [[...], [...]]
    """

    def __init__(self, model, preprocess, candidate_labels: Sequence[str],
                 templates: Union[Template, Sequence[Template]] = ("a photo of a {}.",), batch_size: int = 32,
                 progress: bool = True):
        if not callable(getattr(model, "encode_image", None)) or not hasattr(model, "logit_scale"):
            raise TypeError(f"model must be a CLIP model from clip.load, got {type(model).__name__}")
        if not callable(preprocess):
            raise TypeError("preprocess must be callable (the preprocess from clip.load), "
                            f"got {type(preprocess).__name__}")
        self.model = model
        self.preprocess = preprocess
        self.batch_size = _check_int(batch_size, "batch_size")
        self.labels = _check_classnames(candidate_labels, "candidate_labels")
        self.templates = _check_templates(templates)
        self.weights = zero_shot_classifier(model, self.labels, self.templates, progress=progress)  # [D, C]
        self._weights = self.weights.asnumpy()
        self.logit_scale = float(np.exp(_as_numpy(model.logit_scale, "model.logit_scale")))

    def __repr__(self):
        return (f"{type(self).__name__}({len(self.labels)} labels, {len(self.templates)} templates, "
                f"logit_scale={self.logit_scale:.4g})")

    @staticmethod
    def _as_batch(images):
        """``(list of images, whether one image was given)``."""
        if isinstance(images, _ONE_IMAGE):
            if isinstance(images, (np.ndarray, Tensor)) and images.ndim == 4:
                raise TypeError(f"got a 4-D array of shape {tuple(images.shape)}; pass a list of images "
                                "(each a PIL image, a path or an HWC uint8 array)")
            return [images], True
        if isinstance(images, (list, tuple)):
            if not images:
                raise ValueError("images is an empty list")
            for i, image in enumerate(images):
                if not isinstance(image, _ONE_IMAGE):
                    raise TypeError(f"images[{i}] is a {type(image).__name__}; each image must be a PIL image, "
                                    "a file path or an HWC uint8 numpy array")
            return list(images), False
        raise TypeError(f"images must be a PIL image, a file path, an HWC uint8 numpy array, or a list of "
                        f"them, got {type(images).__name__}")

    def _pixels(self, image, index):
        """Preprocessed pixels ``[3, R, R]`` of one image."""
        if isinstance(image, (str, os.PathLike)):
            try:
                image = open_image(image)
            except Exception as error:
                message = f"images[{index}]: cannot read {os.fspath(image)!r}: {error}"
                try:  # keep the error's type (FileNotFoundError, PIL.UnidentifiedImageError...)
                    wrapped = type(error)(message)
                except Exception:  # noqa: BLE001 - a type that takes other arguments
                    wrapped = RuntimeError(message)
                raise wrapped from error
        return to_pixels(self.preprocess, image)

    def logits(self, images) -> np.ndarray:
        """``model.logit_scale.exp() * cosine`` of each image with each label: float32 ``[N, n_labels]``
        (``N = 1`` for a single image)."""
        images, _ = self._as_batch(images)
        encoder = _BatchEncoder(self.model, self.batch_size)
        for i, image in enumerate(images):
            encoder.add(self._pixels(image, i)[None])  # [1, 3, R, R]
        features = encoder.finish(_embed_dim(self.model))  # [N, D]
        return zero_shot_logits(features, self._weights, self.logit_scale)  # [N, C]

    def __call__(self, images, top_k: Optional[int] = None):
        """Rank the candidate labels for one image or a list of images.

        Parameters
        ----------
        images : PIL image, path, HWC uint8 numpy array, or a list of them
        top_k : int, optional
            Keep the ``top_k`` best labels (all when None or larger than the number of labels).

        Returns
        -------
        For one image, a list of ``{"score": float, "label": str}`` sorted by score, best first
        (the scores of all labels sum to 1). For a list of images, one such list per image, so
        ``classifier([image])`` is ``[[...]]`` (the Hugging Face pipeline's convention).
        """
        if top_k is not None:
            top_k = _check_int(top_k, "top_k")
        batch, single = self._as_batch(images)
        probs = _softmax(self.logits(batch))  # [N, C]
        results = []
        for row in probs:
            order = np.argsort(-row, kind="stable")[:top_k]  # ties keep the labels' order
            results.append([{"score": float(row[j]), "label": self.labels[j]} for j in order])
        return results[0] if single else results
