"""The command line ``python -m clip`` (``clip.cli``): classify, embed, eval, convert and errors.

Most runs are in-process (``clip.cli.main([...])`` with ``capsys``); two go through a real
``python -m clip`` subprocess. Models: a tiny random ``.ckpt`` (``write_tiny_checkpoint``) and,
where numbers are checked, a tiny random OpenAI CLIP built with OpenAI's PyTorch code and saved
as a ``.pth`` state dict, so that the CLI's output can be compared with PyTorch's computation.
"""
import json
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import clip
import make_reference
import reference
from clip import cli
from tiny_checkpoint import tiny_config, write_tiny_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# the sweep grid of evaluation.linear_probe: C = 10 ** (e / 8), e in [-48, 48]
C_GRID = [10.0 ** (e / 8) for e in range(-48, 49)]


# -- fixtures ---------------------------------------------------------------------------------

def _picture(seed, size):
    """A small RGB picture: a coloured background with a few shapes."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x0, y0 = rng.integers(0, size[0] // 2), rng.integers(0, size[1] // 2)
        x1, y1 = x0 + rng.integers(5, size[0] // 2), y0 + rng.integers(5, size[1] // 2)
        draw.rectangle((int(x0), int(y0), int(x1), int(y1)), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return image


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return write_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny") / "tiny-vit.ckpt"), kind="vit")


@pytest.fixture(scope="module")
def torch_pair(tmp_path_factory):
    """``(torch_model, pth_path, preprocess)``: OpenAI's CLIP (tiny ViT config) with random
    weights, the same weights as a float32 state dict, and the preprocess of ``clip.load``."""
    torch.set_num_threads(1)
    torch_model = reference.model_module().CLIP(**tiny_config("vit")).eval()
    make_reference.randomise(torch_model, seed=3)
    path = str(tmp_path_factory.mktemp("torch") / "tiny-ref.pth")
    torch.save({k: v.float() for k, v in torch_model.state_dict().items()}, path)
    _, preprocess = clip.load(path, device="CPU")
    return torch_model, path, preprocess


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """ImageFolder layout, 3 classes of 2 images: ``(root, [(path, class index)])``."""
    root = tmp_path_factory.mktemp("imagefolder")
    items = []
    for c, name in enumerate(["cat", "dog", "red_car"]):
        os.makedirs(root / name)
        for i in range(2):
            path = str(root / name / f"{name}{i}.png")
            _picture(10 * c + i, (48 + 8 * i, 40)).save(path)
            items.append((path, c))
    return str(root), items


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    """CIFAR-10 "python version" files: 5 training batches of 6 images (3 per class in all) and a
    test batch of 10 (one per class); returns the folder holding ``cifar-10-batches-py``."""
    root = tmp_path_factory.mktemp("cifar")
    folder = root / "cifar-10-batches-py"
    os.makedirs(folder)
    rng = np.random.default_rng(0)

    def dump(name, obj):
        with open(folder / name, "wb") as f:
            pickle.dump(obj, f, protocol=2)

    dump("batches.meta", {b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_cases_per_batch": 6})
    train_labels = np.repeat(np.arange(10), 3)
    rng.shuffle(train_labels)
    for b in range(5):
        labels = train_labels[6 * b:6 * b + 6]
        dump(f"data_batch_{b + 1}", {b"data": rng.integers(0, 256, (6, 3072), dtype=np.uint8),
                                     b"labels": [int(v) for v in labels], b"batch_label": b"training batch"})
    dump("test_batch", {b"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8),
                        b"labels": list(range(10)), b"batch_label": b"testing batch"})
    return str(root)


@pytest.fixture(scope="module")
def captions(tmp_path_factory):
    """Three images with two captions each, as a Flickr8k token file and as a CSV file."""
    root = tmp_path_factory.mktemp("captions")
    os.makedirs(root / "images")
    texts = {"a.png": ["a red square on grey", "a bright picture"],
             "b.png": ["two blue rectangles", "a photo of shapes"],
             "c.png": ["a dark green field", "a small image"]}
    for i, name in enumerate(texts):
        _picture(100 + i, (64, 48)).save(root / "images" / name)
    with open(root / "Flickr8k.token.txt", "w", encoding="utf-8") as f:
        for name, caps in texts.items():
            for n, caption in enumerate(caps):
                f.write(f"{name}#{n}\t{caption}\n")
    with open(root / "pairs.csv", "w", encoding="utf-8") as f:
        f.write("path,caption\n")
        for name, caps in texts.items():
            for caption in caps:
                f.write(f"images/{name},\"{caption}, indeed\"\n")
        f.write("images/missing.png,a caption of an image that does not exist\n")
    return str(root), texts


def run(capsys, *argv):
    """``(exit code, stdout, stderr)`` of ``clip.cli.main(argv)``."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- references computed with PyTorch -----------------------------------------------------------

