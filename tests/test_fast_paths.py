"""The fast paths of ``CLIP.encode_text`` / ``encode_image`` give the full computation's results.

- Short prompts: only the tokens up to the batch's last end-of-text token are computed; with the
  causal mask the later tokens never reach an end-of-text feature. Compared with the full
  77-token computation (``_compute_text_features``) for mixed lengths in one batch, eager and
  compiled.
- Compiled towers pad the batch to a bucket and the text to a multiple of 8; batches of changing
  size (1, 3, 7, a smaller last batch) give the rows the eager model gives, and reuse graphs.
- The channels-last convolution (im2col) equals a direct convolution computed in NumPy.
- Training-mode BatchNorm (written-out backward, blocked column sums) equals PyTorch's formulas
  evaluated in float64 NumPy.
"""
import os
import sys

import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor

import clip
from clip.model import AvgPool, BatchNorm, Conv2d, batch_bucket, channel_sums, length_bucket

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tiny_checkpoint import write_tiny_checkpoint  # noqa: E402

TEXTS = ["a", "a photo of a dog", "a diagram of a very small red car parked next to a house at night",
         "two cats", "x " * 30, "an astronaut riding a horse"]


@pytest.fixture(scope="module", params=["vit", "resnet"])
def tiny_ckpt(request, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("fast") / f"tiny_{request.param}.ckpt")
    write_tiny_checkpoint(path, kind=request.param, seed=3)
    return path


def _full_text(model, tokens):
    return model._compute_text_features(tokens).asnumpy()  # all 77 positions


@pytest.mark.parametrize("eager", [True, False], ids=["eager", "compiled"])
def test_short_prompts_equal_full_computation(tiny_ckpt, eager):
    model, _ = clip.load(tiny_ckpt, device="CPU", eager=eager)
    assert model.compiled_towers[1] is (not eager)
    tokens = clip.tokenize(TEXTS)
    full = _full_text(model, tokens)
    fast = model.encode_text(tokens).asnumpy()
    np.testing.assert_allclose(fast, full, rtol=1e-5, atol=1e-6)
    # rows in another order and a single row: each row's feature does not depend on the others
    order = [3, 0, 5, 1]
    np.testing.assert_allclose(model.encode_text(tokens[order]).asnumpy(), full[order], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.encode_text(tokens[1]).asnumpy(), full[1:2], rtol=1e-5, atol=1e-6)


