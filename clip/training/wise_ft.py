"""WiSE-FT: weight-space ensembles of a zero-shot and a fine-tuned CLIP (Wortsman et al., 2022,
arXiv:2109.01903).

``theta(alpha) = (1 - alpha) * theta_zero_shot + alpha * theta_fine_tuned``, for every entry of
the weights (BatchNorm statistics included). ``alpha = 0`` is the zero-shot model and
``alpha = 1`` the fine-tuned one, bit for bit.
"""
from collections import OrderedDict

import numpy as np
from mindspore import Tensor, nn

from ..model import build_model

__all__ = ["interpolate_weights", "wise_ft"]


def _as_arrays(weights):
    if isinstance(weights, nn.Cell):
        return OrderedDict((name, p.asnumpy()) for name, p in weights.parameters_and_names())
    return OrderedDict((name, v.asnumpy() if isinstance(v, Tensor) else np.asarray(v)) for name, v in weights.items())


def interpolate_weights(zero_shot, fine_tuned, alpha: float) -> "OrderedDict[str, np.ndarray]":
    """``(1 - alpha) * zero_shot + alpha * fine_tuned`` entry by entry.

    ``zero_shot`` and ``fine_tuned`` are CLIP models or state dicts (name -> array or Tensor) with
    the same names and shapes. The mix is computed in float64 and stored in the wider of the
    two dtypes; ``alpha`` 0 and 1 return the end points' values exactly.
    """
    alpha = float(alpha)
    theta_0, theta_1 = _as_arrays(zero_shot), _as_arrays(fine_tuned)
    if list(theta_0) != list(theta_1):
        only_0, only_1 = sorted(set(theta_0) - set(theta_1)), sorted(set(theta_1) - set(theta_0))
        if only_0 or only_1:
            raise ValueError(f"the two models have different weights: only in the first {only_0[:10]}, "
                             f"only in the second {only_1[:10]}")
    mixed = OrderedDict()
    for name, a in theta_0.items():
        b = theta_1[name]
        if a.shape != b.shape:
            raise ValueError(f"{name}: shapes differ, {a.shape} vs {b.shape}")
        dtype = np.result_type(a.dtype, b.dtype)
        if alpha == 0.0:
            mixed[name] = a.astype(dtype, copy=True)
        elif alpha == 1.0:
            mixed[name] = b.astype(dtype, copy=True)
        else:
            mixed[name] = ((1.0 - alpha) * a.astype(np.float64) + alpha * b.astype(np.float64)).astype(dtype)
    return mixed


def wise_ft(zero_shot, fine_tuned, alpha: float = 0.5):
    """A new CLIP model (float32, inference mode) whose weights are
    :func:`interpolate_weights` ``(zero_shot, fine_tuned, alpha)``. ``alpha = 0.5`` is the
    paper's default mix."""
    return build_model(interpolate_weights(zero_shot, fine_tuned, alpha))