@torch.no_grad()
def torch_image_features(torch_model, preprocess, paths):
    """The reference model's features of our preprocessed pixels. [N, D]"""
    pixels = np.stack([preprocess(Image.open(path)).asnumpy() for path in paths])
    return torch_model.encode_image(torch.from_numpy(pixels)).numpy().astype(np.float64)


@torch.no_grad()
def torch_text_features(torch_model, texts):
    tokens = torch.from_numpy(clip.tokenize(texts, truncate=True).asnumpy().astype(np.int64))
    return torch_model.encode_text(tokens).numpy().astype(np.float64)


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def torch_class_weights(torch_model, classnames, templates):
    """OpenAI's prompt ensembling with the reference model. [C, D]"""
    rows = []
    for name in classnames:
        embeddings = unit(torch_text_features(torch_model, [t.format(name) for t in templates]))
        rows.append(unit(embeddings.mean(axis=0)))
    return np.stack(rows)


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def metric_rows(out):
    """``{name: value}`` of the ``metric value`` lines of an eval table."""
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(\S+)\s+(-?[0-9.]+(?:e[-+]?\d+)?)\b", out, re.M)
            if m.group(1) != "metric"}


# -- classify ---------------------------------------------------------------------------------

def test_classify_json_matches_pytorch(capsys, torch_pair, image_folder):
    torch_model, pth, preprocess = torch_pair
    paths = [path for path, _ in image_folder[1]][:4]
    labels = ["a cat", "a dog", "a red car", "a tree"]
    code, out, err = run(capsys, "classify", *paths, "--model", pth, "--device", "CPU", "-q",
                         "--labels", *labels, "--top-k", "3", "--json", "--batch-size", "3")
    assert code == 0, err
    assert err == ""
    results = json.loads(out)
    assert [r["image"] for r in results] == paths
    image = unit(torch_image_features(torch_model, preprocess, paths))
    text = unit(torch_text_features(torch_model, [f"a photo of a {label}." for label in labels]))
    probs = softmax(torch_model.logit_scale.exp().item() * image @ text.T)  # [N, 4]
    for result, row in zip(results, probs):
        assert set(result) == {"image", "predictions"}
        predictions = result["predictions"]
        assert len(predictions) == 3 and all(set(p) == {"label", "score"} for p in predictions)
        scores = [p["score"] for p in predictions]
        assert scores == sorted(scores, reverse=True)
        order = np.argsort(-row, kind="stable")[:3]
        assert [p["label"] for p in predictions] == [labels[j] for j in order]
        np.testing.assert_allclose(scores, row[order], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("override", [False, True])
def test_classify_prompt_set_table_matches_pytorch(capsys, torch_pair, image_folder, override):
    """--prompt-set uses the set's class names and all its templates (ensembling), unless
    --templates is given; the table shows the top 5 with percentages."""
    torch_model, pth, preprocess = torch_pair
    path = image_folder[1][5][0]
    extra = ["--templates", "itap of a {}.", "a {} in a picture."] if override else []
    code, out, err = run(capsys, "classify", path, "--model", pth, "--device", "CPU", "--quiet",
                         "--prompt-set", "CIFAR-10", *extra)
    assert code == 0, err
    cifar = clip.get_prompt_set("cifar10")
    templates = ["itap of a {}.", "a {} in a picture."] if override else list(cifar.templates)
    assert len(templates) == (2 if override else 18)
    weights = torch_class_weights(torch_model, cifar.classnames, templates)  # [10, D]
    image = unit(torch_image_features(torch_model, preprocess, [path]))[0]
    probs = softmax(torch_model.logit_scale.exp().item() * weights @ image)
    order = np.argsort(-probs, kind="stable")[:5]

    lines = out.splitlines()
    assert lines[0] == path
    assert lines[1].split() == ["rank", "label", "score"]
    rows = [re.match(r"^\s+(\d+)\s+(.+?)\s+([0-9.]+)%$", line) for line in lines[2:]]
    assert len(rows) == 5 and all(rows)
    assert [int(m.group(1)) for m in rows] == [1, 2, 3, 4, 5]
    assert [m.group(2) for m in rows] == [cifar.classnames[j] for j in order]
    np.testing.assert_allclose([float(m.group(3)) for m in rows], 100 * probs[order], atol=0.006)


def test_classify_labels_file(capsys, tiny_ckpt, image_folder, tmp_path):
    path = image_folder[1][0][0]
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("cat\n\n  dog  \nred car\n", encoding="utf-8")
    code, out, err = run(capsys, "classify", path, "--model", tiny_ckpt, "--device", "CPU", "-q",
                         "--labels-file", labels_file, "--json", "--top-k", "10")
    assert code == 0, err
    (result,) = json.loads(out)
    assert sorted(p["label"] for p in result["predictions"]) == ["cat", "dog", "red car"]  # top-k clamped to 3
    assert abs(sum(p["score"] for p in result["predictions"]) - 1.0) < 1e-6


# -- embed ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def embed_folder(tmp_path_factory):
    """Nested folder: 3 good images, a corrupt one and a non-image file."""
    root = tmp_path_factory.mktemp("embed")
    os.makedirs(root / "x" / "y")
    good = [str(root / "a.png"), str(root / "x" / "b.jpg"), str(root / "x" / "y" / "c.png")]
    for i, path in enumerate(good):
        _picture(50 + i, (40 + 10 * i, 50)).save(path)
    (root / "x" / "broken.png").write_bytes(b"\x89PNG not really a png")
    (root / "notes.txt").write_text("not an image")
    return str(root), sorted(good), str(root / "x" / "broken.png")


def test_embed_folder_matches_pytorch(capsys, torch_pair, embed_folder, tmp_path):
    torch_model, pth, preprocess = torch_pair
    root, good, broken = embed_folder
    prefix = tmp_path / "out" / "feats"
    code, out, err = run(capsys, "embed", root, "--output", prefix, "--model", pth, "--device", "CPU",
                         "--normalize", "--num-workers", "1", "--batch-size", "2", "-q")
    assert code == 0, err
    features = np.load(str(prefix) + ".npy")
    with open(str(prefix) + ".paths.txt", encoding="utf-8") as f:
        paths = f.read().splitlines()
    assert paths == good
    assert features.shape == (3, 32) and features.dtype == np.float32
    np.testing.assert_allclose(features, unit(torch_image_features(torch_model, preprocess, paths)), atol=2e-5)
    # the summary: counts, dim, and the unreadable file with its reason
    assert "embedded 3 of 4 images (dim 32)" in out
    assert re.search(r"^failed:\s+1\b", out, re.M)
    assert re.search(rf"^\s+{re.escape(broken)}: UnidentifiedImageError", out, re.M)
    assert "warning" not in err


def test_embed_image_list(capsys, tiny_ckpt, embed_folder, tmp_path):
    root, good, _ = embed_folder
    listing = tmp_path / "list.txt"
    rel = os.path.relpath(good[1], tmp_path)
    listing.write_text(f"{good[0]}\n\n{rel}\n{tmp_path / 'missing.png'}\n", encoding="utf-8")
    prefix = tmp_path / "listed.npy"  # a trailing .npy is the same prefix
    code, out, err = run(capsys, "embed", listing, "-o", prefix, "--model", tiny_ckpt, "--device", "CPU", "-q")
    assert code == 0, err
    features = np.load(str(tmp_path / "listed.npy"))
    with open(tmp_path / "listed.paths.txt", encoding="utf-8") as f:
        paths = f.read().splitlines()
    assert features.shape == (2, 32)
    assert paths == [good[0], os.path.join(str(tmp_path), rel)]  # relative to the list's folder
    assert os.path.samefile(paths[1], good[1])
    norms = np.linalg.norm(features, axis=1)
    assert not np.allclose(norms, 1.0)  # not normalised without --normalize
    assert "missing.png: FileNotFoundError" in out

    # one image file instead of a list
    code, out, err = run(capsys, "embed", good[2], "-o", tmp_path / "one", "--model", tiny_ckpt, "--device", "CPU", "-q")
    assert code == 0, err
    assert np.load(tmp_path / "one.npy").shape == (1, 32)
    assert (tmp_path / "one.paths.txt").read_text(encoding="utf-8") == good[2] + "\n"
    umask = os.umask(0)
    os.umask(umask)
    for name in ("one.npy", "one.paths.txt"):  # ordinary files, not mkstemp's private ones
        assert os.stat(tmp_path / name).st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("mode", ["pynative", "graph"])
def test_embed_texts_matches_pytorch(capsys, torch_pair, tmp_path, mode):
    torch_model, pth, _ = torch_pair
    texts = ["a diagram", "a dog", "a cat sitting on a red sofa"]
    source = tmp_path / "texts.txt"
    source.write_text("\n".join([texts[0], "", texts[1], texts[2]]) + "\n", encoding="utf-8")
    code, out, err = run(capsys, "embed", "--texts", source, "--output", tmp_path / "t", "--model", pth,
                         "--device", "CPU", "-q", "--mode", mode, "--batch-size", "2")
    assert code == 0, err
    features = np.load(tmp_path / "t.npy")
    with open(tmp_path / "t.texts.txt", encoding="utf-8") as f:
        assert f.read().splitlines() == texts
    np.testing.assert_allclose(features, torch_text_features(torch_model, texts), atol=2e-5, rtol=1e-4)
    assert "embedded 3 texts (dim 32)" in out


def test_embed_all_images_unreadable(capsys, tiny_ckpt, tmp_path):
    folder = tmp_path / "bad"
    os.makedirs(folder)
    (folder / "one.png").write_bytes(b"garbage")
    code, out, err = run(capsys, "embed", folder, "-o", tmp_path / "f", "--model", tiny_ckpt, "--device", "CPU", "-q")
    assert code == 1
    assert err.splitlines() == [err.strip()] and err.startswith("error: none of the 1 images could be read")
    assert "one.png" in out
    assert not os.path.exists(tmp_path / "f.npy")


# -- eval -------------------------------------------------------------------------------------

def test_eval_zero_shot_imagefolder_matches_pytorch(capsys, torch_pair, image_folder, tmp_path):
    torch_model, pth, preprocess = torch_pair
    root, items = image_folder
    report = tmp_path / "reports" / "zs.json"
    code, out, err = run(capsys, "eval", "--task", "zero-shot", "--dataset", root, "--model", pth,
                         "--device", "CPU", "-q", "--json", report, "--batch-size", "4")
    assert code == 0, err
    # by hand: folder names ('_' read as a space) in "a photo of a {}.", argmax of cosine
    paths = [path for path, _ in items]
    labels = np.array([c for _, c in items])
    image = unit(torch_image_features(torch_model, preprocess, paths))
    text = unit(torch_text_features(torch_model, ["a photo of a cat.", "a photo of a dog.", "a photo of a red car."]))
    predicted = np.argmax(image @ text.T, axis=1)
    top1 = float(np.mean(predicted == labels))
    recall = float(np.mean([np.mean(predicted[labels == c] == c) for c in range(3)]))

    metrics = metric_rows(out)
    assert metrics["top1"] == pytest.approx(top1, abs=1e-4)
    assert metrics["top5"] == 1.0  # 3 classes: top-5 always hits
    assert metrics["mean_per_class_recall"] == pytest.approx(recall, abs=1e-4)
    with open(report, encoding="utf-8") as f:
        data = json.load(f)
    assert {"task", "model", "dataset", "dataset_format", "split", "num_images", "num_classes", "prompt_set",
            "num_templates", "metrics", "failed"} <= set(data)
    assert data["task"] == "zero-shot" and data["dataset_format"] == "imagefolder"
    assert data["num_images"] == 6 and data["num_classes"] == 3 and data["num_templates"] == 1
    assert data["metrics"]["top1"] == pytest.approx(top1)
    assert set(data["metrics"]) == {"top1", "top5", "mean_per_class_recall"}
    assert data["failed"] == []
    assert [name for name in os.listdir(report.parent)] == ["zs.json"]  # no temporary file left


def test_eval_zero_shot_cifar(capsys, tiny_ckpt, cifar_dir, tmp_path):
    report = tmp_path / "cifar.json"
    code, out, err = run(capsys, "eval", "--task", "zero-shot", "--dataset", cifar_dir, "--model", tiny_ckpt,
                         "--device", "CPU", "-q", "--json", report)
    assert code == 0, err
    metrics = metric_rows(out)
    assert set(metrics) >= {"top1", "top5", "mean_per_class_recall"}
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("top1", "top5", "mean_per_class_recall"))
    assert metrics["top5"] >= metrics["top1"]
    data = json.loads(report.read_text())
    assert data["dataset_format"] == "cifar" and data["split"] == "test"
    assert data["prompt_set"] == "cifar10" and data["num_templates"] == 18  # CIFAR-10's own prompts
    assert data["num_images"] == 10 and data["num_classes"] == 10
    assert metrics["top1"] == pytest.approx(data["metrics"]["top1"], abs=1e-4)


