"""Batch feature extraction (``clip.features``) against OpenAI's PyTorch model.

The small random-weight CLIP of test_zeroshot.py is loaded by ``clip.load`` from OpenAI's
PyTorch weights; the expected features are the PyTorch model's ``encode_image`` of the same
preprocessed pixels (our preprocess; its parity with torchvision is tested elsewhere).
"""
import io
import os
import warnings

import numpy as np
import pytest
import torch
import mindspore.dataset as ds
from PIL import Image

import clip
from clip.features import (IMAGE_EXTENSIONS, ImageFeatures, extract_image_features, extract_text_features,
                           find_images)
from test_zeroshot import build_small_pair, synthetic_images

# good files of the test folder: relative path -> index into synthetic_images() (+ how it is saved)
GOOD = {
    "a/img0.jpg": 0,
    "a/b/img1.PNG": 1,   # upper-case extension
    "a/b/c/img2.png": 2,  # RGBA
    "c/img3.bmp": 3,
    "img4.gif": 5,       # palette
    "c/img5.webp": 4,
    "d/img6.tiff": 3,
}
CORRUPT = "a/broken.jpg"      # random bytes with an image extension
TRUNCATED = "c/truncated.png"  # the first half of a valid PNG
IGNORED = ["notes.txt", "a/b/data.npy", "c/README"]  # not image extensions: not even tried


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return build_small_pair(tmp_path_factory.mktemp("small-clip"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    images = synthetic_images()
    for rel, index in GOOD.items():
        os.makedirs(os.path.dirname(root / rel), exist_ok=True)
        image = images[index]
        if rel.endswith((".jpg", ".bmp")):
            image = image.convert("RGB")
        image.save(root / rel, format={".jpg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".gif": "GIF",
                                       ".webp": "WEBP", ".tiff": "TIFF"}[os.path.splitext(rel)[1].lower()])
    (root / CORRUPT).write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    buffer = io.BytesIO()
    images[3].save(buffer, format="PNG")
    (root / TRUNCATED).write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2])
    for rel in IGNORED:
        (root / rel).write_bytes(b"\x00\x01 not an image")
    return root


def pixels_of(preprocess, path):
    with Image.open(path) as image:
        return preprocess(image).asnumpy()


@torch.no_grad()
def reference_features(torch_model, pixels):
    """The reference model's encode_image of preprocessed pixels [N, 3, R, R]. [N, D]"""
    return torch_model.encode_image(torch.from_numpy(np.asarray(pixels, np.float32))).numpy()


def expected_for(pair, paths):
    torch_model, _, preprocess = pair
    return reference_features(torch_model, np.stack([pixels_of(preprocess, p) for p in paths]))


def assert_features_close(ours, expected):
    assert ours.dtype == np.float32 and ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)


# -- folders ----------------------------------------------------------------------------------

