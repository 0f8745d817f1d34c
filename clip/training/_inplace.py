"""Writing into Parameters in place.

``Parameter.set_data`` gives the Parameter new storage; a graph compiled by ``mindspore.jit``
before that keeps reading (and writing) the old storage, so it no longer sees the Parameter
(MindSpore 2.10). ``ops.assign`` writes into the existing storage, which every compiled graph
shares. Training code that changes weights after the first step (resuming, restoring BatchNorm
statistics) writes with :func:`assign`.
"""
import numpy as np
from mindspore import Tensor, ops

__all__ = ["assign"]


def assign(param, value):
    """Write ``value`` (array or Tensor with ``param``'s number of elements) into ``param`` in place,
    in ``param``'s dtype and shape."""
    if isinstance(value, Tensor):
        value = value.asnumpy()
    value = np.asarray(value)
    if value.size != int(np.prod(param.shape)):
        raise ValueError(f"{param.name}: cannot write {value.shape} into {tuple(param.shape)}")
    ops.assign(param, Tensor(value.reshape(param.shape)).astype(param.dtype))
