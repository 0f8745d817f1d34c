"""Parity of ``clip.open_clip`` with open_clip's own PyTorch code (open_clip_torch 3.3.0).

The real path: open_clip builds the architecture (``create_model``) with random weights, every
tensor randomised (LayerNorm/BatchNorm affine and statistics, biases, ``logit_scale``); its
state dict is written as ``open_clip_pytorch_model.bin`` (``torch.save``) and
``open_clip_model.safetensors``; ``clip.open_clip.create_model_and_transforms(name,
pretrained=path)`` loads each, and ``encode_image``, ``encode_text`` and ``model(image, text)``
are compared with open_clip's, in graph mode (``mode=0``) and PyNative (``eager=True``).

ViT-H-14, ViT-g-14 and ViT-bigG-14 have their real widths, head widths (80/88/104) and MLP
ratios (4.0/4.3637/4.9231) but one or two blocks per tower (registered under a new name on both
sides with ``add_model_config``); RN50-quickgelu and ViT-B-32 are full size.

Gates: tests/parity_gates.py (normwise distance from open_clip's float64 run against PyTorch's
own float32 distance; normalised features; probabilities). The seeds' mean relative difference
is printed.
"""
import copy
import os
import sys

import numpy as np
import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TESTS_DIR)

import open_clip_reference  # noqa: E402
import parity_gates  # noqa: E402

import torch  # noqa: E402

import mindspore as ms  # noqa: E402
from clip import open_clip as ms_open_clip  # noqa: E402

# name -> (open_clip config, vision layers, text layers) ; None keeps the config's
CASES = {
    "RN50-quickgelu": (None, None),
    "ViT-B-32": (None, None),
    "ViT-H-14": (2, 1),
    "ViT-g-14": (1, 1),
    "ViT-bigG-14": (1, 1),
}
TEXTS = ["a diagram", "a dog", "a photo of a cat sitting on a red chair", "x"]


def _reduced_config(name, vision_layers, text_layers):
    config = ms_open_clip.get_model_config(name)
    if vision_layers is None:
        return name, config
    config = copy.deepcopy(config)
    config["vision_cfg"]["layers"] = vision_layers
    config["text_cfg"]["layers"] = text_layers
    return f"{name}-{vision_layers}x{text_layers}layers", config


@torch.no_grad()
def _outputs(model, images, tokens, dtype):
    image = torch.from_numpy(images).to(dtype)
    text = torch.from_numpy(tokens).long()
    img, txt = model.encode_image(image), model.encode_text(text)
    img_n, txt_n, scale = model(image, text)
    probs = (scale * img_n @ txt_n.T).softmax(dim=-1)
    return img.double().numpy(), txt.double().numpy(), probs.double().numpy()


@pytest.fixture(scope="module", params=list(CASES))
def reference(request, tmp_path_factory):
    """open_clip's model with random weights, its two files, inputs and outputs (f32 and f64)."""
    oc = open_clip_reference.open_clip()
    base = request.param
    name, config = _reduced_config(base, *CASES[base])
    folder = tmp_path_factory.mktemp(name)
    model, state = open_clip_reference.random_model(folder, name, config if name != base else None)
    import safetensors.torch
    safetensors.torch.save_file(state, str(folder / "open_clip_model.safetensors"))
    size = config["vision_cfg"]["image_size"]
    rng = np.random.default_rng(0)
    images = rng.standard_normal((2, 3, size, size)).astype(np.float32)
    tokens = np.asarray(oc.get_tokenizer(name)(TEXTS).numpy(), np.int32)
    img32, txt32, probs32 = _outputs(model, images, tokens, torch.float32)
    model.double()
    img64, txt64, _ = _outputs(model, images, tokens, torch.float64)
    del model
    expected = {"image_features": img32, "text_features": txt32, "probs": probs32,
                "image_features_f64": img64, "text_features_f64": txt64}
    return dict(name=name, base=base, folder=folder, images=images, tokens=tokens, expected=expected)


@pytest.mark.parametrize("fmt,run", [("open_clip_pytorch_model.bin", "graph"),
                                     ("open_clip_model.safetensors", "pynative")])
def test_open_clip_parity(reference, fmt, run):
    options = {"mode": 0} if run == "graph" else {"eager": True}
    model, _, _ = ms_open_clip.create_model_and_transforms(
        reference["name"], pretrained=str(reference["folder"] / fmt), device="CPU", **options)
    assert model.compiled_towers == ((True, True) if run == "graph" else (False, False))
    image, text = ms.Tensor(reference["images"]), ms.Tensor(reference["tokens"])
    image_features = model.encode_image(image).asnumpy()
    text_features = model.encode_text(text).asnumpy()
    img_n, txt_n, scale = model(image, text)
    logits = float(scale.asnumpy()) * img_n.asnumpy().astype(np.float64) @ txt_n.asnumpy().astype(np.float64).T
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    # model(image, text) returns normalised features and exp(logit_scale), as open_clip's
    np.testing.assert_allclose(np.linalg.norm(img_n.asnumpy(), axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(float(scale.asnumpy()), 60.0, rtol=1e-5)
    np.testing.assert_allclose(model.encode_text(text, normalize=True).asnumpy(), txt_n.asnumpy(), atol=1e-6)
    stats = parity_gates.statistics(reference["expected"], image_features, text_features, probs)
    print(f"\n{reference['name']} {fmt} {run}: {parity_gates.summary(stats)}")
    assert not parity_gates.failures(stats), parity_gates.failures(stats)
    del model
    ms.ms_memory_recycle()
