"""Synthetic image-caption data for the training tests: coloured shapes on a plain background.

``shape_samples(n, seed)`` draws ``n`` pictures of one shape each (``SHAPES`` x ``COLOURS``), with a
random size, position and background, captioned ``"a red circle"``; ``write_csv`` /
``write_flickr`` / ``write_image_folder`` store them in the three layouts of
``clip.training.data``.
"""
import os

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["SHAPES", "COLOURS", "CLASSES", "draw", "shape_samples", "write_csv", "write_flickr", "write_image_folder"]

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (40, 60, 220)}
CLASSES = [f"{c} {s}" for c in COLOURS for s in SHAPES]  # 9 classes: "red circle", ...


def draw(colour, shape, rng, size=64):
    """A ``size x size`` RGB picture of one ``colour`` ``shape`` on a random grey background."""
    grey = int(rng.integers(90, 200))
    image = Image.new("RGB", (size, size), (grey, grey, grey))
    d = ImageDraw.Draw(image)
    extent = int(rng.integers(size * 6 // 10, size * 9 // 10))
    x0, y0 = (int(v) for v in rng.integers(2, size - extent - 2, 2))
    box = (x0, y0, x0 + extent, y0 + extent)
    fill = tuple(int(np.clip(v + rng.integers(-25, 26), 0, 255)) for v in COLOURS[colour])
    if shape == "circle":
        d.ellipse(box, fill=fill)
    elif shape == "square":
        d.rectangle(box, fill=fill)
    else:
        d.polygon([(x0, y0 + extent), (x0 + extent, y0 + extent), (x0 + extent // 2, y0)], fill=fill)
    return image


def shape_samples(n, seed=0, size=64):
    """``[(image, class index, caption)]`` of ``n`` random pictures."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        label = int(rng.integers(len(CLASSES)))
        colour, shape = CLASSES[label].split()
        out.append((draw(colour, shape, rng, size), label, f"a {colour} {shape}"))
    return out


def write_csv(folder, samples, separator="\t", image_key="filepath", caption_key="title", name="data.csv"):
    """Images under ``folder/images/`` and a CSV/TSV listing them with paths relative to it."""
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    lines = [f"{image_key}{separator}{caption_key}"]
    for i, (image, _, caption) in enumerate(samples):
        rel = f"images/{name}.{i:04d}.png"
        image.save(os.path.join(folder, rel))
        lines.append(f"{rel}{separator}{caption}")
    path = os.path.join(folder, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def write_flickr(folder, samples, captions_per_image=2):
    """``folder/Flickr8k.token.txt`` (``captions_per_image`` numbered captions per image, varied
    wording) and the pictures in ``folder/Flicker8k_Dataset/``; returns the token file."""
    images = os.path.join(folder, "Flicker8k_Dataset")
    os.makedirs(images, exist_ok=True)
    lines = []
    for i, (image, _, caption) in enumerate(samples):
        name = f"{i:04d}_shape.jpg"
        image.save(os.path.join(images, name), quality=95)
        for k in range(captions_per_image):
            lines.append(f"{name}#{k}\t{caption if k == 0 else caption.replace('a ', 'one ', 1)}")
    path = os.path.join(folder, "Flickr8k.token.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def write_image_folder(folder, samples):
    """``folder/<red_circle>/<i>.png``: one sub-folder per class."""
    for i, (image, label, _) in enumerate(samples):
        sub = os.path.join(folder, CLASSES[label].replace(" ", "_"))
        os.makedirs(sub, exist_ok=True)
        image.save(os.path.join(sub, f"{i:04d}.png"))
    return folder
