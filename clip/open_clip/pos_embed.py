"""Resizing a ViT's positional embedding to another patch grid, with NumPy only.

open_clip does this when pretrained weights are loaded into a model of another image size
(``force_image_size``): the class-token row is kept and the grid rows, seen as a
``[width, old_grid, old_grid]`` image, are resized with PyTorch's antialiased bicubic
interpolation (``F.interpolate(mode="bicubic", antialias=True, align_corners=False)``).

That interpolation is separable and PIL-like, which :func:`resize_bicubic_antialias` computes
in float64: along each axis, output pixel ``i`` (centre ``(i + 0.5) * scale`` in input
coordinates, ``scale = in / out``) averages the input pixels within ``2 * max(scale, 1)`` of
its centre, weighted by Keys' cubic kernel with ``a = -0.5`` (not the ``-0.75`` of plain
bicubic) stretched by ``max(scale, 1)`` when downsizing, the window clipped to the image and
the weights normalised to sum 1.
"""
import numpy as np

__all__ = ["resize_bicubic_antialias", "resize_pos_embed"]


def _cubic(x, a=-0.5):
    """Keys' cubic convolution kernel."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x < 1, near, np.where(x < 2, far, 0.0))


def _weights(in_size: int, out_size: int) -> np.ndarray:
    """``[out_size, in_size]`` float64 matrix of the antialiased bicubic resize along one axis."""
    scale = in_size / out_size
    stretch = max(scale, 1.0)  # the kernel widens when downsizing (antialiasing)
    support = 2.0 * stretch
    matrix = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        centre = scale * (i + 0.5)
        # the window of input pixels: [int(centre - support + 0.5), int(centre + support + 0.5)),
        # int() truncating towards zero, clipped to the image
        low = max(int(centre - support + 0.5), 0)
        high = min(int(centre + support + 0.5), in_size)
        taps = np.arange(low, high)
        w = _cubic((taps - centre + 0.5) / stretch)
        total = w.sum()
        if total != 0:
            w = w / total
        matrix[i, low:high] = w
    return matrix


def resize_bicubic_antialias(array, size) -> np.ndarray:
    """Resize the last two axes of ``array`` (``[..., H, W]``) to ``size`` (an int or ``(h, w)``)
    as ``torch.nn.functional.interpolate(x, size, mode="bicubic", antialias=True,
    align_corners=False)`` does. Computed in float64; returned in float32, or float64 for a
    float64 input."""
    array = np.asarray(array)
    if array.ndim < 2:
        raise ValueError(f"expected an array of at least 2 dimensions [..., H, W], got shape {array.shape}")
    out_h, out_w = (size, size) if np.isscalar(size) else tuple(size)
    out_h, out_w = int(out_h), int(out_w)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"the output size must be positive, got {(out_h, out_w)}")
    in_h, in_w = array.shape[-2:]
    if in_h < 1 or in_w < 1:
        raise ValueError(f"cannot resize an empty image of shape {array.shape}")
    dtype = np.result_type(array.dtype, np.float32) if np.issubdtype(array.dtype, np.floating) else np.float64
    x = array.astype(np.float64)
    out = _weights(in_h, out_h) @ x @ _weights(in_w, out_w).T
    return out.astype(dtype)


def resize_pos_embed(pos_embed, grid_size, extra_tokens: int = 1) -> np.ndarray:
    """A ViT positional embedding ``[extra_tokens + g * g, width]`` (class token first, then the
    ``g x g`` grid row by row) resized to ``grid_size`` (an int or ``(h, w)``), as open_clip's
    ``resize_pos_embed`` does: the extra rows are kept, the grid is resized with
    :func:`resize_bicubic_antialias`. The input is returned unchanged when the grid already fits."""
    pos_embed = np.asarray(pos_embed)
    if pos_embed.ndim != 2:
        raise ValueError(f"a positional embedding is [positions, width], got shape {pos_embed.shape}")
    new_h, new_w = (grid_size, grid_size) if np.isscalar(grid_size) else tuple(grid_size)
    new_h, new_w = int(new_h), int(new_w)
    if pos_embed.shape[0] == extra_tokens + new_h * new_w:
        return pos_embed
    positions, width = pos_embed.shape[0] - extra_tokens, pos_embed.shape[1]
    old = int(round(max(positions, 0) ** 0.5))
    if positions < 1 or old * old != positions:
        raise ValueError(f"the positional embedding has {pos_embed.shape[0]} rows: {extra_tokens} extra "
                         f"token(s) and {positions}, not a square grid")
    tokens, grid = pos_embed[:extra_tokens], pos_embed[extra_tokens:]
    grid = grid.reshape(old, old, width).transpose(2, 0, 1)  # [width, old, old]
    grid = resize_bicubic_antialias(grid, (new_h, new_w))
    grid = grid.transpose(1, 2, 0).reshape(new_h * new_w, width)
    return np.concatenate([tokens.astype(grid.dtype), grid], axis=0)