def test_eval_linear_probe_cifar(capsys, tiny_ckpt, cifar_dir, tmp_path):
    report = tmp_path / "probe.json"
    code, out, err = run(capsys, "eval", "--task", "linear-probe", "--dataset", cifar_dir, "--model", tiny_ckpt,
                         "--device", "CPU", "-q", "--json", report, "--val-fraction", "0.34")
    assert code == 0, err
    data = json.loads(report.read_text())
    assert {"C", "val_accuracy", "metrics", "sweep", "num_train", "num_images", "failed"} <= set(data)
    assert data["num_train"] == 30 and data["num_images"] == 10
    assert min(abs(np.log10(data["C"]) - np.log10(c)) for c in C_GRID) < 1e-9  # on the paper's grid
    assert data["C"] in [s["C"] for s in data["sweep"]]
    assert 0.0 <= data["val_accuracy"] <= 1.0
    assert all(0.0 <= v <= 1.0 for v in data["metrics"].values())
    metrics = metric_rows(out)
    assert metrics["C"] == pytest.approx(data["C"], rel=1e-3)
    assert metrics["top1"] == pytest.approx(data["metrics"]["top1"], abs=1e-4)


def _recalls_by_hand(image, text, text_to_image, k):
    """Recall@k both ways from cosine similarities. (i2t, t2i)"""
    sim = unit(image) @ unit(text).T  # [Ni, Nt]
    t2i = np.mean([t2i_image in np.argsort(-sim[:, t], kind="stable")[:k]
                   for t, t2i_image in enumerate(text_to_image)])
    i2t = np.mean([np.any(text_to_image[np.argsort(-sim[i], kind="stable")[:k]] == i) for i in range(len(image))])
    return float(i2t), float(t2i)


