"""Parity with OpenAI's PyTorch CLIP for all nine architectures, through the real path.

For each architecture, ``make_reference.py`` (a separate process, PyTorch) builds OpenAI's model
with random weights and writes a float16 TorchScript archive like OpenAI's release files, a
float32 state dict, and the reference outputs. Here the files go through ``ckpt_transform``
and ``clip.load`` (graph and PyNative) and the outputs are compared with the seeds' formulas:
mean relative difference of features, mean absolute difference of probabilities.
"""
import gc
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn, ops

import clip
from clip.clip import _load_ms_checkpoint
from clip.convert import convert
from clip.model import LayerNorm, ResidualAttentionBlock, build_model

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import report  # noqa: E402
from parity_gates import FP16_TOLERANCE, failures, mean_abs_diff, mean_rel_diff, statistics, summary  # noqa: E402
from make_reference import ARCHS, FILES, FP16_ARCHS  # noqa: E402  (no torch import at module level needed)

# The gates (and why not the seeds' mean relative difference) are described in parity_gates.py.
SLOW = {"RN50x4", "RN50x16", "RN50x64", "ViT-L/14", "ViT-L/14@336px"}
FAST = [a for a in ARCHS if a not in SLOW]
# How each architecture's fp16 archive is loaded and run: compiled towers (mode=0) and eager
# (eager=True) for the four smaller ones; one of the two for each large one (the code paths are
# the same cells at other widths and depths: both kinds of tower meet both modes)
MODES = {arch: ("graph", "pynative") for arch in FAST}
MODES.update({"RN50x4": ("graph",), "RN50x16": ("pynative",), "RN50x64": ("graph",), "ViT-L/14": ("pynative",),
              "ViT-L/14@336px": ("graph",)})


def _param(arch):
    return pytest.param(arch, id=arch, marks=[pytest.mark.slow] if arch in SLOW else [])


@pytest.fixture(scope="module", params=[_param(a) for a in ARCHS])
def reference_files(request, tmp_path_factory):
    """The reference archive (and state dict, for :data:`FAST`) and outputs of one architecture,
    the archive converted to .ckpt."""
    arch = request.param
    out = str(tmp_path_factory.mktemp(FILES[arch]))
    subprocess.run([sys.executable, os.path.join(HERE, "make_reference.py"), arch, out]
                   + (["--no-state-dict"] if arch in SLOW else []), check=True)
    stem = os.path.join(out, FILES[arch])
    files = {
        "arch": arch,
        "archive": stem + ".pt",
        "state_dict": stem + "_fp32.pth",
        "expected": dict(np.load(os.path.join(out, "expected.npz"))),
    }
    # the fp16 TorchScript archive through the library (the fp32 state dict: test_fp32_state_dict)
    files["ckpt_fp16"] = convert(files["archive"])
    assert files["ckpt_fp16"] == stem + ".ckpt"
    yield files
    shutil.rmtree(out, ignore_errors=True)


def _outputs(model, expected):
    images, tokens = Tensor(expected["images"]), Tensor(expected["tokens"])
    image_features = model.encode_image(images).asnumpy()
    text_features = model.encode_text(tokens).asnumpy()
    logits_per_image, logits_per_text = model(images, tokens)
    probs = ops.softmax(logits_per_image, -1).asnumpy()
    np.testing.assert_array_equal(logits_per_text.asnumpy(), logits_per_image.asnumpy().T)
    return image_features, text_features, probs


def _check(model, expected, what):
    assert model.dtype == ms.float32
    _compare(*_outputs(model, expected), expected, what)


def _compare(image_features, text_features, probs, expected, what):
    assert image_features.shape == expected["image_features"].shape
    assert text_features.shape == expected["text_features"].shape
    stats = statistics(expected, image_features, text_features, probs)
    report.record("parity float32", f"{what}: {summary(stats)}")
    failed = failures(stats)
    assert not failed, "; ".join(failed)


FP32_RUN = """
import sys
import numpy as np
import mindspore as ms
from mindspore import Tensor, ops
import clip
model, _ = clip.load(sys.argv[1], device="CPU", eager=True)
assert model.dtype == ms.float32
e = np.load(sys.argv[2])
images, tokens = Tensor(e["images"]), Tensor(e["tokens"])
logits_per_image, _ = model(images, tokens)
np.savez(sys.argv[3], image_features=model.encode_image(images).asnumpy(),
         text_features=model.encode_text(tokens).asnumpy(),
         probs=ops.softmax(logits_per_image, -1).asnumpy())
"""