def test_short_prompt_path_can_fail(tiny_ckpt):
    """Cutting one token too early (before an end-of-text token) changes that row's feature:
    the equality above is not vacuous."""
    model, _ = clip.load(tiny_ckpt, device="CPU", eager=True)
    tokens = clip.tokenize(TEXTS)
    full = _full_text(model, tokens)
    length = int(tokens.argmax(-1).max())  # one short of the last end-of-text token
    cut = model._compute_text_features(tokens[:, :length]).asnumpy()
    longest = int(tokens.argmax(-1).argmax())
    assert not np.allclose(cut[longest], full[longest], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("mode", [ms.GRAPH_MODE, ms.PYNATIVE_MODE], ids=["graph", "pynative"])
def test_changing_batch_sizes_match_eager(tiny_ckpt, mode):
    eager, _ = clip.load(tiny_ckpt, device="CPU", eager=True)
    model, preprocess = clip.load(tiny_ckpt, device="CPU", mode=mode)
    rng = np.random.RandomState(0)
    r = model.visual.input_resolution
    images = rng.randn(11, 3, r, r).astype(np.float32)
    tokens = clip.tokenize(TEXTS * 2)[:11]
    expected_images = eager.encode_image(Tensor(images)).asnumpy()
    expected_texts = eager.encode_text(tokens).asnumpy()
    for rows in ([0], [1, 2, 3], list(range(4, 11)), list(range(8)), list(range(8, 11))):
        got = model.encode_image(Tensor(images[rows])).asnumpy()
        np.testing.assert_allclose(got, expected_images[rows], rtol=1e-4, atol=1e-5)
        got = model.encode_text(tokens[rows]).asnumpy()
        np.testing.assert_allclose(got, expected_texts[rows], rtol=1e-4, atol=1e-5)
    logits, _ = model(Tensor(images[:3]), tokens[:5])
    assert logits.shape == (3, 5)


def test_buckets():
    assert [batch_bucket(n) for n in range(1, 18)] == [1, 2, 3, 4, 6, 6, 8, 8, 12, 12, 12, 12, 16, 16, 16, 16, 24]
    assert all(batch_bucket(n) >= n and batch_bucket(n) < 1.5 * n + 1 for n in range(1, 2000))
    assert len({batch_bucket(n) for n in range(1, 257)}) == 16  # few graphs for any batch up to 256
    assert [length_bucket(n, 77) for n in (1, 8, 9, 16, 70, 72, 73, 77)] == [8, 8, 16, 16, 72, 72, 77, 77]


def test_load_eager_and_graph_conflict(tiny_ckpt):
    with pytest.raises(ValueError, match="eager"):
        clip.load(tiny_ckpt, device="CPU", mode=0, eager=True)


def test_default_compiles_the_towers(tiny_ckpt, monkeypatch):
    model, _ = clip.load(tiny_ckpt, device="CPU")
    assert model.compiled_towers == (True, True)
    if isinstance(model.visual, clip.model.VisionTransformer):  # chunks of 8 images: bounded graph memory
        assert model._image_rows == clip.clip.VIT_IMAGE_ROWS == 8
    model, _ = clip.load(tiny_ckpt, device="CPU", mode=0)
    assert model.compiled_towers == (True, True)
    model, _ = clip.load(tiny_ckpt, device="CPU", eager=True)
    assert model.compiled_towers == (False, False)
    # a ResNet image tower whose graph would not fit the memory budget stays eager
    monkeypatch.setenv("CLIP_GRAPH_MEMORY_GB", "1e-9")
    model, _ = clip.load(tiny_ckpt, device="CPU")
    resnet = isinstance(model.visual, clip.model.ModifiedResNet)
    assert model.compiled_towers == (not resnet, True)


def _numpy_conv(x, w, stride, padding):
    """Direct convolution, NCHW, float64."""
    n, c, h, _ = x.shape
    o, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    out_size = (h + 2 * padding - k) // stride + 1
    out = np.zeros((n, o, out_size, out_size))
    for i in range(out_size):
        for j in range(out_size):
            patch = xp[:, :, i * stride:i * stride + k, j * stride:j * stride + k]  # [N, C, k, k]
            out[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3]))
    return out


def _conv_input(x, channels_first):
    """NCHW ``x`` as a :class:`Conv2d` of that layout takes it."""
    return Tensor((x if channels_first else x.transpose(0, 2, 3, 1)).astype(np.float32))


@pytest.mark.parametrize("channels_first", [False, True])
@pytest.mark.parametrize("k,stride,padding,size", [(3, 1, 1, 9), (3, 2, 1, 10), (1, 1, 0, 5), (3, 1, 0, 6)])
def test_channels_last_convolution(k, stride, padding, size, channels_first):
    rng = np.random.RandomState(k + stride + size)
    x = rng.randn(2, 5, size, size)
    w = rng.randn(7, 5, k, k)
    conv = Conv2d(5, 7, k, size, stride=stride, padding=padding, channels_first=channels_first)
    conv.weight.set_data(Tensor(w.astype(np.float32)))
    got = conv(_conv_input(x, channels_first)).asnumpy().transpose(0, 3, 1, 2)
    expected = _numpy_conv(x, w, stride, padding)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    if k > 1:  # the check sees the taps of another channel order (kernel positions swapped with channels)
        swapped = _numpy_conv(x, w.transpose(0, 1, 3, 2), stride, padding)
        assert np.abs(swapped - expected).max() > 1e-1


