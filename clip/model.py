"""The CLIP network in MindSpore: the same modules as OpenAI's ``clip/model.py``.

Parameter names follow OpenAI's PyTorch names, with MindSpore's spelling for the
parameters of normalisation and embedding cells (``gamma``/``beta``,
``moving_mean``/``moving_variance``, ``embedding_table``), which is what the
mindcv port's converted ``.ckpt`` files use.  :data:`TORCH_NAMES` is the one table
that relates the two spellings; it is keyed by cell type.

Activations are laid out batch-first (``[N, L, D]``) everywhere; OpenAI's text and
vision transformers use ``[L, N, D]`` internally, which gives the same numbers.
"""
from collections import OrderedDict
from typing import Tuple, Union

import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import initializer

__all__ = [
    "linear", "Linear", "Conv2d", "channel_sums", "BatchNorm", "conv_bn", "AvgPool", "PatchEmbedding", "Bottleneck", "AttentionPool2d", "ModifiedResNet", "LayerNorm", "QuickGELU", "GELU",
    "MultiheadAttention", "ResidualAttentionBlock", "Transformer", "VisionTransformer", "CLIP",
    "build_model", "infer_config", "batch_bucket", "length_bucket", "load_weights", "torch_name_map", "convert_torch_state_dict",
    "is_ignored_key", "TORCH_NAMES",
    "IGNORED_CHECKPOINT_KEYS", "ModelConfigError", "WeightsMismatchError",
]


class WeightsMismatchError(ValueError):
    """The weights do not fit the model: missing, unexpected or wrongly shaped entries."""


class ModelConfigError(WeightsMismatchError):
    """The weights describe no valid CLIP architecture (missing or inconsistent tensors)."""


def _zeros(shape, dtype=ms.float32):
    return initializer("zeros", list(shape), dtype)


def _ones(shape, dtype=ms.float32):
    return initializer("ones", list(shape), dtype)


def _attention(q, k, v, num_heads, mask=None):
    """Scaled dot-product attention over heads.

    q: [N, Lq, D], k and v: [N, L, D]; mask: additive [Lq, L] or None. The scores and
    the softmax are computed in float32 whatever the input dtype, as OpenAI's fp16
    models do on GPU.
    """
    n, lq, width = q.shape
    length = k.shape[1]
    head_dim = width // num_heads
    dtype = q.dtype
    q = q.reshape(n, lq, num_heads, head_dim).transpose(0, 2, 1, 3)  # [N, H, Lq, Dh]
    k = k.reshape(n, length, num_heads, head_dim).transpose(0, 2, 3, 1)  # [N, H, Dh, L]
    v = v.reshape(n, length, num_heads, head_dim).transpose(0, 2, 1, 3)  # [N, H, L, Dh]
    scores = ops.matmul(q * (head_dim ** -0.5), k).astype(ms.float32)  # [N, H, Lq, L]
    if mask is not None:
        scores = scores + mask
    weights = ops.softmax(scores, -1).astype(dtype)
    out = ops.matmul(weights, v)  # [N, H, Lq, Dh]
    return out.transpose(0, 2, 1, 3).reshape(n, lq, width)  # [N, Lq, D]


_MATMUL_NT = ops.MatMul(transpose_b=True)
_MATMUL_TN = ops.MatMul(transpose_a=True)  # a.T @ b without a Transpose kernel (see across_rows)
_BIAS_ADD = ops.BiasAdd()  # [R, C] + [C]
_TILE = ops.Tile()  # a primitive instance: ops.tile builds one at trace time, which a bprop cannot


def linear(x, weight, bias=None):
    """``x @ weight.T + bias`` over the last axis, with PyTorch's weight layout ``[out, in]``, as
    one 2-D matrix product whatever the leading axes: on MindSpore 2.10's CPU backend the product
    of a 3-D or 4-D input (``ops.dense``, ``nn.Dense``) takes 1.2-1.5x as long, forward and
    backward, as the same arithmetic on the rows flattened. ``[..., in] -> [..., out]``"""
    shape = x.shape
    y = _MATMUL_NT(x.reshape(-1, shape[-1]), weight)  # [rows, out]
    if bias is not None:
        y = ops.bias_add(y, bias)
    return y.reshape(shape[:-1] + (weight.shape[0],))


