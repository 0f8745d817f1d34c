"""Evaluation during training: zero-shot accuracy and image<->text retrieval on a validation split.

:class:`Evaluator` preprocesses the validation images once (OpenAI's ``preprocess``), then, each
time it is called with the model being trained, encodes them and the captions and returns::

    {"zeroshot_top1", "zeroshot_top5"}                        (labelled data: ImageFolder)
    {"image_to_text_R@1", ..._R@5, ..._R@10, "text_to_image_R@1", ...,
     "image_to_text_mean_rank", "image_to_text_median_rank",
     "text_to_image_mean_rank", "text_to_image_median_rank"}  (every caption of every image)

Ranks are 1-based (rank 1 = the right item first); for an image with several captions, its rank
is that of its best-placed caption, as in ``clip.evaluation.retrieval_recall``.
"""
import numpy as np
from mindspore import Tensor

from ..evaluation import _label_ranks, retrieval_recall, topk_accuracy
from ..zeroshot import zero_shot_classifier
from .data import CaptionDataset, CaptionedImages
from .trainer import normalize

__all__ = ["Evaluator", "encode_images", "encode_tokens", "retrieval_metrics", "zero_shot_metrics"]


def _batched(function, array, batch_size):
    outputs = [normalize(function(Tensor(array[i:i + batch_size]))).asnumpy()
               for i in range(0, len(array), batch_size)]
    return np.concatenate(outputs).astype(np.float32)


def encode_images(model, pixels, batch_size: int = 64) -> np.ndarray:
    """L2-normalised image features ``[N, D]`` of preprocessed images ``[N, 3, R, R]``."""
    return _batched(model.encode_image, pixels, batch_size)


def encode_tokens(model, tokens, batch_size: int = 256) -> np.ndarray:
    """L2-normalised text features ``[N, D]`` of token ids ``[N, L]``."""
    return _batched(model.encode_text, tokens, batch_size)


def retrieval_metrics(image_features, text_features, text_to_image, ks=(1, 5, 10)) -> dict:
    """Recall@k both ways (``clip.evaluation.retrieval_recall``) and the mean and median 1-based
    rank of the right answer both ways. ``image_features [Ni, D]``, ``text_features [Nt, D]``,
    ``text_to_image [Nt]``."""
    text_to_image = np.asarray(text_to_image, np.int64)
    metrics = retrieval_recall(image_features, text_features, text_to_image, ks=ks)
    img = image_features / np.linalg.norm(image_features, axis=1, keepdims=True)
    txt = text_features / np.linalg.norm(text_features, axis=1, keepdims=True)
    similarity = txt @ img.T  # [Nt, Ni]
    t2i = _label_ranks(similarity, text_to_image) + 1  # [Nt]
    i2t = []
    for i in range(img.shape[0]):
        mine = np.nonzero(text_to_image == i)[0]
        if mine.size:
            scores = similarity[:, i]  # [Nt]: every caption's score for image i
            best = mine[np.argmax(scores[mine])]
            i2t.append(int(_label_ranks(scores[None, :], np.array([best]))[0]) + 1)
    for name, ranks in (("image_to_text", np.asarray(i2t)), ("text_to_image", t2i)):
        metrics[f"{name}_mean_rank"] = float(np.mean(ranks))
        metrics[f"{name}_median_rank"] = float(np.median(ranks))
    return metrics


def zero_shot_metrics(model, image_features, labels, classnames, templates, ks=(1, 5)) -> dict:
    """``{"zeroshot_top1", "zeroshot_top5"}`` of the class-name prompts on normalised image features."""
    classifier = zero_shot_classifier(model, classnames, templates, progress=False).asnumpy()  # [D, C]
    accuracy = topk_accuracy(image_features @ classifier, labels, ks=ks)
    return {f"zeroshot_top{k}": value for k, value in accuracy.items()}


class Evaluator:
    """Zero-shot and retrieval metrics of a model on a validation set.

    Args:
        data: the validation pairs (:class:`~clip.training.data.CaptionedImages`).
        resolution, context_length: the model's.
        templates: prompt templates for zero-shot (used when ``data`` has labels).
        classnames: class names for zero-shot (default ``data.classnames``).
        retrieval: compute retrieval metrics (every caption of every image).
        num_workers: decoding threads.
    """

    def __init__(self, data: CaptionedImages, resolution: int, context_length: int = 77,
                 templates=("a photo of a {}.",), classnames=None, retrieval: bool = True, num_workers: int = 2,
                 batch_size: int = 64):
        self.dataset = CaptionDataset(data, resolution, context_length, train=False, num_workers=num_workers)
        self.pixels, kept = self.dataset.all_images()  # [M, 3, R, R]
        if not len(kept):
            raise ValueError(f"{data.source}: none of the {len(data)} validation images could be read")
        self.skipped = len(data) - len(kept)
        self.templates = list(templates)
        self.classnames = classnames if classnames is not None else data.classnames
        self.labels = None if data.labels is None else np.asarray(data.labels)[kept]
        self.batch_size = batch_size
        self.retrieval = retrieval
        rows = self.dataset._caption_rows
        self.caption_rows = np.concatenate([np.arange(*rows[i]) for i in kept])  # captions of kept images
        self.text_to_image = np.concatenate([np.full(rows[i][1] - rows[i][0], j) for j, i in enumerate(kept)])

    def __call__(self, model) -> dict:
        """The metrics of ``model`` (left in inference mode)."""
        model.set_train(False)
        image_features = encode_images(model, self.pixels, self.batch_size)
        metrics = {}
        if self.labels is not None and self.classnames:
            metrics.update(zero_shot_metrics(model, image_features, self.labels, self.classnames, self.templates))
        if self.retrieval:
            text_features = encode_tokens(model, self.dataset.tokens[self.caption_rows])
            metrics.update(retrieval_metrics(image_features, text_features, self.text_to_image))
        return metrics
