#!/usr/bin/env python
"""Draw the overview diagram of CLIP that ships with this repository (CLIP.png).

The picture has three panels:

1. contrastive pre-training: a batch of N (image, text) pairs is encoded into
   image features I_1..I_N and text features T_1..T_N, and the N x N matrix of
   similarities I_i . T_j is trained so that the diagonal (the true pairs) wins;
2. building a zero-shot classifier: every class name is put into a prompt such
   as "a photo of a {object}." and encoded by the text encoder;
3. zero-shot prediction: one image is encoded to I_1, compared with every T_j,
   and the class with the largest dot product is the prediction.

Only Pillow and NumPy are used, no network access is needed, and the font is
Pillow's built-in one, so the output is the same on every machine with the
same Pillow version.  The drawing is done at twice the target resolution and
then downsampled for smooth edges.

Usage::

    python tools/make_diagram.py [--output PATH]

By default the image is written to ``CLIP.png`` at the root of the repository.
The file is written atomically (temporary file in the same folder, then
``os.replace``).
"""

import argparse
import os
import tempfile

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 1600, 700
SCALE = 2  # supersampling factor

# Colours -------------------------------------------------------------------
WHITE = (255, 255, 255)
INK = (38, 42, 52)
MUTED = (110, 116, 128)
PANEL_BG = (248, 249, 251)
PANEL_EDGE = (214, 218, 226)

TXT_FILL = (222, 234, 255)  # text side: blue
TXT_EDGE = (46, 104, 204)
IMG_FILL = (255, 233, 208)  # image side: orange
IMG_EDGE = (214, 118, 18)
CELL_FILL = (236, 238, 242)  # non-matching pairs
CELL_EDGE = (200, 204, 212)
MATCH_FILL = (46, 160, 90)  # matching pair / best match: green
MATCH_EDGE = (26, 118, 62)
PROMPT_FILL = (255, 250, 222)
PROMPT_EDGE = (196, 160, 30)


# Fonts ---------------------------------------------------------------------
def _font(size):
    """Pillow's built-in font; scalable (FreeType) when this Pillow allows it."""
    try:
        return ImageFont.load_default(size=size * SCALE)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font only
        return ImageFont.load_default()


FONTS = {}


def font(size):
    if size not in FONTS:
        FONTS[size] = _font(size)
    return FONTS[size]


# Drawing helpers (all coordinates are in output pixels, scaled here) -------
def S(*values):
    return [v * SCALE for v in values]