def test_eval_retrieval_flickr8k_matches_pytorch(capsys, torch_pair, captions, tmp_path):
    torch_model, pth, preprocess = torch_pair
    root, texts = captions
    report = tmp_path / "retrieval.json"
    code, out, err = run(capsys, "eval", "--task", "retrieval", "--dataset", os.path.join(root, "Flickr8k.token.txt"),
                         "--images-root", os.path.join(root, "images"), "--model", pth, "--device", "CPU", "-q",
                         "--json", report)
    assert code == 0, err
    names = list(texts)
    image = torch_image_features(torch_model, preprocess, [os.path.join(root, "images", n) for n in names])
    all_captions = [c for n in names for c in texts[n]]
    text = torch_text_features(torch_model, all_captions)
    text_to_image = np.repeat(np.arange(3), 2)
    metrics = metric_rows(out)
    data = json.loads(report.read_text())
    assert data["num_images"] == 3 and data["num_captions"] == 6 and data["dataset_format"] == "flickr8k"
    for k in (1, 5, 10):
        i2t, t2i = _recalls_by_hand(image, text, text_to_image, k)
        assert metrics[f"image_to_text_R@{k}"] == pytest.approx(i2t, abs=1e-4)
        assert metrics[f"text_to_image_R@{k}"] == pytest.approx(t2i, abs=1e-4)
        assert data["metrics"][f"image_to_text_R@{k}"] == pytest.approx(i2t)
        assert data["metrics"][f"text_to_image_R@{k}"] == pytest.approx(t2i)


