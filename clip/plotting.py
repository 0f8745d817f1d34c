"""Figures for exploring CLIP: the text-image similarity heatmap and zero-shot top-k charts.

matplotlib is an optional dependency of this package (``pip install matplotlib``, or the
``clip[plot]`` extra); it is imported when a function of this module is first called, so
``import clip.plotting`` works without it.

::

    import clip
    from clip.plotting import plot_similarity, plot_topk

    image_features /= np.linalg.norm(image_features, axis=-1, keepdims=True)
    text_features /= np.linalg.norm(text_features, axis=-1, keepdims=True)
    fig = plot_similarity(text_features @ image_features.T, images, texts)   # [T, I]
    fig.savefig("similarity.png")

    probs = softmax(100 * image_features @ classifier)                      # [N, C]
    fig = plot_topk(probs, classnames, images, k=5)

Images may be PIL images, uint8 ``[H, W, 3]`` arrays, or the ``[3, R, R]`` output of CLIP's
``preprocess`` (numpy or ``mindspore.Tensor``), which is un-normalised with CLIP's mean and
standard deviation for display.

Both functions create their figure with ``matplotlib.pyplot`` (so ``plt.show()`` and Jupyter's
inline display work as for any figure; close it with ``plt.close(fig)`` in long scripts), or
draw into the ``ax``/``fig`` you pass. When no display is available and no backend was chosen
(no ``MPLBACKEND``, no backend in a matplotlibrc, pyplot not yet imported), the non-interactive
``Agg`` backend is selected.
"""
import math
import os
import sys
import textwrap

import numpy as np

from .transform import MEAN, STD

__all__ = ["plot_similarity", "plot_topk", "image_for_display", "read_metrics", "plot_training_curves"]

_INSTALL_HINT = ("clip.plotting needs matplotlib, which is an optional dependency of clip: "
                 "install it with `pip install matplotlib` (or `pip install clip[plot]`)")


def _backend_left_to_matplotlib(matplotlib):
    """True when no backend was chosen (neither by ``matplotlib.use`` nor in a matplotlibrc)."""
    getter = getattr(matplotlib.rcParams, "_get_backend_or_none", None)  # matplotlib >= 3.7
    return getter is not None and getter() is None


def _pyplot():
    """``matplotlib.pyplot``, imported on first use, with a clear error when it is missing."""
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(_INSTALL_HINT) from error
    if ("matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND")
            and _backend_left_to_matplotlib(matplotlib) and sys.platform.startswith("linux")
            and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY")):
        matplotlib.use("Agg")  # headless and nothing chosen: never try a GUI backend
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(_INSTALL_HINT) from error
    return plt


def _as_array(value, name):
    if hasattr(value, "asnumpy"):  # mindspore.Tensor
        value = value.asnumpy()
    try:
        array = np.asarray(value)
    except Exception as error:  # noqa: BLE001 - anything that is not array-like
        raise TypeError(f"{name} must be a numpy array or a mindspore.Tensor, got {type(value).__name__}") from error
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"{name} must hold numbers, got dtype {array.dtype}")
    return array


def image_for_display(image):
    """An image as a ``[H, W, 3]`` (or ``[H, W]``) array that ``matplotlib.imshow`` shows as intended.

    Accepts a PIL image (converted to RGB), a uint8 ``[H, W]``/``[H, W, 3|4]`` array, a float
    ``[H, W, 3]`` array in ``[0, 1]``, or CLIP's preprocessed pixels: a float ``[3, R, R]``
    (or ``[1, 3, R, R]``) array or ``mindspore.Tensor``, normalised with CLIP's mean and
    standard deviation, which are undone here (values are clipped to ``[0, 1]``).
    """
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency of clip
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = _as_array(image, "image")
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.dtype == np.uint8:
        if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4)):
            return array
    elif array.ndim == 3 and array.shape[0] == 3 and array.shape[2] != 3:  # preprocessed [3, R, R]
        mean = np.asarray(MEAN, dtype=np.float32).reshape(3, 1, 1)
        std = np.asarray(STD, dtype=np.float32).reshape(3, 1, 1)
        return np.clip(array.astype(np.float32) * std + mean, 0.0, 1.0).transpose(1, 2, 0)
    elif array.ndim == 3 and array.shape[2] == 3:  # float HWC in [0, 1]
        return np.clip(array.astype(np.float32), 0.0, 1.0)
    raise ValueError(f"cannot display an image array of shape {array.shape} and dtype {array.dtype}: expected a "
                     "PIL image, a uint8 [H, W, 3] array, a float [H, W, 3] array in [0, 1] or the [3, R, R] "
                     "output of CLIP's preprocess")


