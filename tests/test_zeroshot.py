"""Zero-shot classification (``clip.zeroshot``) against OpenAI's PyTorch model.

A small CLIP is built with OpenAI's own ``model.py`` and random weights, saved as a ``.pth``
state dict and loaded with ``clip.load``. The reference side follows the recipe of OpenAI's
"Prompt Engineering for ImageNet" notebook in PyTorch, written out here: encode each class's
prompts, normalise, average, normalise; logits ``scale * normalised image features @ weights``.
Both sides see the same pixels (our preprocess; its parity with torchvision is tested in
test_preprocess.py) and the same token ids (``clip.tokenize``; tested in test_tokenizer.py).
"""
import os
import pathlib

import numpy as np
import pytest
import torch
from mindspore import Tensor
from PIL import Image, ImageDraw

import clip
import make_reference
import reference
from clip.zeroshot import ZeroShotClassifier, zero_shot_classifier, zero_shot_logits

SMALL = dict(embed_dim=64, image_resolution=64, vision_layers=2, vision_width=128, vision_patch_size=16,
             context_length=77, vocab_size=49408, transformer_width=128, transformer_heads=2, transformer_layers=2)

CLASSES = ["cat", "dog", "airplane", "red sports car", "bowl of soup"]
# the three kinds of templates: "{}" (OpenAI), "{c}" (CLIP_benchmark), a callable (open_clip)
TEMPLATES = ["a photo of a {}.", "a blurry drawing of the {c}.", lambda c: f"itap of my {c}"]


def expected_prompts(classname):
    """The texts TEMPLATES must give, written out by hand."""
    return [f"a photo of a {classname}.", f"a blurry drawing of the {classname}.", f"itap of my {classname}"]


def build_small_pair(folder, seed=0):
    """``(torch_model, model, preprocess)``: OpenAI's CLIP with random weights, and the same
    weights loaded by ``clip.load`` from a float32 ``.pth`` state dict."""
    torch.set_num_threads(1)
    torch_model = reference.model_module().CLIP(**SMALL).eval()
    make_reference.randomise(torch_model, seed)
    path = os.path.join(str(folder), "small.pth")
    torch.save({k: v.float() for k, v in torch_model.state_dict().items()}, path)
    model, preprocess = clip.load(path, device="CPU")
    return torch_model, model, preprocess


def synthetic_images():
    """Six PIL images of different sizes, modes and contents."""
    rng = np.random.default_rng(1)
    solid = Image.new("RGB", (70, 90), (220, 30, 40))
    gradient = Image.linear_gradient("L").resize((96, 64))
    shapes = Image.new("RGBA", (120, 80), (255, 255, 255, 255))
    draw = ImageDraw.Draw(shapes)
    draw.ellipse((10, 10, 60, 70), fill=(0, 120, 255, 255))
    draw.rectangle((70, 20, 110, 60), fill=(30, 200, 30, 128))
    noise = Image.fromarray((rng.random((50, 130, 3)) * 255).astype(np.uint8))
    stripes = np.zeros((64, 64, 3), np.uint8)
    stripes[:, ::8] = (255, 255, 0)
    stripes = Image.fromarray(stripes)
    palette = Image.fromarray((rng.random((100, 100, 3)) * 255).astype(np.uint8)).convert("P")
    return [solid, gradient, shapes, noise, stripes, palette]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return build_small_pair(tmp_path_factory.mktemp("small-clip"))


@pytest.fixture(scope="module")
def images():
    return synthetic_images()


@torch.no_grad()
def reference_weights(torch_model, classnames):
    """OpenAI's zero-shot recipe in PyTorch. [D, C]"""
    columns = []
    for classname in classnames:
        tokens = torch.from_numpy(clip.tokenize(expected_prompts(classname)).asnumpy()).long()
        embeddings = torch_model.encode_text(tokens)  # [T, D]
        embeddings = embeddings / embeddings.norm(dim=-1, keepdim=True)
        embedding = embeddings.mean(dim=0)
        columns.append(embedding / embedding.norm())
    return torch.stack(columns, dim=1).numpy()


@torch.no_grad()
def reference_image_features(torch_model, preprocess, images):
    """Normalised image features of the reference model, from our preprocessed pixels. [N, D]"""
    pixels = torch.from_numpy(np.stack([preprocess(image).asnumpy() for image in images]))
    features = torch_model.encode_image(pixels)
    return (features / features.norm(dim=-1, keepdim=True)).numpy()


def mean_rel_diff(ref, ours):
    return float(np.mean(np.abs(ref - ours) / (np.abs(ref) + 1e-6)))


def assert_clear_order(logits):
    """The test is meaningful only if neighbouring classes are far apart compared with float32 noise."""
    ordered = -np.sort(-logits, axis=1)
    assert np.min(ordered[:, :-1] - ordered[:, 1:]) > 1e-3, "pick another seed: two classes nearly tie"


# -- zero_shot_classifier ---------------------------------------------------------------------