def _numpy_conv_grads(x, w, g, stride, padding):
    """Gradients of ``sum(conv(x, w) * g)`` with respect to ``x`` and ``w``, float64, NCHW."""
    k = w.shape[-1]
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    grad_xp, grad_w = np.zeros_like(xp), np.zeros_like(w)
    for i in range(g.shape[2]):
        for j in range(g.shape[3]):
            window = (slice(None), slice(None), slice(i * stride, i * stride + k), slice(j * stride, j * stride + k))
            grad_w += np.tensordot(g[:, :, i, j], xp[window], axes=([0], [0]))  # [O, C, k, k]
            grad_xp[window] += np.tensordot(g[:, :, i, j], w, axes=([1], [0]))  # [N, C, k, k]
    size = x.shape[2]
    return grad_xp[:, :, padding:padding + size, padding:padding + size], grad_w


@pytest.mark.parametrize("k,stride,padding,size,channels_first", [
    (3, 1, 1, 9, False), (5, 1, 2, 7, False), (3, 2, 1, 10, False), (1, 1, 0, 5, False), (3, 2, 1, 10, True),
    (3, 1, 1, 9, True)])
def test_channels_last_convolution_gradients(k, stride, padding, size, channels_first):
    """In training mode a stride-1 "same" convolution has a written-out backward (the input's
    gradient as a convolution with the flipped kernel); it, and the differentiated formulation
    of the other convolutions, give the gradients of a convolution. A kernel not flipped fails."""
    rng = np.random.RandomState(k + size)
    x, w = rng.randn(2, 5, size, size), rng.randn(7, 5, k, k)
    conv = Conv2d(5, 7, k, size, stride=stride, padding=padding, channels_first=channels_first)
    conv.weight.set_data(Tensor(w.astype(np.float32)))
    conv.set_train(True)
    g = rng.randn(2, 7, conv.output_size, conv.output_size)
    g_last = Tensor(g.transpose(0, 2, 3, 1).astype(np.float32))

    def loss(inputs):
        return (conv(inputs) * g_last).sum()

    grad_fn = ms.value_and_grad(loss, 0, [conv.weight])
    _, (grad_x, (grad_w,)) = grad_fn(_conv_input(x, channels_first))
    expected_x, expected_w = _numpy_conv_grads(x, w, g, stride, padding)
    grad_x = grad_x.asnumpy() if channels_first else grad_x.asnumpy().transpose(0, 3, 1, 2)
    np.testing.assert_allclose(grad_x, expected_x, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grad_w.asnumpy(), expected_w, rtol=1e-4, atol=1e-4)
    if k > 1:  # the check sees a kernel that is not flipped
        unflipped, _ = _numpy_conv_grads(x, w[:, :, ::-1, ::-1], g, stride, padding)
        assert np.abs(unflipped - expected_x).max() > 1e-1