def test_eval_retrieval_csv_reports_missing_image(capsys, tiny_ckpt, captions, tmp_path):
    root, _ = captions
    report = tmp_path / "csv.json"
    code, out, err = run(capsys, "eval", "--task", "retrieval", "--dataset", os.path.join(root, "pairs.csv"),
                         "--model", tiny_ckpt, "--device", "CPU", "-q", "--json", report)
    assert code == 0, err
    assert "warning: skipped 1 of 4 images" in err and "missing.png" in err
    data = json.loads(report.read_text())
    assert data["dataset_format"] == "csv"
    assert data["num_images"] == 3 and data["num_captions"] == 6  # the missing image's caption is dropped
    assert [f["path"] for f in data["failed"]] == [os.path.join(root, "images", "missing.png")]
    assert set(data["metrics"]) == {f"{d}_R@{k}" for d in ("image_to_text", "text_to_image") for k in (1, 5, 10)}
    assert all(0.0 <= v <= 1.0 for v in data["metrics"].values())
    assert data["metrics"]["text_to_image_R@10"] == 1.0  # 3 images: every caption's image is in the top 10


# -- convert ----------------------------------------------------------------------------------

def test_convert_matches_pytorch(capsys, torch_pair, tmp_path):
    torch_model, pth, _ = torch_pair
    out_path = tmp_path / "converted.ckpt"
    code, out, err = run(capsys, "convert", "--pth_path", pth, "--output", out_path)
    assert code == 0, err
    assert out.strip() == f"saved {out_path}"
    model, _ = clip.load(str(out_path), device="CPU")
    pixels = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    from mindspore import Tensor

    ours = model.encode_image(Tensor(pixels)).asnumpy()
    with torch.no_grad():
        expected = torch_model.encode_image(torch.from_numpy(pixels)).numpy()
    np.testing.assert_allclose(ours, expected, atol=2e-5, rtol=1e-4)