@pytest.mark.parametrize("batch_size, calls", [(256, [15]), (4, [4, 4, 4, 3]), (1, [1] * 15)])
def test_classifier_matches_reference(pair, batch_size, calls):
    torch_model, model, _ = pair
    sizes = []

    class Spy:  # counts the texts of each encode_text call
        context_length = model.context_length

        def encode_text(self, tokens):
            sizes.append(tokens.shape[0])
            return model.encode_text(tokens)

    weights = zero_shot_classifier(Spy(), CLASSES, TEMPLATES, batch_size=batch_size, progress=False)
    assert isinstance(weights, Tensor)
    weights = weights.asnumpy()
    assert weights.shape == (SMALL["embed_dim"], len(CLASSES)) and weights.dtype == np.float32
    assert sizes == calls  # the texts of all classes are batched together, at most batch_size per call

    expected = reference_weights(torch_model, CLASSES)
    assert mean_rel_diff(expected, weights) < 1e-5
    np.testing.assert_allclose(weights, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(weights, axis=0), 1.0, atol=1e-6)
    # the average over templates matters: one template alone gives other weights
    single = zero_shot_classifier(model, CLASSES, TEMPLATES[:1], progress=False).asnumpy()
    assert np.abs(single - expected).max() > 1e-3


def test_logits_and_predictions_match_reference(pair, images):
    torch_model, model, preprocess = pair
    weights = zero_shot_classifier(model, CLASSES, TEMPLATES, progress=False)
    pixels = Tensor(np.stack([preprocess(image).asnumpy() for image in images]))
    image_features = model.encode_image(pixels)  # [6, D], not normalised

    expected_features = reference_image_features(torch_model, preprocess, images)  # [6, D], normalised
    expected = 100.0 * expected_features @ reference_weights(torch_model, CLASSES)  # [6, C]
    assert_clear_order(expected)
    for features, classifier in ((image_features, weights), (image_features.asnumpy(), weights.asnumpy())):
        logits = zero_shot_logits(features, classifier)
        assert logits.shape == (len(images), len(CLASSES)) and logits.dtype == np.float32
        assert mean_rel_diff(expected, logits) < 1e-5
        np.testing.assert_allclose(logits / 100, expected / 100, rtol=0, atol=1e-6)  # cosines
        np.testing.assert_array_equal(logits.argmax(1), expected.argmax(1))
        np.testing.assert_array_equal(np.argsort(-logits, axis=1), np.argsort(-expected, axis=1))
    # the predictions are not all the same class, so the order check above has teeth
    assert len(set(expected.argmax(1))) > 1 or len({tuple(r) for r in np.argsort(-expected, 1)}) > 1


def test_zero_shot_logits_by_hand():
    features = np.array([[3.0, 4.0], [0.0, -2.0]], np.float32)
    classifier = np.array([[1.0, 0.0, 0.6], [0.0, 1.0, 0.8]], np.float32)
    np.testing.assert_allclose(zero_shot_logits(features, classifier),
                               [[60.0, 80.0, 100.0], [0.0, -100.0, -80.0]], rtol=1e-6)
    np.testing.assert_allclose(zero_shot_logits(features, classifier, logit_scale=2.0, normalize=False),
                               [[6.0, 8.0, 10.0], [0.0, -4.0, -3.2]], rtol=1e-6)
    np.testing.assert_allclose(zero_shot_logits(features[0], classifier), [[60.0, 80.0, 100.0]], rtol=1e-6)


# -- the pipeline -------------------------------------------------------------------------------

def test_pipeline_matches_reference(pair, images, tmp_path):
    torch_model, model, preprocess = pair
    classify = ZeroShotClassifier(model, preprocess, CLASSES, TEMPLATES, batch_size=4, progress=False)
    scale = float(torch_model.logit_scale.detach().exp())
    assert abs(classify.logit_scale - scale) < 1e-4 and abs(scale - 60.0) < 1e-3  # randomise's value
    expected_logits = scale * reference_image_features(torch_model, preprocess, images) @ \
        reference_weights(torch_model, CLASSES)
    expected = torch.from_numpy(expected_logits).softmax(dim=-1).numpy()
    assert_clear_order(expected_logits)

    # every accepted kind of input: PIL image, str path, pathlib path, HWC uint8 array
    png = str(tmp_path / "stripes.png")
    images[4].save(png)
    inputs = list(images)
    inputs[4] = png
    inputs[3] = pathlib.Path(png).with_name("noise.png")
    images[3].save(inputs[3])
    inputs[0] = np.asarray(images[0])  # RGB, so the array is the same image
    results = classify(inputs)
    assert len(results) == len(images)
    for result, probs in zip(results, expected):
        order = np.argsort(-probs)
        assert [entry["label"] for entry in result] == [CLASSES[j] for j in order]
        scores = np.array([entry["score"] for entry in result])
        assert all(isinstance(entry["score"], float) for entry in result)
        np.testing.assert_allclose(scores, probs[order], rtol=0, atol=1e-5)
        assert abs(scores.sum() - 1.0) < 1e-6 and np.all(np.diff(scores) <= 0)

    np.testing.assert_allclose(classify.logits(images), expected_logits, rtol=1e-5, atol=1e-4)
    # one image: a flat list; a list of one: a list of lists; top_k keeps the best ones
    one = classify(images[2], top_k=2)
    assert isinstance(one, list) and len(one) == 2 and isinstance(one[0], dict)
    assert [entry["label"] for entry in one] == [entry["label"] for entry in results[2][:2]]
    np.testing.assert_allclose([e["score"] for e in one], [e["score"] for e in results[2][:2]], atol=1e-6)
    wrapped = classify([images[2]])
    assert isinstance(wrapped, list) and len(wrapped) == 1 and len(wrapped[0]) == len(CLASSES)
    assert len(classify(images[2], top_k=100)) == len(CLASSES)
    assert classify.logits(images[2]).shape == (1, len(CLASSES))
    np.testing.assert_allclose(classify.weights.asnumpy(), reference_weights(torch_model, CLASSES),
                               rtol=1e-4, atol=1e-6)