@pytest.mark.parametrize("stride,size", [(2, 8), (3, 9)])
def test_channels_last_average_pool(stride, size):
    x = np.random.RandomState(stride).randn(2, size, size, 5)
    expected = x.reshape(2, size // stride, stride, size // stride, stride, 5).mean(axis=(2, 4))
    pool = AvgPool(stride)
    for training in (False, True):
        pool.set_train(training)
        got = pool(Tensor(x.astype(np.float32))).asnumpy()
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    wrong = x[:, ::stride, ::stride]  # a strided pick is not a pool: the check must see it
    assert np.abs(wrong - expected).max() > 1e-2
    # the training-mode backward: every input of a window gets dout / stride**2
    dout = np.random.RandomState(10 + stride).randn(*expected.shape)
    grad = ms.grad(lambda t: (pool(t) * Tensor(dout.astype(np.float32))).sum())(Tensor(x.astype(np.float32)))
    expected_grad = np.repeat(np.repeat(dout, stride, 1), stride, 2) / stride ** 2
    np.testing.assert_allclose(grad.asnumpy(), expected_grad, rtol=1e-6, atol=1e-7)
    misplaced = np.tile(dout, (1, stride, stride, 1)) / stride ** 2  # windows laid out wrongly
    assert np.abs(misplaced - expected_grad).max() > 1e-2


def test_image_chunks():
    from clip.model import image_chunks
    assert image_chunks(16, 16) == [(0, 16)]
    assert image_chunks(1, 16) == [(0, 1)]  # one image never pays for 16
    assert image_chunks(3, 8) == [(0, 1), (1, 1), (2, 1)]
    assert image_chunks(5, 8) == [(0, 8)]  # half or more: one padded call
    assert image_chunks(19, 8) == [(0, 8), (8, 8), (16, 1), (17, 1), (18, 1)]
    assert image_chunks(7, 2) == [(0, 2), (2, 2), (4, 2), (6, 2)]
    # powers of two for the remainder: no padding (batch 4 of a ViT compiled for 8 runs 4 rows)
    assert image_chunks(4, 8, powers=True) == [(0, 4)]
    assert image_chunks(23, 8, powers=True) == [(0, 8), (8, 8), (16, 4), (20, 2), (22, 1)]
    assert image_chunks(5, 3, powers=True) == [(0, 3), (3, 2)]
    for n in range(1, 40):
        for rows in (1, 2, 3, 4, 8, 16):
            calls = image_chunks(n, rows)
            assert {size for _, size in calls} <= {1, rows}
            covered = [i for start, size in calls for i in range(start, min(start + size, n))]
            assert covered == list(range(n))
            calls = image_chunks(n, rows, powers=True)
            assert all(size == rows or size & (size - 1) == 0 for _, size in calls)
            assert [i for start, size in calls for i in range(start, start + size)] == list(range(n))


def test_image_rows_chunks_match_eager(tiny_ckpt):
    """A compiled image tower with a fixed number of rows per call (how ``load(mode=0)`` bounds a
    ResNet graph's memory) runs smaller and larger batches in chunks, with the eager results."""
    eager, _ = clip.load(tiny_ckpt, device="CPU", eager=True)
    model, _ = clip.load(tiny_ckpt, device="CPU", eager=True)
    model.compile_towers(image=True, text=False, image_rows=3)
    r = model.visual.input_resolution
    images = np.random.RandomState(1).randn(7, 3, r, r).astype(np.float32)
    expected = eager.encode_image(Tensor(images)).asnumpy()
    for rows in ([0], [1, 2, 3], list(range(7))):
        got = model.encode_image(Tensor(images[rows])).asnumpy()
        np.testing.assert_allclose(got, expected[rows], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="image_rows"):
        model.compile_towers(image_rows=0)


def test_graph_memory_budget_decides_resnet_rows(monkeypatch):
    from clip.clip import _graph_image_rows, _graph_memory_budget
    from clip.model import CLIP
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from make_reference import config
    visual = CLIP(**config("RN50")).visual
    per_image, fixed = visual.graph_bytes_per_image(), visual.graph_fixed_bytes()
    # measured on MindSpore 2.10 CPU: 0.038 GB per image and 0.83 GB whatever the batch
    assert 0.038 * 2 ** 30 < per_image < 0.05 * 2 ** 30
    assert 0.83 * 2 ** 30 < fixed < 1.1 * 2 ** 30
    def graphs(rows):  # the graph of `rows` images and, from 4 rows on, the one-image graph
        return fixed + rows * per_image + (fixed + per_image if rows >= 4 else 0)

    for budget, rows in (("1.0", 1), ("1.05", 2), ("2.15", 4), ("2.4", 8), ("3", 16), ("10", 16),
                         ("0.9", 0)):  # 0: the tower stays eager (a budget that is set is kept)
        monkeypatch.setenv("CLIP_GRAPH_MEMORY_GB", budget)
        assert _graph_image_rows(visual) == rows, budget
        limit = float(budget) * 2 ** 30
        assert rows == 0 or graphs(rows) <= limit
        assert rows == 16 or graphs(max(2 * rows, 1)) > limit
    monkeypatch.setenv("CLIP_GRAPH_MEMORY_GB", "lots")
    with pytest.raises(ValueError, match="CLIP_GRAPH_MEMORY_GB"):
        _graph_image_rows(visual)
    # unset: a quarter of the available memory, between 3 and 8 GB
    monkeypatch.delenv("CLIP_GRAPH_MEMORY_GB")
    for available, budget in ((4, 3), (20, 5), (64, 8)):
        monkeypatch.setattr(clip.clip, "_mem_available", lambda: available * 2 ** 30)
        assert _graph_memory_budget() == budget * 2 ** 30
    monkeypatch.setattr(clip.clip, "_mem_available", lambda: None)
    assert _graph_memory_budget() == 3 * 2 ** 30


def test_tower_too_large_for_the_budget_compiles_one_image_if_the_memory_holds_it(monkeypatch):
    """RN50x64's one-image graph (about 9 GB) exceeds the default budget (at most 8 GB): without
    ``$CLIP_GRAPH_MEMORY_GB`` it is compiled for one image per call when three quarters of the
    available memory hold it, else it stays eager; a budget that is set is kept."""
    from clip.clip import _graph_image_rows

    class Tower:  # the two estimates of a tower like RN50x64's
        def graph_fixed_bytes(self):
            return 10 * 2 ** 30

        def graph_bytes_per_image(self):
            return 2 ** 29

    monkeypatch.delenv("CLIP_GRAPH_MEMORY_GB", raising=False)
    for available, rows in ((24, 1), (14, 1), (13, 0), (8, 0)):
        monkeypatch.setattr(clip.clip, "_mem_available", lambda: available * 2 ** 30)
        assert _graph_image_rows(Tower()) == rows, available
    monkeypatch.setattr(clip.clip, "_mem_available", lambda: None)
    assert _graph_image_rows(Tower()) == 0
    monkeypatch.setattr(clip.clip, "_mem_available", lambda: 64 * 2 ** 30)
    monkeypatch.setenv("CLIP_GRAPH_MEMORY_GB", "8")
    assert _graph_image_rows(Tower()) == 0


@pytest.mark.parametrize("rows,channels", [(131, 3), (8 * 49, 20), (8 * 49, 2048), (8 * 56 * 56, 8), (1, 4)])
def test_channel_sums_error_does_not_grow_with_the_rows(rows, channels):
    """Column sums within 2 float32 epsilons of the sum of magnitudes from the exact (float64)
    sums, whatever the row count (131 is prime: blocks of one row); measured <= 1. A sequential
    float32 sum, whose error grows with the rows, fails that at 25,088 rows (measured 10-16)."""
    x = (np.random.RandomState(rows).randn(rows, channels) * 3 + 1).astype(np.float32)
    exact = x.astype(np.float64).sum(0)
    bound = 2 * np.finfo(np.float32).eps * np.abs(x).astype(np.float64).sum(0)
    got = ms.jit(channel_sums)(Tensor(x)).asnumpy()
    assert (np.abs(got - exact) <= bound).all(), (np.abs(got - exact) / bound).max()
    if rows > 10000:
        sequential = np.cumsum(x, 0, dtype=np.float32)[-1]
        assert (np.abs(sequential - exact) > bound).any()


def _numpy_batch_norm(x, gamma, beta, dy, eps=1e-5):
    """PyTorch's training-mode BatchNorm over the last axis and its backward, in float64."""
    rows = x.reshape(-1, x.shape[-1])
    n = rows.shape[0]
    mean = rows.mean(0)
    var = ((rows - mean) ** 2).mean(0)
    invstd = 1 / np.sqrt(var + eps)
    y = (rows - mean) * invstd * gamma + beta
    g = dy.reshape(rows.shape)
    dot = (g * (rows - mean)).sum(0)
    grad_x = (g - g.mean(0) - (rows - mean) * invstd ** 2 * dot / n) * invstd * gamma
    return y.reshape(x.shape), grad_x.reshape(x.shape), dot * invstd, g.sum(0), mean, var * n / (n - 1)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "compiled"])