def _check_texts(texts, name):
    if isinstance(texts, str):
        raise TypeError(f"{name} must be a list of strings, got the single string {texts!r}")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{name}[{i}] is a {type(text).__name__}, not a string")
    return texts


def plot_similarity(similarity, images, texts, ax=None, vmin=0.1, vmax=0.3,
                    title="Cosine similarity between text and image features", cmap="viridis",
                    fmt="{:.2f}", fontsize=None):
    """Heatmap of text-image similarities, with the images above their columns.

    Parameters
    ----------
    similarity : array-like or mindspore.Tensor, ``[T, I]``
        Row ``t``, column ``i``: the similarity of ``texts[t]`` and ``images[i]``, typically
        the cosine similarity ``normalised text features @ normalised image features.T``.
    images : list of ``I`` images, or None
        Drawn above the columns; see :func:`image_for_display` for the accepted kinds
        (preprocessed ``[3, R, R]`` pixels are un-normalised). ``None`` draws no images.
    texts : list of ``T`` strings
        The row labels.
    ax : matplotlib Axes, optional
        Draw into this axes; by default a new figure is created.
    vmin, vmax : float
        The colour range (values outside it get the end colours). CLIP's cosine similarities
        between matching texts and images are mostly within 0.1 to 0.3.
    title : str or None
        The axes title.
    cmap : str or Colormap
        The heatmap's colour map.
    fmt : str
        Format of the value written in each cell.
    fontsize : float, optional
        Size of the cell values (default: chosen from the number of columns).

    Returns
    -------
    matplotlib.figure.Figure
        The figure (``ax.figure`` when ``ax`` was given). Its heatmap axes holds one text
        artist per cell, at ``(column, row)``, whose text is ``fmt.format(similarity[row, col])``.
    """
    values = _as_array(similarity, "similarity").astype(np.float64)
    if values.ndim != 2:
        raise ValueError(f"similarity must be a [texts, images] matrix, got shape {values.shape}")
    n_texts, n_images = values.shape
    texts = _check_texts(texts, "texts")
    if len(texts) != n_texts:
        raise ValueError(f"similarity has {n_texts} rows but {len(texts)} texts were given (rows are texts)")
    if images is not None:
        images = list(images)
        if len(images) != n_images:
            raise ValueError(f"similarity has {n_images} columns but {len(images)} images were given "
                             "(columns are images)")
        pictures = [image_for_display(image) for image in images]
    if not vmax > vmin:
        raise ValueError(f"vmax ({vmax}) must be greater than vmin ({vmin})")

    plt = _pyplot()
    if ax is None:
        width = max(5.0, 1.1 * n_images + 0.09 * max((len(t) for t in texts), default=0) + 1.5)
        height = max(3.0, 0.55 * n_texts + (1.6 if images is not None else 0.6) + 0.8)
        fig = plt.figure(figsize=(width, height))
        ax = fig.add_subplot()
    else:
        fig = ax.figure

    mappable = ax.imshow(values, vmin=vmin, vmax=vmax, cmap=cmap, interpolation="nearest")
    norm, colormap = mappable.norm, mappable.get_cmap()
    size = fontsize if fontsize is not None else (11 if n_images <= 8 else 8)
    for row in range(n_texts):
        for col in range(n_images):
            value = values[row, col]
            red, green, blue, _ = colormap(norm(value))
            light = 0.299 * red + 0.587 * green + 0.114 * blue > 0.5  # dark text on light cells
            ax.text(col, row, fmt.format(value), ha="center", va="center", fontsize=size,
                    color="black" if light else "white")

    top = -0.5
    if images is not None:
        for col, picture in enumerate(pictures):
            # a 0.9 x 0.9 box above each column (y grows downwards, as imshow draws), the picture
            # scaled into it with its aspect ratio kept
            height, width = picture.shape[:2]
            half_w, half_h = 0.45 * width / max(height, width), 0.45 * height / max(height, width)
            ax.imshow(picture, extent=(col - half_w, col + half_w, -1.05 + half_h, -1.05 - half_h),
                      interpolation="antialiased", cmap="gray" if picture.ndim == 2 else None)
        top = -1.6
    ax.set_xlim(-0.5, n_images - 0.5)
    ax.set_ylim(n_texts - 0.5, top)
    ax.set_yticks(range(n_texts), texts, fontsize=11)
    ax.set_xticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=13)
    return fig