@pytest.mark.parametrize("reference_files", FAST, indirect=True)
def test_fp32_state_dict(reference_files, tmp_path):
    """Plain fp32 state dict -> ckpt_transform.py (command line) -> clip.load, in a fresh process
    (MindSpore's ``load_checkpoint`` refuses a checkpoint larger than the memory free on the
    machine, and this process keeps the memory of the models it loaded). The four smaller
    architectures: the conversion is the same name table for all nine, which the fp16 archives of
    all nine go through."""
    ckpt = str(tmp_path / "from_state_dict.ckpt")
    subprocess.run([sys.executable, os.path.join(ROOT, "ckpt_transform.py"), "--pth_path",
                    reference_files["state_dict"], "--output", ckpt], check=True, cwd=str(tmp_path))
    expected_file, out = tmp_path / "expected.npz", tmp_path / "ours.npz"
    np.savez(expected_file, **reference_files["expected"])
    result = subprocess.run([sys.executable, "-c", FP32_RUN, ckpt, str(expected_file), str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    ours = np.load(out)
    _compare(ours["image_features"], ours["text_features"], ours["probs"], reference_files["expected"],
             f"{reference_files['arch']} fp32 state dict")


def test_fp16_release_archive(reference_files):
    """OpenAI-style fp16 TorchScript archive -> ckpt_transform -> clip.load, fp32 on CPU, in the
    architecture's :data:`MODES`."""
    # graph: compiled towers (mode=0; a large ResNet's image tower within the memory budget);
    # pynative: eager=True, every operation eagerly
    for name in MODES[reference_files["arch"]]:
        mode = ms.GRAPH_MODE if name == "graph" else ms.PYNATIVE_MODE
        model, preprocess = clip.load(reference_files["ckpt_fp16"], device="CPU", mode=mode,
                                      eager=mode == ms.PYNATIVE_MODE)
        expected = reference_files["expected"]
        assert model.visual.input_resolution == expected["images"].shape[-1]
        assert preprocess.n_px == model.visual.input_resolution
        assert model.context_length == 77 and model.vocab_size == 49408
        _check(model, expected, f"{reference_files['arch']} fp16 archive, mode {mode}")
        del model
        gc.collect()


@pytest.mark.parametrize("reference_files", ["ViT-B/32", "RN50"], indirect=True)
def test_load_pt_directly_and_batch_sizes_vary(reference_files):
    """``clip.load`` of the .pt itself (converted in memory); graph mode with changing batch sizes
    (one ViT and one ResNet; the other architectures share the code path)."""
    expected = reference_files["expected"]
    model, _ = clip.load(reference_files["archive"], device="CPU", mode=ms.GRAPH_MODE)
    # batches of changing size, each compiled anew, against the reference element by element
    # (float32 tolerances; the seeds' mean relative difference of the whole batch is checked by
    # the tests above, and it moves with the matmul blocking of each batch size)
    images = expected["images"]
    image_features = np.concatenate([model.encode_image(Tensor(images[rows])).asnumpy()
                                     for rows in (slice(0, 1), slice(1, None))])
    np.testing.assert_allclose(image_features, expected["image_features"], rtol=1e-4, atol=1e-5)
    assert model.encode_image(Tensor(images)).shape == expected["image_features"].shape
    tokens = expected["tokens"]
    text_features = np.concatenate([model.encode_text(Tensor(tokens[rows])).asnumpy()
                                    for rows in (slice(0, 1), slice(1, 6), slice(6, None))])
    np.testing.assert_allclose(text_features, expected["text_features"], rtol=1e-4, atol=1e-5)
    # a single image [3, R, R] is a batch of one, as the seeds' snippets use it
    single = model.encode_image(Tensor(expected["images"][0])).asnumpy()
    assert single.shape == (1, expected["image_features"].shape[1])
    np.testing.assert_allclose(single, expected["image_features"][:1], rtol=1e-4, atol=1e-5)


NO_TORCH = """
import sys
sys.modules["torch"] = None  # any 'import torch' now fails
import numpy as np
import mindspore as ms
from mindspore import Tensor
import clip
from clip.convert import main
assert main(["--pth_path", sys.argv[1], "--output", sys.argv[2]]) == 0
e = np.load(sys.argv[3])
for path in (sys.argv[1], sys.argv[2]):
    model, _ = clip.load(path, device="cpu", eager=True)
    got = model.encode_text(Tensor(e["tokens"])).asnumpy()
    rel = np.linalg.norm(got - e["text_features_f64"]) / np.linalg.norm(e["text_features_f64"])
    torch_rel = np.linalg.norm(e["text_features"] - e["text_features_f64"]) / np.linalg.norm(e["text_features_f64"])
    assert rel <= 4 * max(torch_rel, 2e-7), (rel, torch_rel)
assert "torch" not in sys.modules or sys.modules["torch"] is None
print("OK without torch")
"""


@pytest.mark.parametrize("reference_files", ["ViT-B/32"], indirect=True)
def test_convert_and_load_without_torch(reference_files, tmp_path):
    """The converter and ``clip.load`` of a .pt work with PyTorch made unimportable."""
    expected_file = tmp_path / "expected.npz"
    np.savez(expected_file, **reference_files["expected"])
    result = subprocess.run([sys.executable, "-c", NO_TORCH, reference_files["archive"],
                             str(tmp_path / "out.ckpt"), str(expected_file)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK without torch" in result.stdout


@pytest.mark.parametrize("reference_files", list(FP16_ARCHS), indirect=True)
@pytest.mark.parametrize("graph", [False, True], ids=["pynative", "graph"])
def test_float16_like_openai_on_gpu(reference_files, graph):
    """OpenAI's GPU setting (what ``load`` uses on GPU/Ascend), run here on CPU kernels:
    float16 weights for convolutions, linear layers and projections, the rest float32."""
    model = build_model(_load_ms_checkpoint(reference_files["ckpt_fp16"]), dtype=ms.float16)
    if graph:
        model.compile_towers()
    dtypes = {name: p.dtype for name, p in model.parameters_and_names()}
    assert model.dtype == ms.float16
    assert dtypes["visual.conv1.weight"] == ms.float16 and dtypes["text_projection"] == ms.float16
    assert dtypes["transformer.resblocks.0.attn.in_proj_weight"] == ms.float16
    assert dtypes["ln_final.gamma"] == ms.float32 and dtypes["token_embedding.embedding_table"] == ms.float32
    assert dtypes["positional_embedding"] == ms.float32 and dtypes["logit_scale"] == ms.float32
    expected = reference_files["expected"]
    images, tokens = Tensor(expected["images"]), Tensor(expected["tokens"])
    image_features = model.encode_image(images)
    assert image_features.dtype == ms.float16
    image_features = image_features.asnumpy().astype(np.float32)
    text_features = model.encode_text(tokens).asnumpy().astype(np.float32)
    probs = ops.softmax(model(images, tokens)[0].astype(ms.float32), -1).asnumpy()
    feature_tol, prob_tol = FP16_TOLERANCE
    diffs = {
        "image_features": mean_rel_diff(expected["image_features_fp16"], image_features),
        "text_features": mean_rel_diff(expected["text_features_fp16"], text_features),
        "probs": mean_abs_diff(expected["probs_fp16"], probs),
    }
    report.record("parity float16", f"{reference_files['arch']} ({'graph' if graph else 'pynative'}): "
                  + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    assert diffs["image_features"] <= feature_tol, diffs
    assert diffs["text_features"] <= feature_tol, diffs
    assert diffs["probs"] <= prob_tol, diffs


# ---------------------------------------------------------------------------------------------
# The gates can fail: deliberately wrong variants of a correct model must be caught by them.

def _wrong_bn_variance(model):
    """One BatchNorm's running variance off by 1 % (the stem's first)."""
    param = model.visual.bn1.moving_variance
    param.set_data(param * 1.01)


def _wrong_layernorm_epsilon(model):
    """LayerNorm epsilon 1e-6 instead of PyTorch's 1e-5, everywhere."""
    for _, cell in model.cells_and_names():
        if isinstance(cell, LayerNorm):
            cell.layer_norm = ops.LayerNorm(begin_norm_axis=-1, begin_params_axis=-1, epsilon=1e-6)


def _wrong_gelu(model):
    """Exact GELU where CLIP was trained with QuickGELU."""
    for _, cell in model.cells_and_names():
        if isinstance(cell, ResidualAttentionBlock):
            cell.mlp[1] = nn.GELU(approximate=False)  # c_fc, gelu, c_proj


def _wrong_transposed_projection(model):
    """A square projection loaded transposed (the first text block's attention output)."""
    param = model.transformer.resblocks[0].attn.out_proj.weight
    param.set_data(param.T.copy())


WRONG = {
    "RN50": [_wrong_bn_variance, _wrong_layernorm_epsilon, _wrong_gelu, _wrong_transposed_projection],
    "ViT-B/32": [_wrong_layernorm_epsilon, _wrong_gelu, _wrong_transposed_projection],
}


@pytest.mark.parametrize("reference_files", list(WRONG), indirect=True)
def test_gates_catch_wrong_variants(reference_files):
    """A correct model passes the gates; each deliberately wrong variant of it fails them."""
    expected = reference_files["expected"]
    for variant in [None] + WRONG[reference_files["arch"]]:
        model, _ = clip.load(reference_files["ckpt_fp16"], device="CPU", eager=True)
        if variant is not None:
            variant(model)
        stats = statistics(expected, *_outputs(model, expected))
        name = variant.__name__ if variant else "correct"
        report.record("parity gates", f"{reference_files['arch']} {name}: {summary(stats)}")
        if variant is None:
            assert not failures(stats), failures(stats)
        else:
            assert failures(stats), f"{name} passed the gates: {summary(stats)}"
        del model
        gc.collect()