def test_batch_norm_training_forward_backward_and_statistics(jit):
    """Output, the gradients of the input, ``gamma`` and ``beta``, and the moving statistics
    (momentum 0.1, unbiased variance) equal PyTorch's BatchNorm formulas in float64; the check sees
    a backward that leaves out the gradient through the batch mean."""
    rng = np.random.RandomState(5)
    x = rng.randn(3, 7, 5, 6) * 2 + 0.5
    gamma, beta, dy = rng.randn(6), rng.randn(6), rng.randn(3, 7, 5, 6)
    bn = BatchNorm(6)
    bn.gamma.set_data(Tensor(gamma.astype(np.float32)))
    bn.beta.set_data(Tensor(beta.astype(np.float32)))
    bn.set_train(True)
    dy_t = Tensor(dy.astype(np.float32))

    def loss(inputs):
        out = bn(inputs)
        return (out * dy_t).sum(), out

    grad_fn = ms.value_and_grad(loss, 0, [bn.gamma, bn.beta], has_aux=True)
    grad_fn = ms.jit(grad_fn) if jit else grad_fn
    (_, y), (grad_x, (grad_gamma, grad_beta)) = grad_fn(Tensor(x.astype(np.float32)))
    ey, egx, egamma, ebeta, mean, unbiased = _numpy_batch_norm(x, gamma, beta, dy)
    np.testing.assert_allclose(y.asnumpy(), ey, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad_x.asnumpy(), egx, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grad_gamma.asnumpy(), egamma, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad_beta.asnumpy(), ebeta, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bn.moving_mean.asnumpy(), 0.1 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.asnumpy(), 0.9 + 0.1 * unbiased, rtol=1e-5)
    g = dy.reshape(-1, 6)
    no_mean_term = egx + (g.mean(0) * (1 / np.sqrt(x.reshape(-1, 6).var(0) + 1e-5)) * gamma).reshape(1, 1, 1, 6)
    assert np.abs(no_mean_term - egx).max() > 1e-2