def plot_topk(probs, classnames, images=None, k=5, columns=2, titles=None, fig=None):
    """For each image, the image and a horizontal bar chart of its ``k`` best labels.

    Parameters
    ----------
    probs : array-like or mindspore.Tensor, ``[N, C]``
        Scores of each image for each class, e.g. zero-shot softmax probabilities. Labels
        are ranked by score, ties by class index (lower first).
    classnames : list of ``C`` strings
    images : list of ``N`` images, optional
        Shown left of their charts (see :func:`image_for_display`); without them only the
        charts are drawn.
    k : int
        How many labels to show per image (clamped to ``C``).
    columns : int
        Images (image + chart pairs) per row of the figure.
    titles : list of ``N`` strings, optional
        A title per image, e.g. its true label or description.
    fig : matplotlib Figure, optional
        Draw into this (empty) figure instead of a new one.

    Returns
    -------
    matplotlib.figure.Figure
        The chart of image ``n`` is the axes with ``ax.get_label() == f"topk-{n}"`` (its image,
        if any, ``f"image-{n}"``); its y tick labels are the top labels, best first, and its
        bars' widths their scores.
    """
    scores = _as_array(probs, "probs").astype(np.float64)
    if scores.ndim == 1:
        scores = scores[None]
    if scores.ndim != 2:
        raise ValueError(f"probs must be [images, classes], got shape {scores.shape}")
    n, num_classes = scores.shape
    if n == 0:
        raise ValueError("probs has no rows")
    classnames = _check_texts(classnames, "classnames")
    if len(classnames) != num_classes:
        raise ValueError(f"probs has {num_classes} columns but {len(classnames)} classnames were given")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if isinstance(columns, bool) or not isinstance(columns, (int, np.integer)) or columns < 1:
        raise ValueError(f"columns must be a positive integer, got {columns!r}")
    k = min(int(k), num_classes)
    if images is not None:
        images = list(images)
        if len(images) != n:
            raise ValueError(f"probs has {n} rows but {len(images)} images were given")
        pictures = [image_for_display(image) for image in images]
    if titles is not None:
        titles = _check_texts(titles, "titles")
        if len(titles) != n:
            raise ValueError(f"probs has {n} rows but {len(titles)} titles were given")

    plt = _pyplot()
    columns = min(int(columns), n)
    rows = math.ceil(n / columns)
    per_item = 2 if images is not None else 1
    longest = max(len(classnames[j]) for j in range(num_classes))
    chart_width = 2.6 + 0.07 * min(longest, 40)
    if fig is None:
        fig = plt.figure(figsize=(columns * (chart_width + (2.2 if images is not None else 0)) + 0.4,
                                  rows * max(2.2, 0.38 * k + 0.9)), layout="constrained")
    ratios = ([1.0, chart_width / 2.2] if images is not None else [1.0]) * columns
    grid = fig.add_gridspec(rows, per_item * columns, width_ratios=ratios)

    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # [N, k]
    for index in range(n):
        row, slot = divmod(index, columns)
        if images is not None:
            image_ax = fig.add_subplot(grid[row, per_item * slot], label=f"image-{index}")
            picture = pictures[index]
            image_ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
            image_ax.set_axis_off()
            if titles is not None:
                image_ax.set_title(textwrap.fill(titles[index], 26), fontsize=10)
        chart = fig.add_subplot(grid[row, per_item * slot + per_item - 1], label=f"topk-{index}")
        top = order[index]
        values = scores[index, top]
        positions = np.arange(k)
        chart.barh(positions, values, color="tab:blue" if k == 1 else
                   ["tab:orange"] + ["tab:blue"] * (k - 1))
        chart.set_yticks(positions, [classnames[j] for j in top], fontsize=9)
        chart.invert_yaxis()  # best label on top
        high = float(values.max()) if values.size else 0.0
        low = min(0.0, float(values.min()))
        chart.set_xlim(low, high * 1.3 if high > 0 else 1.0)
        for position, value in zip(positions, values):
            chart.text(value, position, f" {value:.3f}", va="center", ha="left", fontsize=8)
        chart.tick_params(axis="x", labelsize=8)
        if titles is not None and images is None:
            chart.set_title(textwrap.fill(titles[index], 40), fontsize=10)
    return fig