class Linear(nn.Cell):
    """A dense layer with PyTorch's parameters (``weight`` ``[out, in]``, ``bias`` ``[out]``),
    computed by :func:`linear`. Parameters start at zero, like the other cells here: weights come
    from a checkpoint or from :func:`clip.training.init_parameters`."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(_zeros((out_features, in_features)))
        self.bias = Parameter(_zeros((out_features,))) if bias else None

    def construct(self, x):
        return linear(x, self.weight, self.bias)


def _im2col_indices(size: int, kernel: int, stride: int, padding: int):
    """Gather indices of a square convolution's taps on a flattened ``size x size`` input.

    Returns ``(index, out_size)``: ``index[(oy * out + ox) * k * k + ky * k + kx]`` is the flat
    input position ``y * size + x`` that tap ``(ky, kx)`` of output ``(oy, ox)`` reads, or
    ``size * size`` (a row of zeros appended to the input) where the tap falls in the padding.
    """
    out = (size + 2 * padding - kernel) // stride + 1
    if out < 1:
        raise ModelConfigError(f"a {kernel}x{kernel} convolution does not fit a {size}x{size} input")
    pos = np.arange(out)[:, None] * stride - padding + np.arange(kernel)[None, :]  # [out, k]
    inside = (pos >= 0) & (pos < size)
    flat = pos[:, None, :, None] * size + pos[None, :, None, :]  # [out, out, k, k]
    valid = inside[:, None, :, None] & inside[None, :, None, :]
    return Tensor(np.where(valid, flat, size * size).reshape(-1).astype(np.int32)), out


def _gather_taps(x, index, taps: int):
    """im2col: ``[N, H, W, C] -> [N * P, taps * C]``, row ``p`` of image ``n`` holding the input
    channels at the ``taps`` positions ``index`` names for output position ``p`` (see
    :func:`_im2col_indices`; position ``H * W`` is a row of zeros, the padding)."""
    n, _, _, c = x.shape
    x = ops.cat([x.reshape(n, -1, c), ops.zeros((n, 1, c), x.dtype)], 1)  # [N, HW + 1, C]
    return ops.gather(x, index, 1).reshape(-1, taps * c)  # [N * P, taps * C]


class _SameConvProduct(nn.Cell):
    """A stride-1 "same" convolution as im2col and one product, with its backward written out:
    the weight's gradient from the taps gathered again (differentiating op by op would keep the
    ``k * k`` copies of the input for backward) and the input's gradient as the same convolution of
    the output gradient with the kernel flipped: a gather, not the scatter-add that differentiating
    the gather gives. Used in training. ``[N, H, W, C], [out, k * k * C] -> [N, H, W, out]``"""

    def __init__(self, index, taps: int):
        super().__init__()
        self.index, self.taps = index, taps
        # the taps of every output position in reverse order, for the input's gradient
        self.reversed_index = Tensor(index.asnumpy().reshape(-1, taps)[:, ::-1].reshape(-1).copy())

    def construct(self, x, weight):
        n, h, w, _ = x.shape
        return _MATMUL_NT(_gather_taps(x, self.index, self.taps), weight).reshape(n, h, w, -1)

    def bprop(self, x, weight, out, dout):
        n, h, w, c = x.shape
        out_channels = weight.shape[0]
        grad_weight = _MATMUL_TN(dout.reshape(-1, out_channels), _gather_taps(x, self.index, self.taps))
        # output position p takes input p + d through tap d, so input q gets dout[q - d] through it:
        # dout gathered with the taps reversed, times the kernel's taps in order ([k * k * out, C]);
        # reversing the index (once) instead of the kernel spares a strided copy per step
        taps_first = weight.reshape(out_channels, self.taps, c).transpose(1, 0, 2).reshape(-1, c)
        grad_x = ops.matmul(_gather_taps(dout, self.reversed_index, self.taps), taps_first).reshape(n, h, w, c)
        return grad_x, grad_weight  # [N, H, W, C], [out, k * k * C]


def _channels_first_indices(index, taps: int, channels: int, plane: int):
    """:func:`_im2col_indices`' ``index`` for input laid out ``[N, C * (plane + 1)]`` (every channel's
    flattened plane followed by its zero): the taps of an output position in the order
    :func:`_gather_taps` gives them for channels-last input (tap by tap, the channels of each), so
    the products, and their rounding, are those of the channels-last convolution.
    ``[P * taps] -> [P * taps * C]``"""
    index = index.asnumpy().reshape(-1, taps, 1)  # [P, taps, 1]
    offsets = (np.arange(channels) * (plane + 1)).reshape(1, 1, -1)  # [1, 1, C]
    return Tensor((index + offsets).reshape(-1).astype(np.int32))


class Conv2d(nn.Cell):
    """A bias-free square convolution on channels-last input ``[N, H, W, C]`` (or, with
    ``channels_first``, on NCHW input ``[N, C, H, W]``, as the first layer takes images).

    The weight keeps PyTorch's layout ``[out, in, k, k]`` (and name), so checkpoints are
    unchanged. A 1x1 convolution is a matrix product over the channels; a larger one gathers the
    ``k * k`` taps of every output position (zeros where they fall in the padding) and multiplies
    once (im2col). The arithmetic is a convolution's; the formulation avoids the reference kernel
    that MindSpore's oneDNN picks for NCHW convolutions on AVX-512 CPUs (100x slower).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, input_size: int,
                 stride: int = 1, padding: int = 0, channels_first: bool = False):
        super().__init__()
        self.out_channels = out_channels
        self.taps = kernel_size * kernel_size
        self.weight = Parameter(_zeros((out_channels, in_channels, kernel_size, kernel_size)))
        self.index, self.output_size, self.same = None, input_size, None
        self.channels_first = channels_first
        if kernel_size > 1 or stride > 1 or padding or channels_first:
            self.index, self.output_size = _im2col_indices(input_size, kernel_size, stride, padding)
            if channels_first:  # taps gathered from the NCHW planes: no transpose of the input
                self.index = _channels_first_indices(self.index, self.taps, in_channels, input_size ** 2)
            elif stride == 1 and 2 * padding == kernel_size - 1:
                self.same = _SameConvProduct(self.index, self.taps)

    def construct(self, x, scale=None, shift=None):
        """``x``: ``[N, H, W, C]`` (``[N, C, H, W]`` if ``channels_first``); ``scale``/``shift``
        (``[out]``, optional): an affine map of the output folded into the product (an
        inference-mode BatchNorm, see :func:`conv_bn`). Returns ``[N, Ho, Wo, out]``."""
        n, c = x.shape[0], x.shape[1 if self.channels_first else 3]
        if self.index is None:  # 1x1: no Transpose (it keeps an index table on MindSpore's CPU)
            weight = self.weight.reshape(self.out_channels, c)  # [out, C]
        else:
            weight = self.weight.transpose(0, 2, 3, 1).reshape(self.out_channels, -1)  # [out, k * k * C]
        if self.channels_first:
            planes = ops.cat([x.reshape(n, c, -1), ops.zeros((n, c, 1), x.dtype)], 2)  # [N, C, HW + 1]
            x = ops.gather(planes.reshape(n, -1), self.index, 1).reshape(-1, self.taps * c)  # [N * P, k * k * C]
        elif self.index is not None:
            if self.training and self.same is not None and scale is None:
                return self.same(x, weight)
            x = _gather_taps(x, self.index, self.taps)  # [N * Ho * Wo, k * k * C]
        if scale is not None:
            weight = weight * scale.astype(weight.dtype).reshape(-1, 1)
            shift = shift.astype(weight.dtype)
        y = linear(x, weight, shift)
        if self.index is not None:
            y = y.reshape(n, self.output_size, self.output_size, -1)
        return y  # [N, Ho, Wo, out]


@ops.constexpr
def _row_block(rows: int, limit: int = 128) -> int:
    """The largest divisor of ``rows`` that is at most ``limit`` (a constant of the graph)."""
    return max(d for d in range(1, min(rows, limit) + 1) if rows % d == 0)


