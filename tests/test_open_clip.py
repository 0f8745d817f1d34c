"""clip.open_clip's API, data, tokenizer, transforms, converter, CRC and downloads, against
open_clip's own code (open_clip_torch 3.3.0, loaded by path: tests/open_clip_reference.py).

Models here are tiny (widths 64-128, one block per tower, 64x64 images) but keep what makes
open_clip's architectures differ from OpenAI's: head width 32, MLP ratio 3.5, exact GELU.
"""
import functools
import hashlib
import http.server
import json
import os
import sys
import threading

import numpy as np
import pytest
from PIL import Image

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TESTS_DIR)

import open_clip_reference  # noqa: E402
import parity_gates  # noqa: E402
import torch  # noqa: E402

import mindspore as ms  # noqa: E402
import clip  # noqa: E402
from clip import open_clip  # noqa: E402
from clip.cli import main as cli_main  # noqa: E402
from clip.model import ModelConfigError  # noqa: E402
from clip.pt_reader import CheckpointError  # noqa: E402

ARCHITECTURES = ["RN50", "RN101", "RN50x4", "RN50x16", "RN50x64", "ViT-B-32", "ViT-B-16", "ViT-L-14",
                 "ViT-L-14-336", "ViT-H-14", "ViT-g-14", "ViT-bigG-14"]
