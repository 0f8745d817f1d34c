"""Patch dropout (open_clip's, for ViT training): in training mode a ViT keeps its class token and a
random ``1 - p`` of its patch tokens; in inference nothing changes."""
import os
import sys

import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor

from clip.model import VisionTransformer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _vit(seed=0):
    visual = VisionTransformer(input_resolution=64, patch_size=16, width=64, layers=1, heads=1, output_dim=16)
    rng = np.random.RandomState(seed)
    for _, param in visual.parameters_and_names():
        param.set_data(Tensor(rng.randn(*param.shape).astype(np.float32) * 0.1 + (1.0 if "gamma" in param.name else 0)))
    return visual


def test_drop_patches_keeps_the_class_token_and_a_random_subset():
    visual = _vit()
    visual.patch_dropout = 0.5
    x = np.random.RandomState(1).randn(3, 17, 64).astype(np.float32)  # class token + 16 patches
    ms.set_seed(0)
    kept = visual.drop_patches(Tensor(x)).asnumpy()
    assert kept.shape == (3, 1 + 8, 64)
    np.testing.assert_array_equal(kept[:, 0], x[:, 0])
    subsets = []
    for i in range(3):
        rows = [int(np.argmin(np.abs(x[i, 1:] - row).sum(-1))) for row in kept[i, 1:]]
        np.testing.assert_array_equal(kept[i, 1:], x[i, 1:][rows])  # every kept row is one of the patches
        assert len(set(rows)) == 8  # without repetition
        subsets.append(frozenset(rows))
    assert len(set(subsets)) > 1  # each image draws its own subset


def test_patch_dropout_acts_in_training_only():
    images = Tensor(np.random.RandomState(2).randn(2, 3, 64, 64).astype(np.float32))
    reference = _vit()
    reference.set_train(False)
    expected = reference(images).asnumpy()
    visual = _vit()
    visual.patch_dropout = 0.75
    visual.set_train(False)
    np.testing.assert_array_equal(visual(images).asnumpy(), expected)  # inference: unchanged
    visual.set_train(True)
    ms.set_seed(3)
    dropped = visual(images).asnumpy()
    assert dropped.shape == expected.shape
    assert not np.allclose(dropped, expected, atol=1e-4)


def test_open_clip_force_patch_dropout():
    from clip.open_clip import create_model
    model = create_model("ViT-B-32", force_patch_dropout=0.5, eager=True, device="CPU")
    assert model.visual.patch_dropout == 0.5
    with pytest.raises(ValueError, match="force_patch_dropout"):
        create_model("ViT-B-32", force_patch_dropout=1.5, eager=True, device="CPU")