def test_pipeline_default_template(pair, images):
    torch_model, model, preprocess = pair
    classify = ZeroShotClassifier(model, preprocess, ["cat", "dog", "car"], progress=False)
    with torch.no_grad():
        tokens = torch.from_numpy(clip.tokenize(["a photo of a cat.", "a photo of a dog.", "a photo of a car."])
                                  .asnumpy()).long()
        pixels = torch.from_numpy(preprocess(images[1]).asnumpy()[None])
        logits_per_image, _ = torch_model(pixels, tokens)  # OpenAI's model(image, text)
        expected = logits_per_image.softmax(dim=-1).numpy()[0]
    result = classify(images[1])
    got = {entry["label"]: entry["score"] for entry in result}
    np.testing.assert_allclose([got["cat"], got["dog"], got["car"]], expected, atol=1e-5)


# -- errors -----------------------------------------------------------------------------------

@pytest.mark.parametrize("templates, error, match", [
    ([], ValueError, "templates is empty"),
    (["a photo of a cat"], ValueError, "no '{}' placeholder"),
    (["a photo of a {name}"], ValueError, "cannot be filled"),
    (["a photo of a {} {}"], ValueError, "cannot be filled"),
    ([3], TypeError, r"templates\[0\] is a int"),
    (["a {}", None], TypeError, r"templates\[1\] is a NoneType"),
    ([lambda c: 3], TypeError, "returned a int"),
    (42, TypeError, "templates must be a list"),
])
def test_bad_templates(pair, templates, error, match):
    with pytest.raises(error, match=match):
        zero_shot_classifier(pair[1], ["cat", "dog"], templates, progress=False)


@pytest.mark.parametrize("classnames, error, match", [
    ([], ValueError, "classnames is empty"),
    ("cat", TypeError, "single string"),
    (["cat", 3], TypeError, r"classnames\[1\] is a int"),
    (["cat", " "], ValueError, r"classnames\[1\] is an empty class name"),
    (None, TypeError, "must be a list of class names"),
])
def test_bad_classnames(pair, classnames, error, match):
    with pytest.raises(error, match=match):
        zero_shot_classifier(pair[1], classnames, ["a {}"], progress=False)


def test_other_errors(pair, images, tmp_path):
    _, model, preprocess = pair
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        zero_shot_classifier(model, ["cat"], ["a {}"], batch_size=0, progress=False)
    with pytest.raises(RuntimeError, match="too long.*truncate=True"):
        zero_shot_classifier(model, ["cat " * 100], ["a {}"], progress=False)
    with pytest.raises(TypeError, match="CLIP model"):
        zero_shot_classifier(object(), ["cat"], ["a {}"], progress=False)
    with pytest.raises(ValueError, match="classifier must be"):
        zero_shot_logits(np.ones((2, 64)), np.ones((32, 3)))
    with pytest.raises(TypeError, match="preprocess must be callable"):
        ZeroShotClassifier(model, None, ["cat"])
    with pytest.raises(ValueError, match="candidate_labels is empty"):
        ZeroShotClassifier(model, preprocess, [])

    classify = ZeroShotClassifier(model, preprocess, ["cat", "dog"], progress=False)
    for top_k, error in ((0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match="top_k"):
            classify(images[0], top_k=top_k)
    with pytest.raises(TypeError, match="images must be"):
        classify(3)
    with pytest.raises(TypeError, match=r"images\[1\] is a int"):
        classify([images[0], 3])
    with pytest.raises(ValueError, match="empty list"):
        classify([])
    with pytest.raises(TypeError, match="4-D array"):
        classify(np.zeros((2, 64, 64, 3), np.uint8))
    missing = str(tmp_path / "missing.jpg")
    with pytest.raises(FileNotFoundError, match=r"images\[1\].*missing\.jpg"):
        classify([images[0], missing])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    with pytest.raises(OSError, match="broken.png"):
        classify(str(broken))