def _numpy_layer_norm_grads(x, gamma, dy, eps=1e-5):
    """Gradients of ``sum(dy * layer_norm(x))`` w.r.t. ``x``, ``gamma`` and ``beta`` in float64."""
    mean = x.mean(-1, keepdims=True)
    rstd = 1 / np.sqrt(x.var(-1, keepdims=True) + eps)
    normalised = (x - mean) * rstd
    d = dy * gamma
    grad_x = rstd * (d - d.mean(-1, keepdims=True) - normalised * (d * normalised).mean(-1, keepdims=True))
    axes = tuple(range(x.ndim - 1))
    return grad_x, (dy * normalised).sum(axes), dy.sum(axes)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "compiled"])
def test_layer_norm_written_backward(jit):
    """LayerNorm's written-out backward (3-D input, as in the transformers) gives the float64
    gradients of the input, ``gamma`` and ``beta``; the check sees a backward that leaves out the
    term through the row variance."""
    from clip.model import LayerNorm

    rng = np.random.RandomState(6)
    x = rng.randn(4, 9, 24) * 3 + 1
    gamma, beta, dy = rng.randn(24), rng.randn(24), rng.randn(4, 9, 24)
    ln = LayerNorm(24)
    ln.gamma.set_data(Tensor(gamma.astype(np.float32)))
    ln.beta.set_data(Tensor(beta.astype(np.float32)))
    dy_t = Tensor(dy.astype(np.float32))

    def loss(inputs):
        return (ln(inputs) * dy_t).sum()

    grad_fn = ms.grad(loss, 0, [ln.gamma, ln.beta])
    grad_fn = ms.jit(grad_fn) if jit else grad_fn
    grad_x, (grad_gamma, grad_beta) = grad_fn(Tensor(x.astype(np.float32)))
    expected = _numpy_layer_norm_grads(x, gamma, dy)
    for got, want in zip((grad_x, grad_gamma, grad_beta), expected):
        assert np.linalg.norm(got.asnumpy() - want) / np.linalg.norm(want) < 1e-5  # measured ~1e-7
    d = dy * gamma
    without_variance_term = (d - d.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    assert np.linalg.norm(without_variance_term - expected[0]) / np.linalg.norm(expected[0]) > 1e-2
