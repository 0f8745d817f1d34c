"""``force_image_size`` with pretrained weights: the ViT positional embedding is resized to the
new patch grid as open_clip 3.3.0 does when it loads a checkpoint (``resize_pos_embed`` in its
``model.py``, called by ``load_checkpoint``).

* :func:`clip.open_clip.resize_bicubic_antialias` (NumPy) against PyTorch's
  ``F.interpolate(mode="bicubic", antialias=True, align_corners=False)``: upsizing and
  downsizing, odd and even sizes, max abs difference <= 1e-5 on random float32 input (measured
  ~1e-7..4e-6, PyTorch rounding in float32). Plain bicubic (no antialias, a = -0.75) is 0.2..2
  away from it on the same input, so a wrong kernel fails.
* :func:`clip.open_clip.resize_pos_embed` against open_clip's own ``resize_pos_embed``.
* End to end: a small open_clip ViT with random weights (every tensor randomised) saved as a
  "pretrained" file; open_clip's ``create_model(..., pretrained=file, force_image_size=S)``
  (which resizes while loading) and ours compare image features on the same random images.
  Statistic: normwise relative difference ``||ours - ref|| / ||ref||`` over the batch, against
  open_clip's float32 run and its float64 run (the project's parity statistic,
  tests/parity_gates.py), gated at 1e-5 (measured ~1e-7).
* A ResNet's attention-pool positional embedding is not resized (nor by open_clip): a clear
  ``ValueError`` names the parameter and both grids.
"""
import os
import sys
import types

import numpy as np
import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TESTS_DIR)

import open_clip_reference  # noqa: E402
import parity_gates  # noqa: E402
import tiny_checkpoint  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import mindspore as ms  # noqa: E402
from clip import open_clip as ms_open_clip  # noqa: E402
from clip.convert import save_state_dict  # noqa: E402
from clip.open_clip.config import architecture_of  # noqa: E402
from clip.open_clip.weights import read_weights, torch_to_mindspore  # noqa: E402

TOLERANCE = 1e-5

# a small ViT: 56 px images in 8 px patches (a 7x7 grid), two 64-wide blocks of 2 heads
VIT_NAME = "ViT-resize-test"
VIT_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 56, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 1000, "width": 64, "heads": 2, "layers": 1},
}
# a ResNet with one bottleneck per stage, width 8 (4 heads of 64 in the attention pool), 64 px
RN_NAME = "RN-resize-test"
RN_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 1000, "width": 64, "heads": 1, "layers": 1},
}


@pytest.fixture(scope="module", autouse=True)
def _unregister_configs():
    """The test architectures are registered by the fixtures below; forget them afterwards."""
    yield
    from clip.open_clip import config
    for name in (VIT_NAME, RN_NAME):
        config._CONFIGS.pop(name, None)
    if open_clip_reference.NAME in sys.modules:
        factory = open_clip_reference.submodule("factory")
        factory._MODEL_CONFIGS.pop(VIT_NAME, None)
        factory._MODEL_CONFIG_PATHS[:] = [p for p in factory._MODEL_CONFIG_PATHS if p.stem != VIT_NAME]


def _torch_resize(x, size, antialias):
    with torch.no_grad():
        return F.interpolate(torch.from_numpy(x), size=size, mode="bicubic", antialias=antialias,
                             align_corners=False).numpy()


@pytest.mark.parametrize("old,new", [(7, 10), (7, 14), (14, 7), (16, 24), (24, 16), ((6, 9), (11, 5))])
def test_bicubic_antialias_matches_torch(old, new):
    old = (old, old) if isinstance(old, int) else old
    new = (new, new) if isinstance(new, int) else new
    x = np.random.default_rng(0).standard_normal((2, 16) + old).astype(np.float32)
    ours = ms_open_clip.resize_bicubic_antialias(x, new)
    expected = _torch_resize(x, new, antialias=True)
    plain = _torch_resize(x, new, antialias=False)
    assert ours.shape == expected.shape and ours.dtype == np.float32
    error = float(np.abs(ours - expected).max())
    plain_error = float(np.abs(plain - expected).max())
    print(f"\n{old} -> {new}: max abs diff {error:.2e} (plain bicubic: {plain_error:.2e})")
    assert error <= TOLERANCE
    # plain bicubic (a = -0.75, clamped borders, no antialias) is far from it: the check can fail
    assert plain_error > 1000 * TOLERANCE
    assert float(np.abs(ours - plain).max()) > 1000 * TOLERANCE


def test_resize_pos_embed_matches_open_clip():
    reference = open_clip_reference.submodule("model").resize_pos_embed
    rng = np.random.default_rng(1)
    for old, new in ((7, 10), (7, 5), (16, 24), (14, 7)):
        pos = rng.standard_normal((1 + old * old, 48)).astype(np.float32)
        state = {"visual.positional_embedding": torch.from_numpy(pos.copy())}
        reference(state, types.SimpleNamespace(visual=types.SimpleNamespace(grid_size=(new, new))))
        expected = state["visual.positional_embedding"].numpy()
        ours = ms_open_clip.resize_pos_embed(pos, new)
        assert ours.shape == expected.shape == (1 + new * new, 48)
        np.testing.assert_array_equal(ours[0], pos[0])  # the class token is kept
        assert float(np.abs(ours - expected).max()) <= TOLERANCE, (old, new)
    same = rng.standard_normal((50, 8)).astype(np.float32)
    assert ms_open_clip.resize_pos_embed(same, 7) is same
    with pytest.raises(ValueError, match="not a square grid"):
        ms_open_clip.resize_pos_embed(rng.standard_normal((1 + 12, 8)), 7)