def read_metrics(source):
    """The records of a training run's ``metrics.jsonl`` (a path, or its folder), or ``source`` itself
    if it is already a list of dicts."""
    if isinstance(source, (list, tuple)):
        return list(source)
    path = os.fspath(source)
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.jsonl")
    import json

    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_training_curves(metrics, keys=("loss", "lr", "logit_scale"), eval_keys=None, fig=None, columns=3):
    """Curves of a training run against the step: one panel per key.

    Parameters
    ----------
    metrics : str or list of dict
        ``metrics.jsonl`` written by ``python -m clip train`` / :func:`clip.training.run.train` (its
        path or folder), or its records (``{"kind": "train"|"eval", "step": ..., <values>}``).
    keys : training values to draw (records of kind ``"train"``).
    eval_keys : evaluation values to draw (records of kind ``"eval"``, with markers); default every
        zero-shot accuracy and R@1 found.
    fig : a matplotlib figure to draw into (default: a new one).

    Returns the figure. A key that no record has is an error naming the keys that exist.
    """
    records = read_metrics(metrics)
    train = [r for r in records if r.get("kind", "train") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    if eval_keys is None:
        eval_keys = sorted({k for r in evals for k in r if k.startswith("zeroshot_top") or k.endswith("R@1")})
    panels = [(k, train, "-") for k in keys] + [(k, evals, "o-") for k in eval_keys]
    if not panels:
        raise ValueError("nothing to plot: no keys given")
    for key, rows, _ in panels:
        if not any(key in r for r in rows):
            known = sorted({k for r in records for k in r if k not in ("kind", "step", "epoch")})
            raise ValueError(f"no record has {key!r}; the metrics have: {', '.join(known) or 'nothing'}")
    plt = _pyplot()
    columns = max(1, min(columns, len(panels)))
    rows_n = math.ceil(len(panels) / columns)
    if fig is None:
        fig = plt.figure(figsize=(4.2 * columns, 3.0 * rows_n))
    for i, (key, rows, style) in enumerate(panels):
        ax = fig.add_subplot(rows_n, columns, i + 1)
        points = [(r["step"], r[key]) for r in rows if key in r]
        ax.plot([p[0] for p in points], [p[1] for p in points], style, markersize=3)
        ax.set_title(key, fontsize=11)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
