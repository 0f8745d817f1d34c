"""``clip.load`` and the model's API: arguments, modes, global state, and every error it names."""
import os

import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor

import clip
from clip.convert import save_state_dict
from clip.model import (IGNORED_CHECKPOINT_KEYS, ModelConfigError, WeightsMismatchError, build_model,
                        infer_config, torch_name_map, CLIP)
from clip.pt_reader import CheckpointError
from tiny_checkpoint import tiny_config, tiny_state_dict, write_tiny_checkpoint


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny-vit.ckpt"
    write_tiny_checkpoint(str(path), kind="vit")
    return str(path)


def _tokens():
    return clip.tokenize(["a diagram", "a dog", "a cat"])


def _image(n=1, res=224, seed=0):
    return Tensor(np.random.RandomState(seed).randn(n, 3, res, res).astype(np.float32))


# -- the public API ---------------------------------------------------------------------------

def test_available_models_in_openai_order():
    assert clip.available_models() == ["RN50", "RN101", "RN50x4", "RN50x16", "RN50x64",
                                       "ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px"]
    assert clip.clip.__all__ == ["available_models", "load", "tokenize"]
    assert clip.__all__[:3] == ["available_models", "load", "tokenize"]


def test_model_attributes_like_openai(tiny_ckpt):
    model, preprocess = clip.load(tiny_ckpt, device="cpu")
    assert isinstance(model, CLIP)
    assert model.visual.input_resolution == 224 and preprocess.n_px == 224
    assert model.context_length == 77 and model.vocab_size == 49408
    assert model.dtype == ms.float32
    assert model.logit_scale.shape == ()
    assert not model.training
    # the causal mask is a constant, not a parameter
    names = [name for name, _ in model.parameters_and_names()]
    assert not any("attn_mask" in name for name in names)
    assert isinstance(model.transformer.resblocks[0].attn_mask, Tensor)


@pytest.mark.parametrize("mode", [0, 1, ms.GRAPH_MODE, ms.PYNATIVE_MODE, "graph", "PyNative"])
def test_modes_leave_global_state_alone(tiny_ckpt, mode):
    """(Parity of both modes with the reference is in test_parity.py.)"""
    keys = ("mode", "device_target", "jit_config")
    before = {key: ms.get_context(key) for key in keys}
    model, _ = clip.load(tiny_ckpt, device="CPU", mode=mode)
    image, text = _image(2), _tokens()
    assert model.encode_image(image).shape == (2, 32)
    assert model.encode_text(text).shape == (3, 32)
    logits_per_image, logits_per_text = model(image, text)
    assert logits_per_image.shape == (2, 3) and logits_per_text.shape == (3, 2)
    assert {key: ms.get_context(key) for key in keys} == before


def test_jit_flag_is_graph_mode(tiny_ckpt):
    model, _ = clip.load(tiny_ckpt, device="CPU", jit=True)
    assert model._image_features is not model._compute_image_features  # compiled towers


def test_pt_and_ckpt_names_round_trip(tiny_ckpt):
    """The cell-type table maps every MindSpore name to OpenAI's, and both ways are one-to-one."""
    model = CLIP(**tiny_config("resnet"))
    names = torch_name_map(model)
    assert len(set(names.values())) == len(names)
    assert names["visual.bn1.gamma"] == "visual.bn1.weight"
    assert names["visual.layer1.0.downsample.1.moving_variance"] == "visual.layer1.0.downsample.1.running_var"
    assert names["token_embedding.embedding_table"] == "token_embedding.weight"
    assert names["ln_final.beta"] == "ln_final.bias"
    assert names["transformer.resblocks.0.attn.in_proj_weight"] == "transformer.resblocks.0.attn.in_proj_weight"
    assert names["visual.attnpool.c_proj.weight"] == "visual.attnpool.c_proj.weight"


def test_infer_config_reads_every_hyper_parameter():
    for kind in ("vit", "resnet"):
        config = tiny_config(kind)
        assert infer_config(tiny_state_dict(kind)) == config


# -- errors ----------------------------------------------------------------------------------

def test_unknown_model_name():
    with pytest.raises(RuntimeError, match=r"Model ViT-X/99 not found; available models = \['RN50'"):
        clip.load("ViT-X/99", device="CPU")


def test_missing_file(tmp_path):
    with pytest.raises(RuntimeError, match="not found"):
        clip.load(str(tmp_path / "nothing.ckpt"), device="CPU")