@pytest.fixture(scope="module")
def vit_checkpoint(tmp_path_factory):
    """The small ViT with random weights from open_clip, as ``open_clip_pytorch_model.bin`` and as
    this library's ``.ckpt`` (MindSpore names, the architecture recorded)."""
    folder = tmp_path_factory.mktemp("resize")
    open_clip_reference.random_model(folder, VIT_NAME, VIT_CONFIG)
    bin_path = str(folder / "open_clip_pytorch_model.bin")
    architecture = architecture_of(VIT_CONFIG)
    state, _, _ = read_weights(bin_path)
    state = torch_to_mindspore(state, ms_open_clip.OpenCLIP(**architecture), source=bin_path)
    ckpt_path = save_state_dict(state, str(folder / "converted.ckpt"), architecture=architecture)
    return {"bin": bin_path, "ckpt": ckpt_path}


@torch.no_grad()
def _reference(path, size, images):
    """open_clip's model loaded from ``path`` with ``force_image_size=size``: its resized
    positional embedding and its image features in float32 and float64."""
    oc = open_clip_reference.open_clip()
    model = oc.create_model(VIT_NAME, pretrained=path, force_image_size=size).eval()
    pos = model.visual.positional_embedding.detach().numpy().copy()
    img32 = model.encode_image(torch.from_numpy(images)).double().numpy()
    model.double()
    img64 = model.encode_image(torch.from_numpy(images).double()).numpy()
    return pos, img32, img64


@pytest.mark.parametrize("size,fmt,run", [(80, "bin", "graph"), (40, "ckpt", "pynative")])
def test_force_image_size_parity(vit_checkpoint, size, fmt, run):
    """7x7 -> 10x10 (80 px) from the ``.bin`` in graph mode; 7x7 -> 5x5 (40 px) from the
    converted ``.ckpt`` in PyNative."""
    images = np.random.default_rng(2).standard_normal((3, 3, size, size)).astype(np.float32)
    ref_pos, ref32, ref64 = _reference(vit_checkpoint["bin"], size, images)
    grid = size // VIT_CONFIG["vision_cfg"]["patch_size"]
    assert ref_pos.shape == (1 + grid * grid, 64)  # open_clip did resize
    options = {"mode": 0} if run == "graph" else {"eager": True}
    model, _, preprocess = ms_open_clip.create_model_and_transforms(
        VIT_NAME, pretrained=vit_checkpoint[fmt], force_image_size=size, device="CPU", **options)
    assert model.visual.input_resolution == size
    assert preprocess.size == size
    pos = model.visual.positional_embedding.asnumpy()
    pos_error = float(np.abs(pos - ref_pos).max())
    ours = model.encode_image(ms.Tensor(images)).asnumpy()
    stats = {"pos_embed max abs": pos_error,
             "normwise vs open_clip f32": parity_gates.normwise(ours, ref32),
             "normwise vs open_clip f64": parity_gates.normwise(ours, ref64),
             "open_clip f32 normwise vs f64": parity_gates.normwise(ref32, ref64)}
    print(f"\n{size}px {fmt} {run}: " + ", ".join(f"{k} {v:.2e}" for k, v in stats.items()))
    assert pos_error <= TOLERANCE
    assert stats["normwise vs open_clip f32"] <= TOLERANCE
    assert stats["normwise vs open_clip f64"] <= TOLERANCE
    del model
    ms.ms_memory_recycle()


@pytest.fixture(scope="module")
def rn_checkpoint(tmp_path_factory):
    ms_open_clip.add_model_config(RN_NAME, RN_CONFIG)
    state = tiny_checkpoint.tiny_state_dict("resnet", image_resolution=64, vision_width=8, vocab_size=1000)
    return save_state_dict(state, str(tmp_path_factory.mktemp("resize-rn") / "rn.ckpt"))


def test_force_image_size_resnet_refuses_another_grid(rn_checkpoint):
    with pytest.raises(ValueError, match=r"visual\.attnpool\.positional_embedding") as info:
        ms_open_clip.create_model(RN_NAME, pretrained=rn_checkpoint, force_image_size=96, device="CPU", eager=True)
    message = str(info.value)
    assert "force_image_size=96" in message and "3x3" in message and "2x2" in message
    assert "image size 64" in message
    # the weights' own size loads (nothing to resize)
    model = ms_open_clip.create_model(RN_NAME, pretrained=rn_checkpoint, force_image_size=64, device="CPU", eager=True)
    assert model.visual.input_resolution == 64