def channel_sums(rows):
    """Column sums of ``[R, C]`` rows, about as accurate as PyTorch's BatchNorm statistics (which
    it accumulates in double): blocks of up to 128 rows are summed by one batched matrix product
    with ones and the block sums are added in float64, so the error stays within about one float32
    epsilon of the sum of magnitudes whatever ``R`` (a sequential float32 sum's grows with ``R``;
    MindSpore 2.10's CPU ``rows.sum(0)`` is ~100 ulp off). 3-7x faster on that backend than
    ``ReduceSum`` over the leading axes of the 4-D tensor. ``[R, C] -> [C]``"""
    r, c = rows.shape
    block = _row_block(r)
    ones = ops.ones((r // block, 1, block), rows.dtype)
    partial = ops.bmm(ones, rows.reshape(r // block, block, c))  # [R / block, 1, C]
    return partial.reshape(-1, c).astype(ms.float64).sum(0).astype(rows.dtype)


def across_rows(row, rows):
    """``row`` (``[C]``) repeated for every row of ``rows`` (``[R, C]``), for an elementwise op of
    equal shapes. MindSpore 2.10's CPU kernels for a binary op whose inputs broadcast keep an index
    table of about four times the output's float32 bytes for the compiled graph's life; a
    spread followed by an op of equal shapes keeps none (RN50 training at batch 8: ~9 GB), nor does
    ``BiasAdd`` (the way to add a per-channel term). The spread is a ``Tile``: ``BroadcastTo``, which
    keeps no table either, writes large outputs 3-10x slower (``[1, 256] -> [200704, 256]``: 134 ms
    against 13-30 ms). ``Transpose`` keeps a table of twice the output's bytes: products take their
    operands transposed by flag (``_MATMUL_NT``, ``_MATMUL_TN``).
    ``[C], [R, C] -> [R, C]``"""
    return _TILE(row.reshape(1, -1), (rows.shape[0], 1))


class _BatchStatisticsNorm(nn.Cell):
    """Training-mode batch normalisation of float32 rows with its backward written out as PyTorch's
    CPU kernel computes it; every reduction is a :func:`channel_sums`; a per-channel addend is a
    ``BiasAdd``, a per-channel factor is spread over the rows first (:func:`across_rows`). Autodiff of the forward would reduce over the
    leading axes of 4-D tensors (``ReduceSum``, 3-7x slower on CPU) for the gains', the biases' and
    the statistics' gradients.
    ``[R, C], [C], [C] -> ([R, C] normalised, [C] mean, [C] biased variance)``"""

    def __init__(self, eps: float):
        super().__init__()
        self.eps = eps

    def construct(self, rows, gamma, beta):
        n = rows.shape[0]
        mean = channel_sums(rows) / n
        var = channel_sums(ops.square(_BIAS_ADD(rows, -mean))) / n
        scale = gamma * ops.rsqrt(var + self.eps)
        return _BIAS_ADD(rows * across_rows(scale, rows), beta - mean * scale), mean, var

    def bprop(self, rows, gamma, beta, out, dout):
        n = rows.shape[0]
        _, mean, var = out
        dy = dout[0]  # the statistics leave only through stop_gradient (the moving averages)
        invstd = ops.rsqrt(var + self.eps)
        centred = _BIAS_ADD(rows, -mean)
        sum_dy = channel_sums(dy)
        dot = channel_sums(dy * centred)  # sum of dy * (x - mean)
        k = dot * invstd * invstd / n
        grad_rows = (_BIAS_ADD(dy, -sum_dy / n) - centred * across_rows(k, rows)) * across_rows(invstd * gamma, rows)
        return grad_rows, dot * invstd, sum_dy


class BatchNorm(nn.Cell):
    """Batch normalisation over the last axis of channels-last input, with PyTorch's semantics:
    in training mode it normalises with the batch statistics (biased variance) and updates the
    running ones (``momentum`` 0.1, unbiased variance); in inference mode it uses the running ones.
    Parameters are named like MindSpore's ``BatchNorm2d`` (``gamma``, ``beta``, ``moving_mean``,
    ``moving_variance``). Computed in float32, returned in the input's dtype."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.gamma = Parameter(_ones((num_features,)))
        self.beta = Parameter(_zeros((num_features,)))
        self.moving_mean = Parameter(_zeros((num_features,)), requires_grad=False)
        self.moving_variance = Parameter(_ones((num_features,)), requires_grad=False)
        self.batch_norm = _BatchStatisticsNorm(eps)

    def construct(self, x):
        dtype = x.dtype
        if dtype != ms.float32:
            x = x.astype(ms.float32)
        if self.training:
            shape = x.shape
            y, mean, var = self.batch_norm(x.reshape(-1, shape[-1]), self.gamma, self.beta)  # [rows, C]
            count = y.shape[0]
            m = self.momentum
            ops.assign(self.moving_mean, ops.stop_gradient((1 - m) * self.moving_mean + m * mean))
            ops.assign(self.moving_variance, ops.stop_gradient(
                (1 - m) * self.moving_variance + m * var * (count / max(count - 1, 1))))
            y = y.reshape(shape)
        else:
            scale, shift = self.inference_affine()
            y = x * scale + shift
        return y if dtype == ms.float32 else y.astype(dtype)

    def inference_affine(self):
        """``(scale, shift)`` such that inference-mode normalisation is ``x * scale + shift``."""
        scale = self.gamma * ops.rsqrt(self.moving_variance + self.eps)
        return scale, self.beta - self.moving_mean * scale


def conv_bn(conv: Conv2d, bn: BatchNorm, x):
    """``bn(conv(x))``. In inference mode the normalisation is folded into the convolution (its
    weight scaled, its shift a bias): the same affine map, one pass over the output instead of
    three. In training mode BatchNorm needs the convolution's output for its batch statistics."""
    if bn.training:
        return bn(conv(x))
    scale, shift = bn.inference_affine()
    return conv(x, scale, shift)


class AvgPool(nn.Cell):
    """Average pooling of channels-last input with a square window equal to its stride.
    ``[N, H, W, C] -> [N, H / s, W / s, C]``"""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def construct(self, x):
        n, h, w, c = x.shape
        s = self.stride
        if self.training:
            # a mean over a 6-D view, the formulation verified in training. Sums of unbound slices
            # (as in inference) with a Tile backward were 1.3-1.9x faster, but moved the weights of
            # 1 and 2 processes 6e-5 apart after 3 AdamW steps (near-zero gradients turned into
            # +-lr steps by different summation orders), against 1e-5 allowed; not kept
            return x.reshape(n, h // s, s, w // s, s, c).mean(axis=(2, 4))  # [N, H / s, W / s, C]
        # inference: sums of unbound slices, 3-4x faster on CPU than a mean over two strided axes
        rows = ops.unbind(x.reshape(n * (h // s), s, w // s, s, c), 1)  # s x [N * H / s, W / s, s, C]
        total = rows[0]
        for row in rows[1:]:
            total = total + row
        columns = ops.unbind(total, 2)  # s x [N * H / s, W / s, C]
        total = columns[0]
        for column in columns[1:]:
            total = total + column
        return (total / (s * s)).reshape(n, h // s, w // s, c)  # [N, H / s, W / s, C]


class Bottleneck(nn.Cell):
    """ResNet bottleneck whose stride is an average pool before the third convolution.
    Channels-last: ``[N, size, size, inplanes] -> [N, size / stride, size / stride, 4 * planes]``."""
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, input_size=56):
        super().__init__()
        if input_size % stride:
            raise ModelConfigError(f"a stride-{stride} block does not fit a {input_size}x{input_size} input")
        self.conv1 = Conv2d(inplanes, planes, 1, input_size)
        self.bn1 = BatchNorm(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = Conv2d(planes, planes, 3, input_size, padding=1)
        self.bn2 = BatchNorm(planes)
        self.relu2 = nn.ReLU()
        self.avgpool = AvgPool(stride) if stride > 1 else nn.Identity()
        self.conv3 = Conv2d(planes, planes * self.expansion, 1, input_size // stride)
        self.bn3 = BatchNorm(planes * self.expansion)
        self.relu3 = nn.ReLU()

        self.downsample = None
        self.stride = stride
        if stride > 1 or inplanes != planes * self.expansion:
            # anti-aliased downsampling: average pool, then a stride-1 convolution
            self.downsample = nn.SequentialCell(OrderedDict([
                ("-1", AvgPool(stride) if stride > 1 else nn.Identity()),
                ("0", Conv2d(inplanes, planes * self.expansion, 1, input_size // stride)),
                ("1", BatchNorm(planes * self.expansion)),
            ]))

    def construct(self, x):
        identity = x
        out = self.relu1(conv_bn(self.conv1, self.bn1, x))
        out = self.relu2(conv_bn(self.conv2, self.bn2, out))
        out = self.avgpool(out)  # [N, size / stride, size / stride, planes]
        out = conv_bn(self.conv3, self.bn3, out)
        if self.downsample is not None:  # pool, convolution, BatchNorm
            identity = conv_bn(self.downsample[1], self.downsample[2], self.downsample[0](x))
        return self.relu3(out + identity)


class AttentionPool2d(nn.Cell):
    """Pools a feature map by attention from its mean (the query) to every position."""

    def __init__(self, spacial_dim: int, embed_dim: int, num_heads: int, output_dim: int = None):
        super().__init__()
        self.positional_embedding = Parameter(_zeros((spacial_dim ** 2 + 1, embed_dim)))
        self.k_proj = Linear(embed_dim, embed_dim)
        self.q_proj = Linear(embed_dim, embed_dim)
        self.v_proj = Linear(embed_dim, embed_dim)
        self.c_proj = Linear(embed_dim, output_dim or embed_dim)
        self.num_heads = num_heads

    def construct(self, x):
        n, c = x.shape[0], x.shape[-1]
        x = x.reshape(n, -1, c)  # channels-last [N, H, W, C] -> [N, HW, C]
        x = ops.cat([x.mean(axis=1, keep_dims=True), x], axis=1)  # [N, HW + 1, C]
        x = x + self.positional_embedding.astype(x.dtype)
        q = self.q_proj(x[:, :1])  # [N, 1, C]
        out = _attention(q, self.k_proj(x), self.v_proj(x), self.num_heads)  # [N, 1, C]
        return self.c_proj(out).squeeze(1)  # [N, output_dim]


class ModifiedResNet(nn.Cell):
    """OpenAI's ResNet: a three-convolution stem with an average pool, anti-aliased
    strided blocks, and attention pooling instead of global average pooling.

    Takes NCHW images like OpenAI's; computes channels-last (``[N, H, W, C]``) inside."""

    def __init__(self, layers, output_dim, heads, input_resolution=224, width=64):
        super().__init__()
        self.output_dim = output_dim
        self.input_resolution = input_resolution
        if input_resolution % 32:
            raise ModelConfigError(f"the ResNet needs an image size divisible by 32, got {input_resolution}")

        size = input_resolution // 2
        self.conv1 = Conv2d(3, width // 2, 3, input_resolution, stride=2, padding=1, channels_first=True)
        self.bn1 = BatchNorm(width // 2)
        self.relu1 = nn.ReLU()
        self.conv2 = Conv2d(width // 2, width // 2, 3, size, padding=1)
        self.bn2 = BatchNorm(width // 2)
        self.relu2 = nn.ReLU()
        self.conv3 = Conv2d(width // 2, width, 3, size, padding=1)
        self.bn3 = BatchNorm(width)
        self.relu3 = nn.ReLU()
        self.avgpool = AvgPool(2)

        self._inplanes = width  # grows as the stages are built
        self._size = size // 2  # likewise shrinks
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2)

        embed_dim = width * 32  # channels after layer4
        self.attnpool = AttentionPool2d(input_resolution // 32, embed_dim, heads, output_dim)

    def graph_bytes_per_image(self) -> int:
        """About how many bytes a compiled graph of this tower keeps per image. MindSpore reuses
        the buffers of finished layers, so this follows the largest convolution's buffers (its
        gathered taps and output, float32): calibrated on MindSpore 2.10 CPU, where the graph grew
        by 2.15-2.31 times that per image (RN50 and RN101 0.038 GB, RN50x4 0.073, RN50x16 0.157);
        the estimate is 2.6 times."""
        largest = 0
        for _, cell in self.cells_and_names():
            if isinstance(cell, Conv2d):
                out_channels, in_channels, k, _ = cell.weight.shape
                taps = in_channels * k * k if cell.index is not None else 0
                largest = max(largest, cell.output_size ** 2 * (taps + out_channels))
        return int(4 * 2.6 * largest)

    def graph_fixed_bytes(self) -> int:
        """About how many bytes a compiled graph of this tower keeps whatever the batch size: the
        weights as the products take them (BatchNorm folded in, taps reordered) and MindSpore's
        buffers around them, measured at 5.6-6.6 times the tower's float32 weights (RN50 0.83 GB,
        RN101 1.38, RN50x4 1.85, RN50x16 3.52, RN50x64 about 8.8); the estimate is the largest."""
        return int(6.6 * 4 * sum(param.size for param in self.get_parameters()))

    def _make_layer(self, planes, blocks, stride=1):
        layers = [Bottleneck(self._inplanes, planes, stride, self._size)]
        self._inplanes = planes * Bottleneck.expansion
        self._size //= stride
        layers += [Bottleneck(self._inplanes, planes, 1, self._size) for _ in range(1, blocks)]
        return nn.SequentialCell(layers)

    def construct(self, x):
        x = x.astype(self.conv1.weight.dtype)  # [N, 3, R, R]: the first convolution takes NCHW
        x = self.relu1(conv_bn(self.conv1, self.bn1, x))  # [N, R / 2, R / 2, width / 2], channels-last from here
        x = self.relu2(conv_bn(self.conv2, self.bn2, x))
        x = self.relu3(conv_bn(self.conv3, self.bn3, x))  # [N, R / 2, R / 2, width]
        x = self.avgpool(x)  # [N, R / 4, R / 4, width]
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)  # [N, R / 32, R / 32, width * 32]
        return self.attnpool(x)  # [N, output_dim]


class _RowLayerNorm(nn.Cell):
    """Layer normalisation of float32 rows by MindSpore's kernel, with its backward written out:
    on MindSpore 2.10's CPU backend ``LayerNormGrad`` takes 9-35 ms for ``[640-1600, 512-2048]``
    rows (15-40x an elementwise pass over them); the same gradients from elementwise ops, row means
    and :func:`channel_sums` take 1.1-2.2x less. Per-row and per-channel factors are spread with
    ``Tile`` (see :func:`across_rows`). ``[R, D], [D], [D] -> ([R, D], [R, 1] mean, [R, 1] variance)``"""

    def __init__(self, eps: float):
        super().__init__()
        self.eps = eps
        self.layer_norm = ops.LayerNorm(begin_norm_axis=-1, begin_params_axis=-1, epsilon=eps)

    def construct(self, rows, gamma, beta):
        return self.layer_norm(rows, gamma, beta)

    def bprop(self, rows, gamma, beta, out, dout):
        _, mean, var = out
        dy = dout[0]  # the statistics are not used outside
        width = rows.shape[1]
        rstd = _TILE(ops.rsqrt(var + self.eps), (1, width))  # [R, D]
        normalised = (rows - _TILE(mean, (1, width))) * rstd
        dnormalised = dy * across_rows(gamma, dy)
        mean_d = _TILE(dnormalised.mean(-1, keep_dims=True), (1, width))
        mean_dn = _TILE((dnormalised * normalised).mean(-1, keep_dims=True), (1, width))
        grad_rows = (dnormalised - mean_d - normalised * mean_dn) * rstd
        return grad_rows, channel_sums(dy * normalised), channel_sums(dy)


class LayerNorm(nn.Cell):
    """Layer normalisation over the last axis, always computed in float32 and
    returned in the input's dtype (OpenAI's fp16-safe LayerNorm)."""

    def __init__(self, width: int, eps: float = 1e-5):
        super().__init__()
        self.gamma = Parameter(_ones((width,)))
        self.beta = Parameter(_zeros((width,)))
        self.layer_norm = _RowLayerNorm(eps)

    def construct(self, x):
        shape = x.shape
        y, _, _ = self.layer_norm(x.astype(ms.float32).reshape(-1, shape[-1]), self.gamma.astype(ms.float32),
                                  self.beta.astype(ms.float32))  # [rows, width]
        return y.reshape(shape).astype(x.dtype)


class QuickGELU(nn.Cell):
    """The sigmoid approximation of GELU that CLIP was trained with."""

    def construct(self, x):
        return x * ops.sigmoid(1.702 * x)


class GELU(nn.Cell):
    """The exact GELU, ``x * Phi(x)`` with the error function (PyTorch's ``nn.GELU()``), which
    open_clip's models use unless they were trained with :class:`QuickGELU`."""

    def construct(self, x):
        return ops.gelu(x, approximate="none")


def _activation(quick_gelu: bool):
    """The MLP activation cell: :class:`QuickGELU` (OpenAI's models) or the exact :class:`GELU`."""
    return QuickGELU() if quick_gelu else GELU()


class MultiheadAttention(nn.Cell):
    """Self-attention with PyTorch's packed parameters (``in_proj_weight`` holds the
    query, key and value projections stacked on the first axis)."""

    def __init__(self, d_model: int, n_head: int):
        super().__init__()
        if d_model % n_head:
            raise ModelConfigError(f"width {d_model} is not divisible by {n_head} heads")
        self.num_heads = n_head
        self.d_model = d_model
        self.in_proj_weight = Parameter(_zeros((3 * d_model, d_model)))
        self.in_proj_bias = Parameter(_zeros((3 * d_model,)))
        self.out_proj = Linear(d_model, d_model)

    def construct(self, x, mask=None):
        qkv = linear(x, self.in_proj_weight, self.in_proj_bias)  # [N, L, 3D]
        q, k, v = ops.split(qkv, self.d_model, axis=-1)  # 3 x [N, L, D]
        return self.out_proj(_attention(q, k, v, self.num_heads, mask))  # [N, L, D]


class ResidualAttentionBlock(nn.Cell):
    """Pre-norm transformer block: attention and an MLP, each residual.

    OpenAI's blocks have an MLP of ``4 * d_model`` with QuickGELU; open_clip's larger models use
    other widths (``mlp_width``, e.g. ``int(1408 * 4.3637)``) and the exact GELU (``quick_gelu=False``).
    """

    def __init__(self, d_model: int, n_head: int, attn_mask: Tensor = None, mlp_width: int = None,
                 quick_gelu: bool = True):
        super().__init__()
        mlp_width = mlp_width or d_model * 4
        self.attn = MultiheadAttention(d_model, n_head)
        self.ln_1 = LayerNorm(d_model)
        self.mlp = nn.SequentialCell(OrderedDict([
            ("c_fc", Linear(d_model, mlp_width)),  # [N, L, d_model] -> [N, L, mlp_width]
            ("gelu", _activation(quick_gelu)),
            ("c_proj", Linear(mlp_width, d_model)),  # -> [N, L, d_model]
        ]))
        self.ln_2 = LayerNorm(d_model)
        self.attn_mask = attn_mask  # a constant, not a Parameter

    def construct(self, x):
        mask = None
        if self.attn_mask is not None:
            n_ctx = x.shape[1]
            mask = self.attn_mask[:n_ctx, :n_ctx]
        x = x + self.attn(self.ln_1(x), mask)
        x = x + self.mlp(self.ln_2(x))
        return x


class Transformer(nn.Cell):
    """A stack of residual attention blocks on batch-first input ``[N, L, width]``."""

    def __init__(self, width: int, layers: int, heads: int, attn_mask: Tensor = None, mlp_width: int = None,
                 quick_gelu: bool = True):
        super().__init__()
        self.width = width
        self.layers = layers
        self.resblocks = nn.SequentialCell([ResidualAttentionBlock(width, heads, attn_mask, mlp_width, quick_gelu)
                                            for _ in range(layers)])

    def construct(self, x):
        return self.resblocks(x)


class PatchEmbedding(nn.Cell):
    """The ViT's patch convolution (kernel = stride = patch, no bias) as what it is: the patches do
    not overlap, so it is one matrix product of the flattened patches with the weight, which keeps
    PyTorch's layout ``[width, 3, patch, patch]`` and name. ``[N, 3, R, R] -> [N, grid ** 2, width]``."""

    def __init__(self, width: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.weight = Parameter(_zeros((width, 3, patch_size, patch_size)))

    def construct(self, x):
        n, c, r = x.shape[0], x.shape[1], x.shape[2]
        p = self.patch_size
        g = r // p
        x = x.reshape(n, c, g, p, g, p).transpose(0, 2, 4, 1, 3, 5)  # [N, grid, grid, 3, patch, patch]
        x = x.reshape(n, g * g, c * p * p)  # [N, grid ** 2, 3 * patch ** 2]
        return linear(x, self.weight.reshape(self.weight.shape[0], -1))  # [N, grid ** 2, width]


class VisionTransformer(nn.Cell):
    """ViT image encoder: patch embedding, class token, transformer, projection."""

    def __init__(self, input_resolution: int, patch_size: int, width: int, layers: int, heads: int,
                 output_dim: int, mlp_width: int = None, quick_gelu: bool = True):
        super().__init__()
        self.input_resolution = input_resolution
        self.output_dim = output_dim
        self.conv1 = PatchEmbedding(width, patch_size)
        self.class_embedding = Parameter(_zeros((width,)))
        self.positional_embedding = Parameter(_zeros(((input_resolution // patch_size) ** 2 + 1, width)))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, mlp_width=mlp_width, quick_gelu=quick_gelu)
        self.ln_post = LayerNorm(width)
        self.proj = Parameter(_zeros((width, output_dim)))
        self.patch_dropout = 0.0  # training only: the fraction of patch tokens dropped (open_clip's)

    def drop_patches(self, x):
        """Keep the class token and a random ``1 - patch_dropout`` of the patch tokens of each image
        (open_clip's patch dropout, which speeds up training). ``[N, 1 + P, W] -> [N, 1 + K, W]``."""
        n, length, width = x.shape
        keep = max(1, int((length - 1) * (1.0 - self.patch_dropout)))
        scores = ops.rand((n, length - 1))  # a random order of the patches of each image
        index = ops.topk(scores, keep)[1]  # [N, K]
        patches = ops.gather_elements(x[:, 1:], 1, index.expand_dims(-1).broadcast_to((n, keep, width)))
        return ops.cat([x[:, :1], patches], axis=1)

    def construct(self, x):
        x = self.conv1(x.astype(self.conv1.weight.dtype))  # [N, grid ** 2, width]
        n, width = x.shape[0], x.shape[2]
        cls = ops.broadcast_to(self.class_embedding.astype(x.dtype).reshape(1, 1, width), (n, 1, width))
        x = ops.cat([cls, x], axis=1)  # [N, grid ** 2 + 1, width]
        x = x + self.positional_embedding.astype(x.dtype)
        if self.training and self.patch_dropout > 0:
            x = self.drop_patches(x)  # [N, 1 + K, width]
        x = self.ln_pre(x)
        x = self.transformer(x)
        x = self.ln_post(x[:, 0, :])  # [N, width]
        return ops.matmul(x, self.proj.astype(x.dtype))  # [N, output_dim]


class CLIP(nn.Cell):
    """Image and text encoders trained to agree; ``construct(image, text)`` returns
    ``(logits_per_image, logits_per_text)`` like OpenAI's ``CLIP.forward``.

    The first ten arguments are OpenAI's. The keyword-only rest describe open_clip's
    architectures and default to OpenAI's design: ``vision_heads`` (default: heads of 64
    channels), ``vision_mlp_ratio`` / ``text_mlp_ratio`` (MLP width = ``int(width * ratio)``, default
    4) and ``quick_gelu`` (``False``: the exact GELU). :attr:`architecture` holds every argument.
    """

    def __init__(self,
                 embed_dim: int,
                 # vision
                 image_resolution: int,
                 vision_layers: Union[Tuple[int, int, int, int], int],
                 vision_width: int,
                 vision_patch_size: int,
                 # text
                 context_length: int,
                 vocab_size: int,
                 transformer_width: int,
                 transformer_heads: int,
                 transformer_layers: int,
                 *,
                 vision_heads: int = None,
                 vision_mlp_ratio: float = 4.0,
                 text_mlp_ratio: float = 4.0,
                 quick_gelu: bool = True):
        super().__init__()
        self.architecture = dict(
            embed_dim=embed_dim, image_resolution=image_resolution,
            vision_layers=list(vision_layers) if isinstance(vision_layers, (tuple, list)) else vision_layers,
            vision_width=vision_width, vision_patch_size=vision_patch_size, context_length=context_length,
            vocab_size=vocab_size, transformer_width=transformer_width, transformer_heads=transformer_heads,
            transformer_layers=transformer_layers, vision_heads=vision_heads, vision_mlp_ratio=vision_mlp_ratio,
            text_mlp_ratio=text_mlp_ratio, quick_gelu=bool(quick_gelu))
        self.context_length = context_length
        self.embed_dim = embed_dim
        if isinstance(vision_layers, (tuple, list)):
            self.visual = ModifiedResNet(layers=vision_layers, output_dim=embed_dim,
                                         heads=vision_heads or vision_width * 32 // 64,
                                         input_resolution=image_resolution, width=vision_width)
        else:
            self.visual = VisionTransformer(input_resolution=image_resolution, patch_size=vision_patch_size,
                                            width=vision_width, layers=vision_layers,
                                            heads=vision_heads or vision_width // 64, output_dim=embed_dim,
                                            mlp_width=int(vision_width * vision_mlp_ratio), quick_gelu=quick_gelu)

        self.transformer = Transformer(width=transformer_width, layers=transformer_layers,
                                       heads=transformer_heads, attn_mask=self.build_attention_mask(),
                                       mlp_width=int(transformer_width * text_mlp_ratio), quick_gelu=quick_gelu)
        self.vocab_size = vocab_size
        self.token_embedding = nn.Embedding(vocab_size, transformer_width, embedding_table="zeros")
        self.positional_embedding = Parameter(_zeros((context_length, transformer_width)))
        self.ln_final = LayerNorm(transformer_width)
        self.text_projection = Parameter(_zeros((transformer_width, embed_dim)))
        self.logit_scale = Parameter(Tensor(np.log(1 / 0.07), ms.float32))
        # ``load(mode=GRAPH)`` replaces these by compiled versions (see ``compile_towers``)
        self._image_features = self._compute_image_features
        self._text_features = self._compute_text_features
        self._image_rows = None

    def build_attention_mask(self):
        """The causal mask of the text transformer: ``-inf`` above the diagonal."""
        mask = np.triu(np.full((self.context_length, self.context_length), -np.inf, np.float32), 1)
        return Tensor(mask)

    @property
    def dtype(self):
        """The compute dtype: float16 for OpenAI's GPU/Ascend setting, float32 on CPU."""
        return self.visual.conv1.weight.dtype

    def compile_towers(self, image: bool = True, text: bool = True, image_rows: int = None):
        """Run the image and/or text tower as compiled graphs (``mindspore.jit``) from now on,
        without touching MindSpore's global execution mode; the other tower runs eagerly.

        Batch sizes are rounded up to a few buckets (1, 2, 3, 4, 6, 8, 12, 16, 24, ...; the extra
        rows are zeros and dropped) and text lengths to multiples of 8, so each bucket compiles once:
        a loop whose last batch is smaller, or calls with 1, 3 or 7 images, reuse a few graphs.
        A compiled graph keeps its intermediate buffers for as long as it lives (see the README).
        ``image_rows``: compile the image tower for this many images per call and run larger
        batches in chunks of that size; the remainder runs, for a ResNet, as one padded call when
        it is half of ``image_rows`` or more, else one image per call (two graphs: each keeps a
        prepared copy of the weights), for a ViT in calls of decreasing powers of two (see
        :func:`image_chunks`); memory stays bounded. Default: buckets."""
        if image_rows is not None and (isinstance(image_rows, bool) or int(image_rows) < 1):
            raise ValueError(f"image_rows must be a positive integer, got {image_rows!r}")
        self._image_rows = None if image_rows is None else int(image_rows)
        self._image_features = ms.jit(self._compute_image_features) if image else self._compute_image_features
        self._text_features = ms.jit(self._compute_text_features) if text else self._compute_text_features
        return self

    @property
    def compiled_towers(self):
        """``(image, text)``: which towers run as compiled graphs."""
        return (self._image_features != self._compute_image_features,  # bound methods compare equal,
                self._text_features != self._compute_text_features)  # never identical

    def to_float32(self):
        """Convert every parameter to float32, like OpenAI's ``model.float()`` (for example to run
        in float32 on a GPU, where ``clip.load`` keeps OpenAI's float16 weights). Returns the model.

        Not named ``float``: a ``float`` attribute on a Cell shadows the builtin in MindSpore's graph
        compiler and breaks ``mindspore.jit``."""
        for _, param in self.parameters_and_names():
            if param.dtype != ms.float32:
                param.set_dtype(ms.float32)
        if any(self.compiled_towers):  # the graphs were specialised for the old dtypes
            self.compile_towers(*self.compiled_towers, image_rows=self._image_rows)
        return self

    # -- the towers -----------------------------------------------------------------------------
    def _compute_image_features(self, image):
        return self.visual(image.astype(self.dtype))  # [N, embed_dim]

    def _compute_text_features(self, text):
        n, n_ctx = text.shape
        x = self.token_embedding(text).astype(self.dtype)  # [N, n_ctx, width]
        x = x + self.positional_embedding[:n_ctx].astype(self.dtype)
        x = self.transformer(x)
        x = self.ln_final(x)  # [N, n_ctx, width]
        # the features of the end-of-text token, which has the largest id in each row
        eot = ops.argmax(text, -1).astype(ms.int32)
        rows = ops.arange(n, dtype=ms.int32) * n_ctx + eot
        x = ops.gather(x.reshape(n * n_ctx, -1), rows, 0)  # [N, width]
        return ops.matmul(x, self.text_projection.astype(x.dtype))  # [N, embed_dim]

    # -- public API ----------------------------------------------------------------------------
    def encode_image(self, image):
        """Image features ``[N, embed_dim]`` of a batch ``[N, 3, R, R]`` (a single ``[3, R, R]``
        image is taken as a batch of one)."""
        if image.ndim == 3:
            image = image.expand_dims(0)
        _check_image(image, self.visual.input_resolution)
        if not self.compiled_towers[0]:
            return self._image_features(image)
        rows = self._image_rows
        if rows is None:
            return _padded_call(self._image_features, image, batch_bucket(image.shape[0]))
        powers = isinstance(self.visual, VisionTransformer)  # its graphs take the weights as they are
        chunks = [_padded_call(self._image_features, image[start:start + size], size)
                  for start, size in image_chunks(image.shape[0], rows, powers)]
        return chunks[0] if len(chunks) == 1 else ops.cat(chunks)

    def encode_text(self, text):
        """Text features ``[N, embed_dim]`` of token ids ``[N, n_ctx]`` from :func:`clip.tokenize`
        (a single row ``[n_ctx]`` is taken as a batch of one).

        Only the tokens up to the last end-of-text token of the batch are computed: the causal mask
        means that later tokens never reach an end-of-text feature, so the result is the full
        computation's, for a fraction of its cost on short prompts."""
        if text.ndim == 1:
            text = text.expand_dims(0)
        _check_text(text, self.context_length, self.vocab_size)
        n_ctx = text.shape[1]
        length = int(text.argmax(-1).max()) + 1  # the end-of-text token has the largest id
        if not self.compiled_towers[1]:
            return self._text_features(text[:, :length] if length < n_ctx else text)
        length = length_bucket(length, n_ctx)
        return _padded_call(self._text_features, text[:, :length] if length < n_ctx else text,
                            batch_bucket(text.shape[0]))

    def construct(self, image, text):
        image_features = self.encode_image(image)
        text_features = self.encode_text(text)
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        text_features = text_features / text_features.norm(dim=-1, keepdim=True)
        logit_scale = self.logit_scale.exp().astype(image_features.dtype)
        logits_per_image = logit_scale * ops.matmul(image_features, text_features.T)  # [N_img, N_txt]
        logits_per_text = logits_per_image.T  # [N_txt, N_img]
        return logits_per_image, logits_per_text


def batch_bucket(n: int) -> int:
    """The compiled batch size that serves ``n`` rows: the smallest of 1, 2, 3, 4, 6, 8, 12, 16,
    24, 32, ... (powers of two and 1.5 times them) that is at least ``n``."""
    size = 1
    while size < n:
        if size >= 2 and size * 3 // 2 >= n:
            return size * 3 // 2
        size *= 2
    return size


def image_chunks(n: int, rows: int, powers: bool = False):
    """How a tower compiled for ``rows`` images per call takes ``n`` images: ``(start, size)``
    calls of ``rows``, then the remainder. By default a remainder of half of ``rows`` or more is one
    call of ``rows`` (padded with zero rows), a smaller one calls of one image each, so that one
    image never pays for ``rows`` (at most two graphs: ``rows`` and 1; for towers whose every graph
    keeps a prepared copy of the weights, the ResNets). With ``powers`` the remainder runs in calls
    of decreasing powers of two (4 + 2 + 1 for 7 of 8): no padded work, at most one graph per power
    of two up to ``rows`` (for towers whose graphs keep little besides their activations, the ViTs)."""
    full, rest = divmod(n, rows)
    calls = [(start, rows) for start in range(0, full * rows, rows)]
    start = full * rows
    if powers:
        size = 1 << (rows.bit_length() - 1)  # the largest power of two <= rows
        while rest:
            if size <= rest:
                calls.append((start, size))
                start, rest = start + size, rest - size
            size //= 2
    elif 2 * rest >= rows:
        calls.append((start, rows))
    else:
        calls += [(i, 1) for i in range(start, n)]
    return calls


def length_bucket(length: int, limit: int) -> int:
    """The compiled text length that serves ``length`` tokens: a multiple of 8, at most ``limit``."""
    return min(-(-length // 8) * 8, limit)


def _padded_call(function, x, size):
    """``function(x)`` computed on ``x`` padded with zero rows to ``size`` rows; the padding's
    results are dropped (every row is computed independently in inference)."""
    n = x.shape[0]
    if size == n:
        return function(x)
    x = ops.cat([x, ops.zeros((size - n,) + tuple(x.shape[1:]), x.dtype)])
    return function(x)[:n]


def _check_image(image, resolution):
    if image.ndim != 4 or image.shape[1] != 3 or image.shape[2] != resolution or image.shape[3] != resolution:
        raise ValueError(f"encode_image expects images of shape [N, 3, {resolution}, {resolution}] "
                         f"(or one image [3, {resolution}, {resolution}]), got {tuple(image.shape)}")
    if image.shape[0] == 0:
        raise ValueError("encode_image got an empty batch (N = 0)")
    if not ops.is_floating_point(image):
        raise TypeError(f"encode_image expects a floating-point tensor, got {image.dtype}; "
                        "use the preprocess returned by clip.load")


def _check_text(text, context_length, vocab_size):
    if text.ndim != 2 or text.shape[1] > context_length or text.shape[1] < 2:
        raise ValueError(f"encode_text expects token ids of shape [N, n_ctx] with 2 <= n_ctx <= "
                         f"{context_length}, got {tuple(text.shape)}; use clip.tokenize")
    if text.shape[0] == 0:
        raise ValueError("encode_text got an empty batch (N = 0)")
    if ops.is_floating_point(text) or text.dtype == ms.bool_:
        raise TypeError(f"encode_text expects integer token ids, got {text.dtype}; use clip.tokenize")
    if text.max() >= vocab_size or text.min() < 0:
        raise ValueError(f"encode_text got token ids outside [0, {vocab_size}) (the model's vocabulary); "
                         "use clip.tokenize")


# ---------------------------------------------------------------------------------------------
# Hyper-parameters from the weights, and strict loading

#: Checkpoint entries that are not parameters and are deliberately ignored: OpenAI's
#: TorchScript files carry ``input_resolution``, ``context_length`` and ``vocab_size``;
#: PyTorch BatchNorm counts batches; checkpoints saved from the mindcv port's model hold
#: its causal masks as ``...attn_mask`` parameters (constants here).
IGNORED_CHECKPOINT_KEYS = ("input_resolution", "context_length", "vocab_size")
_IGNORED_SUFFIXES = (".num_batches_tracked", ".attn_mask")

#: PyTorch's name of each MindSpore parameter, by the type of the cell owning it.
#: Cells of other types use the same names in both frameworks.
TORCH_NAMES = {
    BatchNorm: {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
                     "moving_variance": "running_var"},
    LayerNorm: {"gamma": "weight", "beta": "bias"},
    nn.Embedding: {"embedding_table": "weight"},
}


def is_ignored_key(name: str) -> bool:
    """Whether a checkpoint entry is in the documented ignore set."""
    return name in IGNORED_CHECKPOINT_KEYS or name.endswith(_IGNORED_SUFFIXES)


def torch_name_map(model: nn.Cell) -> "OrderedDict[str, str]":
    """MindSpore parameter name -> OpenAI's PyTorch name, for every parameter of ``model``."""
    names = OrderedDict()
    for prefix, cell in model.cells_and_names():
        table = next((t for cls, t in TORCH_NAMES.items() if isinstance(cell, cls)), {})
        for local, _ in cell.parameters_and_names(expand=False):
            local = local.rsplit(".", 1)[-1]
            full = f"{prefix}.{local}" if prefix else local
            names[full] = f"{prefix}.{table.get(local, local)}" if prefix else table.get(local, local)
    return names


def _shape(value):
    return tuple(value.shape)


def _fits(value, param):
    """Same shape; a scalar may be stored as ``[]`` or ``[1]`` (MindSpore checkpoints store
    0-d tensors such as ``logit_scale`` as ``[1]``)."""
    shape, expected = _shape(value), tuple(param.shape)
    return shape == expected or (len(shape) <= 1 and len(expected) <= 1 and
                                 int(np.prod(shape)) == int(np.prod(expected)) == 1)


def _first(state_dict, prefix):
    """The first entry whose name starts with ``prefix`` (names that differ between the two
    spellings, e.g. ``token_embedding.weight`` / ``token_embedding.embedding_table``)."""
    for key, value in state_dict.items():
        if key.startswith(prefix):
            return value
    raise ModelConfigError(f"the weights have no entry '{prefix}*'")


def _get(state_dict, key):
    if key not in state_dict:
        raise ModelConfigError(f"the weights have no entry '{key}'")
    return state_dict[key]


def _square_root(count, what):
    side = int(round(count ** 0.5))
    if side * side != count:
        raise ModelConfigError(f"{what} has {count} positions, not a square grid")
    return side


def infer_config(state_dict) -> dict:
    """The ``CLIP(...)`` arguments that the weights describe, like OpenAI's ``build_model``.

    Works with PyTorch names and with MindSpore names (values only need ``.shape``).
    Raises :class:`ModelConfigError` when the weights match no valid architecture.
    """
    if not hasattr(state_dict, "keys") or not len(state_dict):
        raise ModelConfigError("the weights are empty")
    vit = "visual.proj" in state_dict
    if vit:
        conv = _shape(_get(state_dict, "visual.conv1.weight"))
        if len(conv) != 4 or conv[1] != 3 or conv[2] != conv[3]:
            raise ModelConfigError(f"visual.conv1.weight has shape {conv}, expected [width, 3, patch, patch]")
        vision_width, vision_patch_size = conv[0], conv[-1]
        vision_layers = len([k for k in state_dict
                             if k.startswith("visual.") and k.endswith(".attn.in_proj_weight")])
        positions = _shape(_get(state_dict, "visual.positional_embedding"))[0]
        image_resolution = vision_patch_size * _square_root(positions - 1, "visual.positional_embedding")
        if vision_width % 64:
            raise ModelConfigError(f"vision width {vision_width} is not a multiple of 64 (heads of 64)")
        if vision_layers == 0:
            raise ModelConfigError("the weights have no visual transformer blocks")
    else:
        counts = [len({k.split(".")[2] for k in state_dict if k.startswith(f"visual.layer{b}.")})
                  for b in (1, 2, 3, 4)]
        if not all(counts):
            raise ModelConfigError(
                "the weights are neither a ViT (no 'visual.proj') nor a ModifiedResNet "
                f"(residual blocks per stage: {counts})")
        vision_layers = tuple(counts)
        vision_width = _shape(_get(state_dict, "visual.layer1.0.conv1.weight"))[0]
        positions = _shape(_get(state_dict, "visual.attnpool.positional_embedding"))[0]
        image_resolution = 32 * _square_root(positions - 1, "visual.attnpool.positional_embedding")
        vision_patch_size = None
        if (vision_width * 32) % 64:
            raise ModelConfigError(f"vision width {vision_width} gives no whole number of heads")

    text_projection = _shape(_get(state_dict, "text_projection"))
    positional = _shape(_get(state_dict, "positional_embedding"))
    embedding = _shape(_first(state_dict, "token_embedding."))
    if len(text_projection) != 2 or len(positional) != 2 or len(embedding) != 2:
        raise ModelConfigError("text_projection, positional_embedding and the token embedding must be 2-D")
    embed_dim = text_projection[1]
    context_length, transformer_width = positional
    vocab_size = embedding[0]
    if transformer_width % 64:
        raise ModelConfigError(f"text width {transformer_width} is not a multiple of 64 (heads of 64)")
    transformer_layers = len({k.split(".")[2] for k in state_dict if k.startswith("transformer.resblocks.")})
    if transformer_layers == 0:
        raise ModelConfigError("the weights have no text transformer blocks")
    return dict(embed_dim=embed_dim, image_resolution=image_resolution, vision_layers=vision_layers,
                vision_width=vision_width, vision_patch_size=vision_patch_size,
                context_length=context_length, vocab_size=vocab_size, transformer_width=transformer_width,
                transformer_heads=transformer_width // 64, transformer_layers=transformer_layers)


def _raise_on_mismatch(what, missing, unexpected, wrong=()):
    """Raise :class:`WeightsMismatchError` listing the offending entries, if there are any."""
    lines = []
    if wrong:
        lines.append(f"shape mismatch ({len(wrong)}): " + "; ".join(wrong[:20]))
    if missing:
        lines.append(f"missing parameters ({len(missing)}): " + ", ".join(missing[:50]))
    if unexpected:
        lines.append(f"unexpected entries ({len(unexpected)}): " + ", ".join(unexpected[:50]))
    if lines:
        raise WeightsMismatchError(f"{what} do not fit the CLIP model:\n  " + "\n  ".join(lines))


def _infer_config_of(state_dict, source):
    try:
        return infer_config(state_dict)
    except ModelConfigError as error:
        if source:
            raise ModelConfigError(f"{source}: {error}") from None
        raise


def _to_numpy(value):
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, Tensor):  # Parameter is a Tensor
        return value.asnumpy()
    return np.asarray(value)


def _is_half_param(name: str, cell_types: dict) -> bool:
    """Whether OpenAI keeps this parameter in float16 in its fp16 models (``convert_weights``):
    those of convolutions, linear layers, attention projections and the two output projections."""
    owner = cell_types.get(name.rsplit(".", 1)[0] if "." in name else "")
    if owner in (Conv2d, PatchEmbedding, Linear, MultiheadAttention):
        return True
    return name in ("text_projection", "visual.proj")


def load_weights(model: nn.Cell, state_dict, dtype=ms.float32, check_finite: bool = True, source=None):
    """Copy ``state_dict`` (MindSpore names) into ``model``, strictly.

    Every parameter must be present with the right shape, and every entry must be used
    except the documented ignore set (:data:`IGNORED_CHECKPOINT_KEYS`, ``*.num_batches_tracked``,
    ``*.attn_mask``); otherwise :class:`WeightsMismatchError` names the offending entries.
    With ``dtype=float16`` the parameters OpenAI keeps in fp16 are stored in fp16 and the
    rest in fp32; with float32 everything is fp32. ``check_finite`` refuses NaN/Inf values.
    """
    where = f" in {source}" if source else ""
    params = OrderedDict(model.parameters_and_names())
    cell_types = {name: type(cell) for name, cell in model.cells_and_names()}
    missing = [name for name in params if name not in state_dict]
    unexpected = [key for key in state_dict if key not in params and not is_ignored_key(key)]
    wrong = [f"{name}: checkpoint {_shape(state_dict[name])} vs model {tuple(p.shape)}"
             for name, p in params.items() if name in state_dict and not _fits(state_dict[name], p)]
    _raise_on_mismatch(f"the weights{where}", missing, unexpected, wrong)
    for name, param in params.items():
        value = _to_numpy(state_dict[name])
        if not np.issubdtype(value.dtype, np.floating):
            raise WeightsMismatchError(f"parameter {name}{where} has dtype {value.dtype}, expected floating point")
        if check_finite and not np.isfinite(value).all():
            raise WeightsMismatchError(f"parameter {name}{where} contains NaN or Inf values")
        half = dtype == ms.float16 and _is_half_param(name, cell_types)
        array = np.ascontiguousarray(value, dtype=np.float16 if half else np.float32).reshape(param.shape)
        if param.dtype == (ms.float16 if half else ms.float32) and param.has_init is False:
            # in place: a compiled graph that already uses this parameter sees the new values
            # (``set_data`` gives the parameter new storage and such a graph keeps the old one)
            ops.assign(param, Tensor(array))
        else:
            param.set_dtype(ms.float16 if half else ms.float32)
            param.set_data(Tensor(array))
    return model


def convert_torch_state_dict(torch_state_dict, source=None) -> "OrderedDict[str, object]":
    """Rename a PyTorch CLIP state dict (OpenAI's names) to MindSpore names, strictly.

    The architecture is inferred from the weights and the names come from
    :func:`torch_name_map` of that architecture. Every parameter must be present and every
    entry used (except the documented ignore set), else :class:`WeightsMismatchError`.
    Values are passed through unchanged.
    """
    where = f" in {source}" if source else ""
    skeleton = CLIP(**_infer_config_of(torch_state_dict, source))  # parameters are not materialised
    names = torch_name_map(skeleton)
    missing = [torch for torch in names.values() if torch not in torch_state_dict]
    known = set(names.values())
    unexpected = [key for key in torch_state_dict if key not in known and not is_ignored_key(key)]
    _raise_on_mismatch(f"the PyTorch weights{where}", missing, unexpected)
    return OrderedDict((ms_name, torch_state_dict[torch]) for ms_name, torch in names.items())


def build_model(state_dict, dtype=ms.float32, check_finite: bool = True, source=None,
                architecture: dict = None, model_class=None) -> CLIP:
    """Build a CLIP whose hyper-parameters are inferred from ``state_dict`` and load it.

    ``state_dict`` maps MindSpore parameter names (those of a ``.ckpt``, see
    :data:`TORCH_NAMES`) to arrays or tensors. ``architecture``: the ``CLIP(...)`` arguments
    (a checkpoint that records them, an open_clip configuration) instead of inferring them;
    ``model_class``: a subclass of :class:`CLIP` to build. Returns the model in inference mode.
    """
    if architecture is not None:
        try:
            model = (model_class or CLIP)(**architecture)
        except TypeError as error:
            raise ModelConfigError(f"{source or 'the weights'}: the recorded architecture is invalid ({error})") from None
    else:
        model = (model_class or CLIP)(**_infer_config_of(state_dict, source))
    load_weights(model, state_dict, dtype=dtype, check_finite=check_finite, source=source)
    model.set_train(False)
    return model