def test_directory(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory"):
        clip.load(str(tmp_path), device="CPU")


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "weights.txt"
    path.write_text("hello")
    with pytest.raises(ValueError, match=r"unsupported file type '.txt'"):
        clip.load(str(path), device="CPU")


@pytest.mark.parametrize("device", ["tpu", "cuda0", "", "CPU:x"])
def test_unknown_device(tiny_ckpt, device):
    with pytest.raises(ValueError, match="device"):
        clip.load(tiny_ckpt, device=device)


def test_device_not_available(tiny_ckpt):
    unavailable = [d for d in ("GPU", "Ascend") if not clip.clip._device_available(d)]
    assert unavailable, "this test expects a machine without GPU or Ascend"
    for device in unavailable:
        with pytest.raises(RuntimeError, match="not available on this machine"):
            clip.load(tiny_ckpt, device=device)


def test_device_type_error(tiny_ckpt):
    with pytest.raises(TypeError, match="device must be a string"):
        clip.load(tiny_ckpt, device=0)


@pytest.mark.parametrize("mode", [2, -1, "eager", True, None])
def test_bad_mode(tiny_ckpt, mode):
    with pytest.raises(ValueError, match="mode must be"):
        clip.load(tiny_ckpt, device="CPU", mode=mode)


def test_expected_sha256(tiny_ckpt):
    import hashlib
    digest = hashlib.sha256(open(tiny_ckpt, "rb").read()).hexdigest()
    clip.load(tiny_ckpt, device="CPU", sha256=digest.upper())
    with pytest.raises(CheckpointError, match="SHA-256 is"):
        clip.load(tiny_ckpt, device="CPU", sha256="0" * 64)


def _write(tmp_path, state_dict, name="bad.ckpt"):
    path = str(tmp_path / name)
    save_state_dict(state_dict, path)
    return path


def test_shape_mismatch_is_named(tmp_path):
    state = tiny_state_dict("vit")
    state["transformer.resblocks.0.mlp.c_fc.weight"] = np.zeros((128, 64), np.float32)
    with pytest.raises(WeightsMismatchError, match=r"shape mismatch.*transformer\.resblocks\.0\.mlp\.c_fc\.weight: "
                                                   r"checkpoint \(128, 64\) vs model \(256, 64\)"):
        clip.load(_write(tmp_path, state), device="CPU")


def test_other_architecture_checkpoint_is_refused(tmp_path):
    """Text tower of one architecture, image tower of another: the mismatch is named."""
    state = tiny_state_dict("vit")
    other = tiny_state_dict("vit", transformer_width=128, embed_dim=32)
    state["ln_final.gamma"] = other["ln_final.gamma"]
    with pytest.raises(WeightsMismatchError, match=r"ln_final\.gamma: checkpoint \(128,\) vs model \(64,\)"):
        clip.load(_write(tmp_path, state), device="CPU")


def test_missing_parameter_is_named(tmp_path):
    state = tiny_state_dict("vit")
    del state["visual.ln_post.beta"]
    with pytest.raises(WeightsMismatchError, match=r"missing parameters \(1\): visual\.ln_post\.beta"):
        clip.load(_write(tmp_path, state), device="CPU")


def test_unexpected_entry_is_named(tmp_path):
    state = tiny_state_dict("vit")
    state["visual.extra_head.weight"] = np.zeros((2, 2), np.float32)
    with pytest.raises(WeightsMismatchError, match=r"unexpected entries \(1\): visual\.extra_head\.weight"):
        clip.load(_write(tmp_path, state), device="CPU")


def test_documented_ignore_set_is_accepted(tmp_path):
    state = tiny_state_dict("vit")
    for key in IGNORED_CHECKPOINT_KEYS:
        state[key] = np.array([77], np.int32)
    state["transformer.resblocks.0.attn_mask"] = np.zeros((77, 77), np.float32)  # mindcv-saved models
    model, _ = clip.load(_write(tmp_path, state), device="CPU")
    assert model.context_length == 77


def test_nan_weights_are_refused(tmp_path):
    state = tiny_state_dict("vit")
    state["visual.proj"][0, 0] = np.nan
    with pytest.raises(WeightsMismatchError, match=r"visual\.proj.*NaN or Inf"):
        clip.load(_write(tmp_path, state), device="CPU")


def test_not_a_clip_checkpoint(tmp_path):
    with pytest.raises(ModelConfigError, match="neither a ViT .* nor a ModifiedResNet"):
        build_model({"fc.weight": np.zeros((2, 2), np.float32)})
    state = tiny_state_dict("vit")
    del state["text_projection"]
    with pytest.raises(ModelConfigError, match="no entry 'text_projection'"):
        build_model(state)
    state = tiny_state_dict("vit")
    state["visual.positional_embedding"] = np.zeros((48, 64), np.float32)
    with pytest.raises(ModelConfigError, match="not a square grid"):
        build_model(state)


def test_garbage_ckpt(tmp_path):
    path = tmp_path / "garbage.ckpt"
    path.write_bytes(os.urandom(1000))
    with pytest.raises(CheckpointError, match="garbage.ckpt"):
        clip.load(str(path), device="CPU")


# -- inputs to the model -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_model(tiny_ckpt):
    return clip.load(tiny_ckpt, device="CPU")[0]


def test_single_image_is_a_batch_of_one(tiny_model):
    image = _image(1)
    np.testing.assert_allclose(tiny_model.encode_image(image[0]).asnumpy(),
                               tiny_model.encode_image(image).asnumpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape, match", [
    ((1, 4, 224, 224), r"\[N, 3, 224, 224\].*got \(1, 4, 224, 224\)"),
    ((1, 3, 225, 224), r"got \(1, 3, 225, 224\)"),
    ((2, 224, 224), r"got \(1, 2, 224, 224\)"),
    ((0, 3, 224, 224), "empty batch"),
])
def test_bad_images(tiny_model, shape, match):
    with pytest.raises(ValueError, match=match):
        tiny_model.encode_image(Tensor(np.zeros(shape, np.float32)))