class Canvas:
    def __init__(self):
        self.img = Image.new("RGB", (WIDTH * SCALE, HEIGHT * SCALE), WHITE)
        self.draw = ImageDraw.Draw(self.img)

    # basic shapes
    def box(self, x0, y0, x1, y1, fill, outline, width=2, radius=10):
        self.draw.rounded_rectangle(S(x0, y0, x1, y1), radius=radius * SCALE,
                                    fill=fill, outline=outline, width=width * SCALE)

    def rect(self, x0, y0, x1, y1, fill, outline=None, width=1):
        self.draw.rectangle(S(x0, y0, x1, y1), fill=fill, outline=outline,
                            width=width * SCALE)

    def line(self, pts, fill=INK, width=2):
        self.draw.line([tuple(S(*p)) for p in pts], fill=fill, width=width * SCALE,
                       joint="curve")

    def arrow(self, pts, fill=INK, width=2, head=9):
        """Polyline ending in a filled triangular arrow head."""
        (xa, ya), (xb, yb) = pts[-2], pts[-1]
        d = np.array([xb - xa, yb - ya], dtype=float)
        d /= np.linalg.norm(d)
        n = np.array([-d[1], d[0]])
        tip = np.array([xb, yb], dtype=float)
        base = tip - d * head
        self.line(list(pts[:-1]) + [tuple(base + d * 1.0)], fill=fill, width=width)
        tri = [tip, base + n * head * 0.55, base - n * head * 0.55]
        self.draw.polygon([tuple(S(*p)) for p in tri], fill=fill)

    # text
    def text(self, x, y, s, size=16, fill=INK, anchor="mm", bold=False):
        self.draw.text(tuple(S(x, y)), s, font=font(size), fill=fill, anchor=anchor,
                       stroke_width=SCALE // 2 if bold else 0,
                       stroke_fill=fill if bold else None)

    def rich_width(self, parts, size):
        w = 0
        for s, sub in parts:
            f = font(int(size * 0.68)) if sub else font(size)
            w += self.draw.textlength(s, font=f) / SCALE
        return w

    def rich(self, cx, cy, label, size=16, fill=INK, bold=False):
        """Centered label where '_x' renders x as a subscript ('I_1·T_N')."""
        parts = _parse_subscripts(label)
        x = cx - self.rich_width(parts, size) / 2
        for s, sub in parts:
            f = font(int(size * 0.68)) if sub else font(size)
            dy = size * 0.32 if sub else 0
            self.draw.text(tuple(S(x, cy + dy)), s, font=f, fill=fill, anchor="lm",
                           stroke_width=SCALE // 2 if bold else 0,
                           stroke_fill=fill if bold else None)
            x += self.draw.textlength(s, font=f) / SCALE

    def vtext(self, cx, cy, s, size=18, fill=INK, bold=False):
        """Text rotated by 90 degrees (reading bottom to top), centered."""
        f = font(size)
        l, t, r, b = self.draw.textbbox((0, 0), s, font=f)
        pad = 4 * SCALE
        tile = Image.new("L", (r - l + 2 * pad, b - t + 2 * pad), 0)
        ImageDraw.Draw(tile).text((pad - l, pad - t), s, font=f, fill=255,
                                  stroke_width=SCALE // 2 if bold else 0, stroke_fill=255)
        tile = tile.rotate(90, expand=True)
        colour = Image.new("RGB", tile.size, fill)
        x0 = int(cx * SCALE - tile.size[0] / 2)
        y0 = int(cy * SCALE - tile.size[1] / 2)
        self.img.paste(colour, (x0, y0), tile)


def _parse_subscripts(label):
    parts, i = [], 0
    while i < len(label):
        if label[i] == "_" and i + 1 < len(label):
            parts.append((label[i + 1], True))
            i += 2
        else:
            if parts and not parts[-1][1]:
                parts[-1] = (parts[-1][0] + label[i], False)
            else:
                parts.append((label[i], False))
            i += 1
    return parts


# Small pictures ------------------------------------------------------------
def photo(c, x0, y0, x1, y1, sky, ground, sun=True, shadow=True):
    """A tiny landscape 'photo' with a white frame."""
    if shadow:
        c.rect(x0 + 3, y0 + 3, x1 + 3, y1 + 3, fill=(210, 212, 218))
    c.rect(x0, y0, x1, y1, fill=WHITE, outline=(170, 174, 184), width=1)
    m = 4
    c.rect(x0 + m, y0 + m, x1 - m, y1 - m, fill=sky)
    w, h = x1 - x0 - 2 * m, y1 - y0 - 2 * m
    bx, by = x0 + m, y0 + m
    hills = [(bx, by + h), (bx, by + 0.62 * h), (bx + 0.3 * w, by + 0.38 * h),
             (bx + 0.55 * w, by + 0.66 * h), (bx + 0.75 * w, by + 0.5 * h),
             (bx + w, by + 0.7 * h), (bx + w, by + h)]
    c.draw.polygon([tuple(S(*p)) for p in hills], fill=ground)
    if sun:
        r = 0.11 * h
        cx, cy = bx + 0.78 * w, by + 0.26 * h
        c.draw.ellipse(S(cx - r, cy - r, cx + r, cy + r), fill=(255, 204, 64))


def dog(c, cx, cy, s=1.0):
    """A simple cartoon dog head centred on (cx, cy)."""
    fur, dark, ear = (196, 140, 84), (60, 44, 36), (128, 86, 50)

    def ell(x0, y0, x1, y1, fill):
        c.draw.ellipse(S(cx + x0 * s, cy + y0 * s, cx + x1 * s, cy + y1 * s), fill=fill)

    ell(-52, -38, -22, 30, ear)  # ears
    ell(22, -38, 52, 30, ear)
    ell(-38, -44, 38, 40, fur)  # head
    ell(-22, 6, 22, 42, (236, 214, 184))  # muzzle
    ell(-19, -16, -9, -4, dark)  # eyes
    ell(9, -16, 19, -4, dark)
    ell(-9, 8, 9, 20, dark)  # nose
    c.line([(cx, cy + 20 * s), (cx, cy + 28 * s)], fill=dark, width=2)
    c.line([(cx - 8 * s, cy + 32 * s), (cx, cy + 28 * s), (cx + 8 * s, cy + 32 * s)],
           fill=dark, width=2)


def panel(c, x0, x1, title):
    c.box(x0, 14, x1, HEIGHT - 14, fill=PANEL_BG, outline=PANEL_EDGE, width=1, radius=16)
    c.text(x0 + 20, 44, title, size=21, anchor="lm", bold=True)


def vector_cell(c, x0, y0, x1, y1, label, fill, edge, size=17, text_fill=INK, bold=False):
    c.rect(x0, y0, x1, y1, fill=fill, outline=edge, width=2)
    c.rich((x0 + x1) / 2, (y0 + y1) / 2, label, size=size, fill=text_fill, bold=bold)


def ellipsis_cell(c, x0, y0, x1, y1):
    c.text((x0 + x1) / 2, (y0 + y1) / 2 - 4, "...", size=20, fill=MUTED)


# Panel 1: contrastive pre-training -----------------------------------------
def panel_pretraining(c):
    x0, x1 = 16, 624
    panel(c, x0, x1, "(1) Contrastive pre-training")

    idx = ["1", "2", "3", None, "N"]  # None marks an ellipsis row/column
    cell, gap_cell = 64, 30
    mx, my = 310, 262  # top-left corner of the similarity matrix

    def spans(start):
        out, pos = [], start
        for i in idx:
            w = gap_cell if i is None else cell
            out.append((pos, pos + w))
            pos += w
        return out

    cols, rows = spans(mx), spans(my)
    mat_x1, mat_y1 = cols[-1][1], rows[-1][1]

    # text input and text encoder (top)
    tx0, tx1 = mx, mat_x1
    for k, (dx, dy) in enumerate([(8, -8), (4, -4), (0, 0)]):
        c.box(tx0 + 6 + dx, 74 + dy, tx1 - 14 + dx, 108 + dy, fill=WHITE,
              outline=TXT_EDGE if k == 2 else (170, 190, 225), width=1, radius=6)
    c.text((tx0 + tx1) / 2 - 4, 91, '"a dog running on the beach"', size=16)
    c.text(tx0 - 4, 91, "captions", size=14, fill=MUTED, anchor="rm")
    c.text(x0 + 22, 150, "a batch of N", size=16, fill=MUTED, anchor="lm")
    c.text(x0 + 22, 172, "(image, text) pairs", size=16, fill=MUTED, anchor="lm")
    c.arrow([((tx0 + tx1) / 2, 110), ((tx0 + tx1) / 2, 128)])
    c.box(tx0, 130, tx1, 172, fill=TXT_FILL, outline=TXT_EDGE, width=2)
    c.text((tx0 + tx1) / 2, 151, "Text Encoder", size=19, bold=True, fill=TXT_EDGE)
    c.arrow([((tx0 + tx1) / 2, 174), ((tx0 + tx1) / 2, 196)])

    # text feature row
    ty0, ty1 = 200, 240
    for (a, b), i in zip(cols, idx):
        if i is None:
            ellipsis_cell(c, a, ty0, b, ty1)
        else:
            vector_cell(c, a, ty0, b, ty1, "T_" + i, TXT_FILL, TXT_EDGE)

    # image input and image encoder (left)
    px0, px1 = 38, 128
    cy_mid = (my + mat_y1) / 2
    c.text((px0 + px1) / 2 + 4, cy_mid - 66, "images", size=14, fill=MUTED)
    photo(c, px0 + 8, cy_mid - 44, px1 + 8, cy_mid + 26, (178, 214, 240), (120, 170, 96))
    photo(c, px0 + 4, cy_mid - 40, px1 + 4, cy_mid + 30, (250, 212, 170), (196, 150, 96))
    photo(c, px0, cy_mid - 36, px1, cy_mid + 34, (150, 200, 236), (236, 214, 160))
    c.arrow([(px1 + 10, cy_mid), (178, cy_mid)])
    ex0, ex1 = 182, 226
    c.box(ex0, my, ex1, mat_y1, fill=IMG_FILL, outline=IMG_EDGE, width=2)
    c.vtext((ex0 + ex1) / 2, cy_mid, "Image Encoder", size=19, bold=True, fill=IMG_EDGE)
    c.arrow([(ex1 + 2, cy_mid), (238, cy_mid)])

    # image feature column
    ix0, ix1 = 242, 298
    for (a, b), i in zip(rows, idx):
        if i is None:
            c.text((ix0 + ix1) / 2, (a + b) / 2 - 4, "...", size=20, fill=MUTED)
        else:
            vector_cell(c, ix0, a, ix1, b, "I_" + i, IMG_FILL, IMG_EDGE)

    # similarity matrix
    for (ya, yb), i in zip(rows, idx):
        for (xa, xb), j in zip(cols, idx):
            if i is None or j is None:
                c.text((xa + xb) / 2, (ya + yb) / 2 - 4, "...", size=18, fill=MUTED)
                continue
            match = i == j
            c.rect(xa + 2, ya + 2, xb - 2, yb - 2,
                   fill=MATCH_FILL if match else CELL_FILL,
                   outline=MATCH_EDGE if match else CELL_EDGE, width=1)
            c.rich((xa + xb) / 2, (ya + yb) / 2, "I_" + i + "·T_" + j, size=15,
                   fill=WHITE if match else INK, bold=match)

    # legend and explanation
    lx, ly = 40, 600
    c.rect(lx, ly - 9, lx + 18, ly + 9, fill=MATCH_FILL, outline=MATCH_EDGE)
    c.text(lx + 28, ly, "matching image-text pair: similarity pushed up", size=15, anchor="lm")
    c.rect(lx, ly + 27, lx + 18, ly + 45, fill=CELL_FILL, outline=CELL_EDGE)
    c.text(lx + 28, ly + 36, "mismatched pair: similarity pushed down", size=15, anchor="lm")
    c.text(lx, ly + 70, "N x N cosine similarities, softmax cross-entropy over rows and columns",
           size=14, fill=MUTED, anchor="lm")


# Panel 2: classifier from label text ---------------------------------------
X2 = (640, 1096)  # horizontal extent of panel 2
X3 = (1112, 1584)  # horizontal extent of panel 3
CLASSES = ["plane", "car", "dog", None, "bird"]
BEST = 2  # index of "dog"


def panel_classifier(c, cols):
    x0, x1 = X2
    panel(c, x0, x1, "(2) Classifier from label text")
    cx = (x0 + x1) / 2

    # class names
    c.text(cx, 86, "class names", size=14, fill=MUTED)
    pill, gap, dots = 76, 8, 28
    widths = [dots if name is None else pill for name in CLASSES]
    pos = cx - (sum(widths) + gap * (len(CLASSES) - 1)) / 2
    for name, w in zip(CLASSES, widths):
        if name is None:
            c.text(pos + w / 2, 122, "...", size=20, fill=MUTED)
        else:
            c.box(pos, 104, pos + w, 138, fill=WHITE, outline=(150, 156, 170), width=1, radius=14)
            c.text(pos + w / 2, 121, name, size=17)
        pos += w + gap
    c.arrow([(cx, 142), (cx, 168)])

    # prompt template
    c.box(cx - 150, 172, cx + 150, 222, fill=PROMPT_FILL, outline=PROMPT_EDGE, width=2)
    c.text(cx, 197, "a photo of a {object}.", size=20)
    c.text(cx + 158, 190, "prompt", size=14, fill=MUTED, anchor="lm")
    c.text(cx + 158, 206, "template", size=14, fill=MUTED, anchor="lm")
    c.text(cx, 244, 'e.g. "a photo of a dog."', size=14, fill=MUTED)
    c.arrow([(cx, 258), (cx, 286)])

    # text encoder
    c.box(cx - 170, 290, cx + 170, 336, fill=TXT_FILL, outline=TXT_EDGE, width=2)
    c.text(cx, 313, "Text Encoder", size=19, bold=True, fill=TXT_EDGE)
    c.arrow([(cx, 338), (cx, 364)])

    # text features, one per class
    ty0, ty1 = 368, 408
    for (a, b), i, name in zip(cols, ["1", "2", "3", None, "N"], CLASSES):
        if i is None:
            ellipsis_cell(c, a, ty0, b, ty1)
        else:
            vector_cell(c, a, ty0, b, ty1, "T_" + i, TXT_FILL, TXT_EDGE)
            c.text((a + b) / 2, ty1 + 14, name, size=13, fill=MUTED)
    c.text(cx, 470, "one text embedding per class", size=15, fill=INK)
    c.text(cx, 492, "(computed once, reused for every image)", size=14, fill=MUTED)

    # optional prompt ensembling
    c.box(x0 + 28, 560, x1 - 28, 640, fill=WHITE, outline=PANEL_EDGE, width=1, radius=10)
    c.text(cx, 582, "prompt ensembling (optional)", size=15, bold=True)
    c.text(cx, 606, "encode several templates per class and", size=14, fill=MUTED)
    c.text(cx, 624, "average the normalised embeddings into one T", size=14, fill=MUTED)
    return ty0, ty1


# Panel 3: zero-shot prediction ---------------------------------------------
def panel_prediction(c, t_row):
    x0, x1 = X3
    panel(c, x0, x1, "(3) Zero-shot prediction")
    cx = (x0 + x1) / 2

    # input image
    c.rect(cx - 64 + 3, 78 + 3, cx + 64 + 3, 190 + 3, fill=(210, 212, 218))
    c.rect(cx - 64, 78, cx + 64, 190, fill=WHITE, outline=(170, 174, 184))
    c.rect(cx - 60, 82, cx + 60, 186, fill=(190, 224, 246))
    c.rect(cx - 60, 160, cx + 60, 186, fill=(150, 196, 110))
    dog(c, cx, 132, s=0.92)
    c.arrow([(cx, 196), (cx, 220)])

    # image encoder
    c.box(cx - 150, 224, cx + 150, 270, fill=IMG_FILL, outline=IMG_EDGE, width=2)
    c.text(cx, 247, "Image Encoder", size=19, bold=True, fill=IMG_EDGE)
    c.arrow([(cx, 272), (cx, 292)])
    vector_cell(c, cx - 30, 296, cx + 30, 336, "I_1", IMG_FILL, IMG_EDGE)

    # dot products with every class embedding
    cell, gap_cell = 72, 30
    idx = ["1", "2", "3", None, "N"]
    total = 4 * cell + gap_cell
    pos = cx - total / 2
    ty0, ty1 = t_row
    centres = []
    for n, i in enumerate(idx):
        w = gap_cell if i is None else cell
        if i is None:
            ellipsis_cell(c, pos, ty0, pos + w, ty1)
        else:
            best = n == BEST
            c.rect(pos + 2, ty0, pos + w - 2, ty1,
                   fill=MATCH_FILL if best else CELL_FILL,
                   outline=MATCH_EDGE if best else CELL_EDGE, width=2 if best else 1)
            c.rich(pos + w / 2, (ty0 + ty1) / 2, "I_1·T_" + i, size=16,
                   fill=WHITE if best else INK, bold=best)
        centres.append(pos + w / 2)
        pos += w
    left = cx - total / 2
    # fan-out from I_1 into the row
    c.line([(cx, 338), (cx, 350)], fill=INK, width=2)
    c.line([(centres[0], 350), (centres[-1], 350)], fill=INK, width=2)
    for n, x in enumerate(centres):
        if idx[n] is not None:
            c.arrow([(x, 350), (x, ty0 - 2)], head=7)

    # softmax bars under the row
    probs = [0.04, 0.06, 0.84, None, 0.02]
    base = ty1 + 92
    for n, (x, p) in enumerate(zip(centres, probs)):
        if p is None:
            continue
        h = 74 * p / max(q for q in probs if q is not None)
        best = n == BEST
        c.rect(x - 14, base - max(h, 2), x + 14, base,
               fill=MATCH_FILL if best else (176, 182, 194))
    c.line([(left, base), (left + total, base)], fill=MUTED, width=1)
    c.text(left - 8, base - 36, "softmax", size=13, fill=MUTED, anchor="rm")

    # prediction
    bx = centres[BEST]
    c.arrow([(bx, base + 4), (bx, base + 30)])
    c.box(cx - 130, base + 34, cx + 130, base + 80, fill=(228, 246, 234), outline=MATCH_EDGE,
          width=2)
    c.text(cx, base + 57, "a photo of a dog.", size=20, bold=True, fill=MATCH_EDGE)
    c.text(cx, base + 100, "best match = predicted class", size=14, fill=MUTED)
    return left


def render():
    c = Canvas()
    panel_pretraining(c)

    # the class-embedding row of panel 2 and the score row of panel 3 share a height
    cell, gap_cell = 72, 30
    cx2 = sum(X2) / 2
    total = 4 * cell + gap_cell
    cols, pos = [], cx2 - total / 2
    for i in ["1", "2", "3", None, "N"]:
        w = gap_cell if i is None else cell
        cols.append((pos + (2 if i else 0), pos + w - (2 if i else 0)))
        pos += w
    t_row = panel_classifier(c, cols)
    left3 = panel_prediction(c, t_row)

    # hand the class embeddings from panel 2 to panel 3
    y = (t_row[0] + t_row[1]) / 2
    c.arrow([(cols[-1][1] + 6, y), (left3 - 8, y)], fill=TXT_EDGE, width=3, head=11)

    return c.img.resize((WIDTH, HEIGHT), Image.LANCZOS)


def main(argv=None):
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=os.path.join(repo_root, "CLIP.png"),
                        help="where to write the PNG (default: CLIP.png in the repository root)")
    args = parser.parse_args(argv)

    img = render()
    out = os.path.abspath(args.output)
    folder = os.path.dirname(out)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".CLIP-", suffix=".png", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            img.save(fh, format="PNG", optimize=True)
        # mkstemp creates the file as 0600; give it the usual permissions
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    print(f"wrote {out} ({img.size[0]}x{img.size[1]})")


if __name__ == "__main__":
    main()