def test_find_images(folder):
    found = find_images(folder)
    assert found == sorted(str(folder / rel) for rel in list(GOOD) + [CORRUPT, TRUNCATED])
    assert set(IMAGE_EXTENSIONS) == {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@pytest.mark.parametrize("batch_size, num_workers", [(3, 1), (3, 2), (64, 2), (1, 1), (3, 0), (64, 0)])
def test_folder_matches_reference(pair, folder, batch_size, num_workers):
    _, model, preprocess = pair
    with pytest.warns(RuntimeWarning, match="skipped 2 of 9 images"):
        result = extract_image_features(model, preprocess, str(folder), batch_size=batch_size,
                                        num_workers=num_workers, progress=False)
    good = sorted(str(folder / rel) for rel in GOOD)
    assert result.paths == good and len(result) == len(good)
    assert_features_close(result.features, expected_for(pair, good))
    failed = dict(result.failed)
    assert sorted(failed) == sorted([str(folder / CORRUPT), str(folder / TRUNCATED)])
    assert failed[str(folder / CORRUPT)].startswith("UnidentifiedImageError: ")
    assert "truncated" in failed[str(folder / TRUNCATED)].lower() or "broken" in failed[str(folder / TRUNCATED)]


def test_default_num_workers(monkeypatch):
    """Decoding threads by default only where there are cores to spare for them."""
    from clip.features import default_num_workers
    for cpus, workers in ((1, 0), (2, 0), (4, 0), (5, 2), (64, 2)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cpus: set(range(n)), raising=False)
        assert default_num_workers() == workers


def test_normalize_and_progress(pair, folder, capsys):
    _, model, preprocess = pair
    with pytest.warns(RuntimeWarning):
        result = extract_image_features(model, preprocess, folder, batch_size=4, normalize=True, progress=True)
    expected = expected_for(pair, result.paths)
    np.testing.assert_allclose(np.linalg.norm(result.features, axis=1), 1.0, atol=1e-6)
    assert_features_close(result.features, expected / np.linalg.norm(expected, axis=1, keepdims=True))
    assert "9/9" in capsys.readouterr().err  # the tqdm bar counts every file, failed ones too


def test_list_of_paths_keeps_order_and_reports_missing(pair, folder, tmp_path):
    _, model, preprocess = pair
    missing = str(tmp_path / "missing.png")
    chosen = [folder / "c/img5.webp", str(folder / "a/img0.jpg"), missing, str(folder / "a/b/c/img2.png"),
              str(folder / TRUNCATED), str(folder / "a/img0.jpg")]  # a Path, a duplicate, two failures
    with pytest.warns(RuntimeWarning, match="skipped 2 of 6"):
        result = extract_image_features(model, preprocess, chosen, batch_size=2, num_workers=2, progress=False)
    good = [str(chosen[0]), chosen[1], chosen[3], chosen[5]]
    assert result.paths == good
    assert_features_close(result.features, expected_for(pair, good))
    assert [path for path, _ in result.failed] == [missing, str(folder / TRUNCATED)]
    assert result.failed[0][1].startswith("FileNotFoundError")


def test_all_files_fail(pair, folder):
    _, model, preprocess = pair
    with pytest.warns(RuntimeWarning, match="skipped 1 of 1"):
        result = extract_image_features(model, preprocess, [str(folder / CORRUPT)], progress=False)
    assert result.features.shape == (0, 64) and result.paths == [] and len(result.failed) == 1


# -- saving -----------------------------------------------------------------------------------

def test_save_and_load(pair, folder, tmp_path):
    _, model, preprocess = pair
    prefix = tmp_path / "out" / "features"
    with pytest.warns(RuntimeWarning):
        result = extract_image_features(model, preprocess, folder, batch_size=5, progress=False, save_to=prefix)
    assert sorted(os.listdir(tmp_path / "out")) == ["features.npy", "features.paths.txt"]  # no temporary files
    np.testing.assert_array_equal(np.load(str(prefix) + ".npy"), result.features)
    with open(str(prefix) + ".paths.txt", encoding="utf-8") as f:
        assert f.read().splitlines() == result.paths

    loaded = ImageFeatures.load(prefix)
    np.testing.assert_array_equal(loaded.features, result.features)
    assert loaded.paths == result.paths and loaded.failed == []
    assert ImageFeatures.load(str(prefix) + ".npy").paths == result.paths  # a trailing .npy is ignored

    # overwrite with other content, with unusual characters in the paths
    other = ImageFeatures(np.arange(6, dtype=np.float32).reshape(3, 2), ["x y.jpg", "ü/é\u2028.png", "\tz.png"])
    assert other.save(prefix) == (str(prefix) + ".npy", str(prefix) + ".paths.txt")
    again = ImageFeatures.load(prefix)
    np.testing.assert_array_equal(again.features, other.features)
    assert again.paths == other.paths
    assert sorted(os.listdir(tmp_path / "out")) == ["features.npy", "features.paths.txt"]

    with pytest.raises(ValueError, match="line break"):
        ImageFeatures(np.zeros((1, 2)), ["a\nb.jpg"]).save(tmp_path / "bad")
    (tmp_path / "out" / "features.paths.txt").write_text("only-one.jpg\n", encoding="utf-8")
    with pytest.raises(ValueError, match="do not belong together"):
        ImageFeatures.load(prefix)
    with pytest.raises(FileNotFoundError, match="nothing.npy"):
        ImageFeatures.load(tmp_path / "nothing")
    with pytest.raises(ValueError, match="2 paths for 3 feature rows"):
        ImageFeatures(np.zeros((3, 2)), ["a", "b"])


# -- mindspore.dataset sources -------------------------------------------------------------------

def test_dataset_of_decoded_images(pair):
    torch_model, model, preprocess = pair
    images = [image.convert("RGB") for image in synthetic_images()]  # different sizes
    arrays = [np.asarray(image) for image in images]

    def rows():
        for i, array in enumerate(arrays):
            yield np.int32(i), array

    dataset = ds.GeneratorDataset(rows, column_names=["label", "image"], shuffle=False)
    result = extract_image_features(model, preprocess, dataset, batch_size=4, num_workers=2, progress=False)
    expected = reference_features(torch_model, np.stack([preprocess(a).asnumpy() for a in arrays]))
    assert result.paths == [] and result.failed == []
    assert_features_close(result.features, expected)


def test_dataset_of_encoded_files_and_named_column(pair, folder):
    _, model, preprocess = pair
    paths = sorted(str(folder / rel) for rel in GOOD)
    blobs = [np.fromfile(path, dtype=np.uint8) for path in paths]  # what ImageFolderDataset(decode=False) gives
    dataset = ds.GeneratorDataset(lambda: ((blob, np.int32(0)) for blob in blobs), column_names=["jpeg", "x"],
                                  shuffle=False)
    with pytest.raises(ValueError, match="name the one holding the images"):
        extract_image_features(model, preprocess, dataset, progress=False)
    with pytest.raises(ValueError, match="no column 'picture'"):
        extract_image_features(model, preprocess, dataset, column="picture", progress=False)
    result = extract_image_features(model, preprocess, dataset, column="jpeg", batch_size=3, progress=False)
    assert_features_close(result.features, expected_for(pair, paths))


def test_dataset_of_preprocessed_batches(pair):
    torch_model, model, preprocess = pair
    pixels = np.stack([preprocess(image).asnumpy() for image in synthetic_images()] * 2)  # [12, 3, 64, 64]
    dataset = ds.NumpySlicesDataset({"image": pixels}, shuffle=False).batch(5)  # rows of 5, 5 and 2
    result = extract_image_features(model, preprocess, dataset, batch_size=4, progress=False)
    assert_features_close(result.features, reference_features(torch_model, pixels))

    # the snippet of the MindSpore port's docs: decode, then map the preprocess, unbatched
    arrays = [np.asarray(image.convert("RGB")) for image in synthetic_images()]
    mapped = ds.GeneratorDataset(lambda: ((a,) for a in arrays), column_names=["image"], shuffle=False) \
        .map(preprocess, input_columns=["image"])
    result = extract_image_features(model, preprocess, mapped, batch_size=64, num_workers=1, progress=False)
    expected = reference_features(torch_model, np.stack([preprocess(a).asnumpy() for a in arrays]))
    assert_features_close(result.features, expected)


def test_dataset_with_wrong_pixels(pair):
    _, model, preprocess = pair
    dataset = ds.NumpySlicesDataset({"image": np.zeros((3, 3, 32, 32), np.float32)}, shuffle=False)
    with pytest.raises(ValueError, match=r"column 'image', row 0: .*shape \(3, 32, 32\)"):
        extract_image_features(model, preprocess, dataset, progress=False)


# -- text -------------------------------------------------------------------------------------

def test_text_features_match_reference(pair):
    torch_model, model, _ = pair
    texts = ["a diagram", "a dog", "a cat", "two red cars on a bridge at night", "CLIP 🙂 features"]
    with torch.no_grad():
        expected = torch_model.encode_text(torch.from_numpy(clip.tokenize(texts).asnumpy()).long()).numpy()
    for batch_size in (2, 256):
        ours = extract_text_features(model, texts, batch_size=batch_size, progress=False)
        assert_features_close(ours, expected)
    normalised = extract_text_features(model, texts, batch_size=3, progress=False, normalize=True)
    assert_features_close(normalised, expected / np.linalg.norm(expected, axis=1, keepdims=True))
    assert_features_close(extract_text_features(model, "a dog", progress=False), expected[1:2])

    long = " ".join(["a very long caption"] * 30)
    with pytest.raises(RuntimeError, match="truncate=True"):
        extract_text_features(model, [long], progress=False)
    with torch.no_grad():
        expected_long = torch_model.encode_text(
            torch.from_numpy(clip.tokenize([long], truncate=True).asnumpy()).long()).numpy()
    assert_features_close(extract_text_features(model, [long], truncate=True, progress=False), expected_long)


# -- errors -----------------------------------------------------------------------------------

def test_errors(pair, folder, tmp_path):
    _, model, preprocess = pair
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("no images here")
    cases = [
        (dict(source=123), TypeError, "source must be a folder, a list of image paths or a mindspore.dataset"),
        (dict(source={"a": 1}), TypeError, "got dict"),
        (dict(source=str(tmp_path / "nope")), FileNotFoundError, "does not exist"),
        (dict(source=str(folder / "a/img0.jpg")), NotADirectoryError, "is a file, not a folder"),
        (dict(source=str(empty)), ValueError, "no image files"),
        (dict(source=[]), ValueError, "empty list"),
        (dict(source=["a.jpg", 3]), TypeError, r"source\[1\] is a int"),
        (dict(source=str(folder), batch_size=0), ValueError, "batch_size must be an int >= 1"),
        (dict(source=str(folder), num_workers=-1), ValueError, "num_workers must be an int >= 0"),
        (dict(source=str(folder), num_workers=1.5), TypeError, "num_workers must be an int"),
        (dict(source=str(folder), column="image"), ValueError, "column is only used with a mindspore.dataset"),
        (dict(source=str(folder), preprocess=clip.transform.Preprocess(224)), ValueError,
         "preprocess makes 224x224 images but the model takes 64x64"),
        (dict(source=str(folder), preprocess="resize"), TypeError, "preprocess must be callable"),
        (dict(source=str(folder), model=object()), TypeError, "CLIP model"),
    ]
    for kwargs, error, match in cases:
        arguments = dict(model=model, preprocess=preprocess, progress=False)
        arguments.update(kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no run starts: each error comes before any file is read
            with pytest.raises(error, match=match):
                extract_image_features(**arguments)

    with pytest.raises(ValueError, match="texts is empty"):
        extract_text_features(model, [], progress=False)
    with pytest.raises(TypeError, match=r"texts\[1\] is a int"):
        extract_text_features(model, ["a", 1], progress=False)
    with pytest.raises(TypeError, match="texts must be a string or a list"):
        extract_text_features(model, 5, progress=False)