TINY = {"embed_dim": 64,
        "vision_cfg": {"image_size": 64, "layers": 1, "width": 128, "head_width": 32, "mlp_ratio": 3.5,
                       "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}
TEXTS = ["a diagram", "a dog", "a cat " * 40]


@pytest.fixture(scope="module")
def ref():
    return open_clip_reference.open_clip()


@pytest.fixture(scope="module")
def tiny(ref, tmp_path_factory):
    """A tiny open_clip model with random weights, saved as open_clip saves its files, and its
    float32/float64 outputs on fixed inputs."""
    folder = tmp_path_factory.mktemp("tiny")
    with open(folder / "tiny-oc.json", "w") as f:
        json.dump(TINY, f)
    ref.add_model_config(str(folder / "tiny-oc.json"))
    open_clip.add_model_config("tiny-oc", TINY)
    torch.manual_seed(0)
    model = ref.create_model("tiny-oc").eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name or name.endswith("bias"):
                p.copy_(p + 0.1 * torch.randn(p.shape, generator=gen))
        model.logit_scale.fill_(float(np.log(50.0)))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    torch.save(state, folder / "open_clip_pytorch_model.bin")
    import safetensors.torch
    safetensors.torch.save_file(state, str(folder / "open_clip_model.safetensors"))
    images = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    tokens = ref.get_tokenizer("tiny-oc")(TEXTS).numpy().astype(np.int32)
    expected = {}
    with torch.no_grad():
        for dtype, suffix in ((torch.float32, ""), (torch.float64, "_f64")):
            model.to(dtype)
            image, text = torch.from_numpy(images).to(dtype), torch.from_numpy(tokens).long()
            expected["image_features" + suffix] = model.encode_image(image).double().numpy()
            expected["text_features" + suffix] = model.encode_text(text).double().numpy()
            img_n, txt_n, scale = model(image, text)
            expected["probs" + suffix] = (scale * img_n @ txt_n.T).softmax(-1).double().numpy()
    return dict(folder=folder, images=images, tokens=tokens, expected=expected)


def _check(model, tiny, open_clip_semantics=True):
    image, text = ms.Tensor(tiny["images"]), ms.Tensor(tiny["tokens"])
    img, txt = model.encode_image(image).asnumpy(), model.encode_text(text).asnumpy()
    if open_clip_semantics:
        img_n, txt_n, scale = model(image, text)
        logits = float(scale.asnumpy()) * img_n.asnumpy().astype(np.float64) @ txt_n.asnumpy().astype(np.float64).T
    else:
        logits = model(image, text)[0].asnumpy().astype(np.float64)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    stats = parity_gates.statistics(tiny["expected"], img, txt, probs)
    print(parity_gates.summary(stats))
    assert not parity_gates.failures(stats), parity_gates.failures(stats)


# ---------------------------------------------------------------------------------------------
# data: configs and tags

def test_model_configs_are_open_clips(ref):
    names = open_clip.list_models()
    for arch in ARCHITECTURES:
        for name in (arch, arch + "-quickgelu"):
            if name in ref.list_models():
                assert name in names
                assert open_clip.get_model_config(name) == ref.get_model_config(name), name
    assert open_clip.get_model_config("ViT-g-14")["vision_cfg"]["head_width"] == 88
    with pytest.raises(RuntimeError, match="not found"):
        open_clip.get_model_config("ViT-Z-99")


def test_pretrained_tags_are_open_clips(ref):
    ours = set(open_clip.list_pretrained())
    theirs = {(m, t) for m, t in ref.list_pretrained() if m in open_clip.list_models()}
    assert ours == theirs
    assert "ViT-H-14:laion2b_s32b_b79k" in open_clip.list_pretrained(as_str=True)
    pre = open_clip_reference.submodule("pretrained")
    for model, tag in ours:
        cfg, theirs_cfg = open_clip.get_pretrained_cfg(model, tag), pre.get_pretrained_cfg(model, tag)
        assert cfg.get("quick_gelu", False) == theirs_cfg.get("quick_gelu", False)
        assert tuple(cfg["mean"]) == tuple(theirs_cfg["mean"]) and tuple(cfg["std"]) == tuple(theirs_cfg["std"])


# ---------------------------------------------------------------------------------------------
# tokenizer and transforms

def test_tokenizer_equals_open_clips(ref):
    texts = ["a diagram", "Hello World!  ", "ünïcödé &amp; emoji 🙂", "word " * 100, ""]
    for name in ("ViT-B-32", "ViT-bigG-14", "RN50"):
        ours = open_clip.get_tokenizer(name)(texts)
        assert ours.dtype == ms.int32
        np.testing.assert_array_equal(ours.asnumpy(), ref.get_tokenizer(name)(texts).numpy())
    np.testing.assert_array_equal(open_clip.get_tokenizer("ViT-B-32")("a dog", context_length=8).asnumpy(),
                                  ref.get_tokenizer("ViT-B-32")("a dog", context_length=8).numpy())


def _image(w, h, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("name,tag", [("ViT-B-32", None), ("ViT-L-14", "laion2b_s32b_b82k"),
                                      ("ViT-H-14-quickgelu", "dfn5b"), ("RN50x4", None)])
def test_preprocess_val_equals_open_clips(ref, name, tag):
    transform = open_clip_reference.submodule("transform")
    size = open_clip.get_model_config(name)["vision_cfg"]["image_size"]
    cfg = open_clip.get_pretrained_cfg(name, tag) if tag else {}
    theirs = transform.image_transform(size, is_train=False, mean=cfg.get("mean"), std=cfg.get("std"),
                                       resize_mode=cfg.get("resize_mode"))
    ours = open_clip.transform.image_transform(size, False, cfg.get("mean"), cfg.get("std"), cfg.get("resize_mode"))
    for w, h in ((300, 200), (199, 641), (size, size)):
        img = _image(w, h)
        np.testing.assert_allclose(ours(img).asnumpy(), theirs(img).numpy(), atol=1e-6)


def test_preprocess_train_is_open_clips_augmentation(ref, monkeypatch):
    transform = open_clip_reference.submodule("transform")
    theirs = transform.image_transform(64, is_train=True, aug_cfg={})
    crop = theirs.transforms[0]
    assert tuple(crop.scale) == (0.9, 1.0)
    ours = open_clip.transform.image_transform(64, True, aug_cfg={})
    img = _image(120, 90, seed=3)
    # the same crop box gives the same tensor
    box = ours.crop_box(*img.size)
    monkeypatch.setattr(type(crop), "get_params", staticmethod(lambda *a: box))
    np.testing.assert_allclose(ours.apply(img, box).asnumpy(), theirs(img).numpy(), atol=1e-6)
    # and the boxes are open_clip's distribution: 90-100 % of the area, aspect within [3/4, 4/3]
    areas = []
    for _ in range(300):
        top, left, h, w = ours.crop_box(120, 90)
        assert 0 <= top and top + h <= 90 and 0 <= left and left + w <= 120
        areas.append(h * w / (120 * 90))
    assert 0.88 <= min(areas) and max(areas) <= 1.0 and np.std(areas) > 0.01
    assert ours(img).shape == (3, 64, 64)
    with pytest.raises(NotImplementedError, match="color_jitter_prob"):
        open_clip.transform.image_transform(64, True, aug_cfg={"color_jitter_prob": 0.5, "color_jitter": (1,) * 4})


# ---------------------------------------------------------------------------------------------
# loading, converting, CRC

def test_create_model_from_open_clip_files(tiny):
    for fmt in ("open_clip_pytorch_model.bin", "open_clip_model.safetensors"):
        model, train, val = open_clip.create_model_and_transforms("tiny-oc", pretrained=str(tiny["folder"] / fmt),
                                                                  device="CPU", eager=True)
        _check(model, tiny)
        assert val(_image(80, 70)).shape == (3, 64, 64)


def test_clip_load_refuses_open_clip_files_without_a_name(tiny):
    with pytest.raises(ModelConfigError, match="--model-name"):
        clip.load(str(tiny["folder"] / "open_clip_pytorch_model.bin"), device="CPU")


@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
def test_converted_file_records_its_architecture(tiny, tmp_path, fmt, capsys):
    out = tmp_path / f"tiny.{fmt}"
    assert cli_main(["convert", "--pth_path", str(tiny["folder"] / "open_clip_pytorch_model.bin"),
                     "--model-name", "tiny-oc", "--format", fmt, "--output", str(out)]) == 0
    model, _ = clip.load(str(out), device="CPU")  # no name needed: the file records the architecture
    assert model.architecture["quick_gelu"] is False and model.architecture["vision_heads"] == 4
    _check(model, tiny, open_clip_semantics=False)
    model = open_clip.create_model("tiny-oc", pretrained=str(out), device="CPU", mode=0)
    _check(model, tiny)


def _flip(path, fraction):
    data = bytearray(path.read_bytes())
    position = int(len(data) * fraction)
    data[position] ^= 0xFF
    path.write_bytes(bytes(data))


def test_flipped_bytes_in_a_crc_checkpoint_are_reported(tiny, tmp_path):
    from clip.convert import convert
    for fmt in ("ckpt", "safetensors"):
        path = tmp_path / f"tiny.{fmt}"
        convert(str(tiny["folder"] / "open_clip_model.safetensors"), str(path), model_name="tiny-oc", format=fmt)
        _flip(path, 0.6)
        with pytest.raises(CheckpointError, match=f"tiny.{fmt}.*corrupted.*CRC"):
            clip.load(str(path), device="CPU")


def test_checkpoints_without_crc_still_load(tmp_path):
    from tiny_checkpoint import write_tiny_checkpoint
    path = tmp_path / "mindcv_layout.ckpt"
    write_tiny_checkpoint(str(path), kind="vit")
    model, _ = clip.load(str(path), device="CPU")
    assert model.visual.input_resolution == 224


# ---------------------------------------------------------------------------------------------
# tag downloads through the verified cache (a loopback server)

def test_tag_download_is_verified(tiny, tmp_path, monkeypatch):
    data = (tiny["folder"] / "open_clip_pytorch_model.bin").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    served = tmp_path / "served" / digest
    served.mkdir(parents=True)
    (served / "tiny.bin").write_bytes(data)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "served"))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{digest}/tiny.bin"
        table = open_clip.pretrained._TABLE
        monkeypatch.setitem(table, "tiny-oc", {"loopback": {"url": url, "sha256": digest}})
        model = open_clip.create_model("tiny-oc", pretrained="loopback", cache_dir=str(tmp_path / "cache"),
                                       device="CPU", eager=True)
        _check(model, tiny)
        assert (tmp_path / "cache" / "tiny.bin").read_bytes() == data
        monkeypatch.setitem(table, "tiny-oc", {"bad": {"url": url, "sha256": "0" * 64}})
        with pytest.raises(clip._download.DownloadError):
            open_clip.create_model("tiny-oc", pretrained="bad", cache_dir=str(tmp_path / "cache2"), device="CPU")
    finally:
        server.shutdown()


class _HubHandler(http.server.BaseHTTPRequestHandler):
    """A loopback stand-in for the Hugging Face hub: ``/<org>/<repo>/resolve/main/<file>`` answers
    with a redirect to the stored file and, for LFS files, the file's SHA-256 as X-Linked-Etag."""
    files = {}  # "/org/repo" -> (bytes, published sha256 or None)

    def log_message(self, *args):
        pass

    def _route(self, head):
        repo, _, rest = self.path.partition("/resolve/main/")
        if self.path.startswith("/storage/"):
            data = self.files[self.path[len("/storage"):]][0]
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if not head:
                self.wfile.write(data)
            return
        if repo not in self.files or not rest:
            self.send_error(404)
            return
        published = self.files[repo][1]
        self.send_response(302)
        self.send_header("Location", f"/storage{repo}")
        if published:
            self.send_header("X-Linked-Etag", f'"{published}"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self):
        self._route(head=True)

    def do_GET(self):
        self._route(head=False)


def test_hub_tag_download_uses_the_published_sha256(tiny, tmp_path, monkeypatch):
    """Hub tags: the SHA-256 the hub publishes for the file (X-Linked-Etag) verifies the download;
    a file without one is refused with a clear message; a wrong one fails the verification."""
    data = (tiny["folder"] / "open_clip_pytorch_model.bin").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    _HubHandler.files = {"/org/good": (data, digest), "/org/unpublished": (data, None),
                         "/org/wrong": (data, "1" * 64)}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HubHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setattr(open_clip.pretrained, "HF_BASE_URL", base)
        table = open_clip.pretrained._TABLE
        assert open_clip.pretrained.hub_file_sha256(f"{base}/org/good/resolve/main/x.bin") == digest
        monkeypatch.setitem(table, "tiny-oc", {"good": {"hf_hub": "org/good"}, "unpublished": {"hf_hub": "org/unpublished"},
                                               "wrong": {"hf_hub": "org/wrong"}})
        model = open_clip.create_model("tiny-oc", pretrained="good", cache_dir=str(tmp_path / "cache"),
                                       device="CPU", eager=True)
        _check(model, tiny)
        with pytest.raises(RuntimeError, match="publishes no SHA-256"):
            open_clip.create_model("tiny-oc", pretrained="unpublished", cache_dir=str(tmp_path / "c2"), device="CPU")
        with pytest.raises(clip._download.DownloadError):
            open_clip.create_model("tiny-oc", pretrained="wrong", cache_dir=str(tmp_path / "c3"), device="CPU")
    finally:
        server.shutdown()