def test_integer_image_is_refused(tiny_model):
    with pytest.raises(TypeError, match="floating-point"):
        tiny_model.encode_image(Tensor(np.zeros((1, 3, 224, 224), np.uint8)))


def test_bad_text(tiny_model):
    with pytest.raises(TypeError, match="integer token ids"):
        tiny_model.encode_text(Tensor(np.zeros((1, 77), np.float32)))
    with pytest.raises(ValueError, match=r"2 <= n_ctx <= 77.*got \(1, 78\)"):
        tiny_model.encode_text(clip.tokenize("a dog", context_length=78))
    with pytest.raises(ValueError, match=r"outside \[0, 49408\)"):
        tiny_model.encode_text(Tensor(np.full((1, 77), 49408, np.int32)))
    with pytest.raises(ValueError, match="empty batch"):
        tiny_model.encode_text(clip.tokenize([]))


def test_shorter_context_is_accepted(tiny_model):
    """Like the reference (clip-anytorch), a context shorter than 77 uses the first positions."""
    short = tiny_model.encode_text(clip.tokenize(["a dog"], context_length=16))
    full = tiny_model.encode_text(clip.tokenize(["a dog"]))
    np.testing.assert_allclose(short.asnumpy(), full.asnumpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", [0, 1])
def test_to_float32_converts_a_float16_model(tiny_ckpt, mode):
    """OpenAI's ``model.float()``: an fp16 model (GPU/Ascend layout) becomes fp32, values kept."""
    state = ms.load_checkpoint(tiny_ckpt)
    half = build_model(state, dtype=ms.float16)
    if mode == 0:
        half.compile_towers()
    stored = {name: p.asnumpy() for name, p in half.parameters_and_names()}
    assert half.dtype == ms.float16
    assert half.to_float32() is half
    assert half.dtype == ms.float32
    for name, p in half.parameters_and_names():
        assert p.dtype == ms.float32, name
        np.testing.assert_array_equal(p.asnumpy(), stored[name].astype(np.float32), err_msg=name)
    assert half.encode_image(_image(1)).dtype == ms.float32
    assert half.encode_text(_tokens()).dtype == ms.float32


UNREADABLE = """
import sys
import clip
try:
    clip.load(sys.argv[1], device="CPU")
except PermissionError as error:
    print("PermissionError:", error)
"""


def test_unreadable_file(tiny_ckpt, tmp_path):
    """A checkpoint the process may not read gets a PermissionError naming it. Root reads any
    file, so as root the check runs in a child process without the capabilities that let it
    (``setpriv`` from util-linux drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH)."""
    import shutil
    import subprocess
    import sys

    path = str(tmp_path / "locked.ckpt")
    shutil.copy(tiny_ckpt, path)
    os.chmod(path, 0)
    try:
        if os.geteuid() != 0:
            with pytest.raises(PermissionError, match="locked.ckpt: the file is not readable"):
                clip.load(path, device="CPU")
            return
        drop = "-dac_override,-dac_read_search"
        result = subprocess.run(["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}", "--",
                                 sys.executable, "-c", UNREADABLE, path],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "PermissionError: " + path + ": the file is not readable" in result.stdout
    finally:
        os.chmod(path, 0o600)


def test_checkpoint_size_check_counts_reclaimable_memory(tiny_ckpt, monkeypatch):
    """MindSpore 2.10 refuses a .ckpt larger than MemFree, which leaves out the page cache; with
    (simulated) no free pages its own load_checkpoint refuses the file, clip.load reads it, and
    MindSpore's check is left as it was."""
    from mindspore.train import serialization

    monkeypatch.setattr(serialization, "_get_available_memory", lambda: 1024)
    with pytest.raises(Exception, match="exceeds current available memory"):
        ms.load_checkpoint(tiny_ckpt)
    model, _ = clip.load(tiny_ckpt, device="CPU", eager=True)
    assert model.visual.input_resolution == 224
    assert serialization._get_available_memory() == 1024