# -- errors -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corrupt_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("corrupt") / "broken.ckpt"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return str(path)


ERROR_CASES = {
    "missing image": (["classify", "{tmp}/nope.png", "--labels", "a", "b"], "nope.png"),
    "unknown model": (["classify", "{img}", "--labels", "a", "b", "--model", "ViT-X/99"], "unknown model 'ViT-X/99'"),
    "unknown prompt set": (["classify", "{img}", "--prompt-set", "no-such-set"], "unknown prompt set 'no-such-set'"),
    "no labels": (["classify", "{img}"], "no labels"),
    "corrupt checkpoint": (["classify", "{img}", "--labels", "a", "b", "--model", "{corrupt}"], "broken.ckpt"),
    "template without placeholder": (["classify", "{img}", "--labels", "a", "--templates", "a photo"], "placeholder"),
    "duplicate label": (["classify", "{img}", "--labels", "a", "a"], "twice"),
    "missing dataset": (["eval", "--task", "zero-shot", "--dataset", "{tmp}/none"], "not found"),
    "retrieval on a folder without --captions": (["eval", "--task", "retrieval", "--dataset", "{tmp}"], "--captions"),
    "caption format for zero-shot": (["eval", "--task", "zero-shot", "--dataset", "{tmp}",
                                      "--dataset-format", "csv"], "cifar or imagefolder"),
    "option of another task": (["eval", "--task", "linear-probe", "--dataset", "{tmp}", "--prompt-set", "cifar10"],
                               "--prompt-set is for --task zero-shot"),
    "missing embed source": (["embed", "{tmp}/nothing", "-o", "{tmp}/f"], "not found"),
    "embed without source": (["embed", "-o", "{tmp}/f"], "SOURCE"),
    "convert missing file": (["convert", "--pth_path", "{tmp}/none.pt"], "neither a file nor a model name"),
    "unknown device": (["classify", "{img}", "--labels", "a", "--device", "TPU"], "unknown device"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_errors_are_one_line(capsys, case, tiny_ckpt, corrupt_ckpt, image_folder, tmp_path):
    argv, expected = ERROR_CASES[case]
    argv = [a.format(tmp=tmp_path, img=image_folder[1][0][0], corrupt=corrupt_ckpt) for a in argv]
    if argv[0] != "convert":
        if "--model" not in argv:
            argv += ["--model", tiny_ckpt]
        if "--device" not in argv:
            argv += ["--device", "CPU"]
    code, out, err = run(capsys, *argv, "-q")
    assert code == 1
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and expected in lines[0]
    assert "Traceback" not in err


def test_debug_shows_traceback(capsys, tiny_ckpt, image_folder):
    code, out, err = run(capsys, "classify", image_folder[1][0][0], "--prompt-set", "nope", "--model", tiny_ckpt,
                         "--device", "CPU", "--debug")
    assert code == 1
    assert "Traceback (most recent call last)" in err and "UnknownPromptSetError" in err
    assert err.splitlines()[-1].startswith("error: unknown prompt set 'nope'")


@pytest.mark.parametrize("argv, expected", [
    ([], "COMMAND"),
    (["frobnicate"], "invalid choice"),
    (["classify", "x.png", "--labels", "a", "--top-k", "0"], "--top-k"),
    (["eval", "--dataset", "x"], "--task"),
    (["eval", "--task", "nearest-neighbour", "--dataset", "x"], "--task"),
    (["classify", "x.png", "--labels", "a", "--prompt-set", "cifar10"], "not allowed with"),
    (["embed", "x", "-o", "y", "--num-workers", "many"], "--num-workers"),
])
def test_bad_arguments_exit_2_with_usage(capsys, argv, expected):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    _, err = capsys.readouterr()
    assert "usage: python -m clip" in err and expected in err


# -- the entry point --------------------------------------------------------------------------

def _python_m_clip(*argv):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "clip", *map(str, argv)], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=300)


def test_python_m_clip_classify(tiny_ckpt, image_folder):
    path = image_folder[1][2][0]
    proc = _python_m_clip("classify", path, "--labels", "cat", "dog", "--model", tiny_ckpt, "--device", "CPU",
                          "--json", "-q")
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(proc.stdout)
    assert result["image"] == path and len(result["predictions"]) == 2
    assert abs(sum(p["score"] for p in result["predictions"]) - 1.0) < 1e-6


def test_python_m_clip_error(tmp_path):
    proc = _python_m_clip("embed", tmp_path / "missing", "-o", tmp_path / "f", "--model", "no-such-model",
                          "--device", "CPU")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert proc.stdout == ""
