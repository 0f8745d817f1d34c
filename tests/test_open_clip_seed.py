"""The handbook's open_clip snippet (seed 000, "MindSpore-open_clip > Usage > Appetizer") runs on
``clip.open_clip``, with only these changes (each by ``substitute``, which fails when the snippet
changed): its import line (``from clip.open_clip import ...`` instead of mindcv's ``src.open_clip``),
``device_target="Ascend"`` -> ``"CPU"`` (no Ascend here), and the tag ``"yfcc15m"`` -> the path of a
random-weight RN50 checkpoint (no download here), made from open_clip's own PyTorch RN50 by the
converter (``--model-name RN50``; the file records the architecture).

The snippet prints nothing; it is run unchanged by a wrapper that executes it and then saves its
variables, and the test recomputes them with open_clip's PyTorch model: the features of the
snippet's own (randomly augmented) image tensor and tokens, and the probabilities.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(TESTS_DIR)
sys.path.insert(0, TESTS_DIR)

import open_clip_reference  # noqa: E402
import torch  # noqa: E402

# seed 000, "MindSpore-open_clip > Usage > Appetizer", verbatim
APPETIZER_OPEN_CLIP = r'''from src.open_clip import create_model_and_transforms, get_tokenizer
import mindspore as ms
from PIL import Image
from mindspore import Tensor, ops

# Set context for running environment.
ms.set_context(device_target="Ascend", mode=0)

# Load a pretrained clip model and transformation operations to the input images
# Similar to `clip.load`
model, preprocess_train, preprocess_val = create_model_and_transforms(
    "RN50",
    "yfcc15m",
    force_quick_gelu=False,
    force_custom_text=False,
    force_patch_dropout=None,
    force_image_size=None,
    image_mean=None,
    image_std=None,
    aug_cfg={},
)

# Set a tokenizer according to the given model's text config
tokenizer = get_tokenizer("RN50")

# Preprocess to the input images and texts respectively
image = Tensor(preprocess_train(Image.open("CLIP.png")))
text = tokenizer(["a diagram", "a dog", "a cat"])

# Encode images and texts
image_features = model.encode_image(image)
text_features = model.encode_text(text)

# Different with CLIP module, features are normalized manually and independently
image_features /= image_features.norm(dim=-1, keepdim=True)
text_features /= text_features.norm(dim=-1, keepdim=True)

# Calculate the cosine similarity, which indicates the predicted score of the labels
text_probs = ops.softmax(100.0 * image_features @ text_features.T, axis=-1)
'''

WRAPPER = r'''import numpy as np
namespace = {}
exec(compile(open("snippet.py").read(), "snippet.py", "exec"), namespace)
np.savez("outputs.npz", image=namespace["image"].asnumpy(), text=namespace["text"].asnumpy(),
         image_features=namespace["image_features"].asnumpy(),
         text_features=namespace["text_features"].asnumpy(), text_probs=namespace["text_probs"].asnumpy())
'''


def substitute(source, old, new):
    assert source.count(old) == 1, f"expected exactly one {old!r} in the snippet: the seed changed"
    return source.replace(old, new)


def test_open_clip_appetizer(tmp_path):
    from clip.convert import convert

    ref = open_clip_reference.open_clip()
    torch.manual_seed(0)
    model = ref.create_model("RN50").eval()
    torch.save(model.state_dict(), tmp_path / "open_clip_pytorch_model.bin")
    convert(str(tmp_path / "open_clip_pytorch_model.bin"), str(tmp_path / "RN50.ckpt"), model_name="RN50")
    source = substitute(APPETIZER_OPEN_CLIP, "from src.open_clip import create_model_and_transforms, get_tokenizer",
                        "from clip.open_clip import create_model_and_transforms, get_tokenizer")
    source = substitute(source, 'device_target="Ascend"', 'device_target="CPU"')
    source = substitute(source, '"yfcc15m"', '"./RN50.ckpt"')
    (tmp_path / "snippet.py").write_text(source)
    (tmp_path / "wrapper.py").write_text(WRAPPER)
    (tmp_path / "CLIP.png").write_bytes(open(os.path.join(REPO_ROOT, "CLIP.png"), "rb").read())
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    proc = subprocess.run([sys.executable, "wrapper.py"], cwd=str(tmp_path), env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = np.load(tmp_path / "outputs.npz")
    assert out["image"].shape == (3, 224, 224) and out["text"].shape == (3, 77)
    np.testing.assert_array_equal(out["text"], ref.get_tokenizer("RN50")(["a diagram", "a dog", "a cat"]).numpy())
    with torch.no_grad():
        img = model.encode_image(torch.from_numpy(out["image"])[None])
        txt = model.encode_text(torch.from_numpy(out["text"]).long())
        img, txt = img / img.norm(dim=-1, keepdim=True), txt / txt.norm(dim=-1, keepdim=True)
        probs = (100.0 * img @ txt.T).softmax(dim=-1).numpy()
    np.testing.assert_allclose(out["image_features"], img.numpy(), atol=1e-5)
    np.testing.assert_allclose(out["text_features"], txt.numpy(), atol=1e-5)
    np.testing.assert_allclose(out["text_probs"], probs, atol=1e-5)
