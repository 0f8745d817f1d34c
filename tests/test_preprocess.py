"""Tests for clip.transform: CLIP's image preprocessing.

The reference below is written from torchvision's documented semantics, step by
step, with PIL and NumPy only (torchvision is not installable beside this torch):

* Resize(n) with an int: the shorter side becomes n, the longer one
  int(n * long / short); PIL's ``Image.resize(..., BICUBIC)`` does the resampling.
* CenterCrop(n): offsets int(round((h - n) / 2.0)), int(round((w - n) / 2.0)).
* convert("RGB"), then ToTensor: uint8 -> float32 / 255, HWC -> CHW.
* Normalize: (x - mean) / std with mean and std as float32.
"""
import io
import pickle
import warnings

import mindspore
import mindspore.dataset as ds
import numpy as np
import pytest
from PIL import Image

from clip.transform import MEAN, STD, Preprocess, _transform, center_crop, resize, to_pixels

N_PX = (224, 288, 336, 448)
SIZES = ((225, 224), (224, 225), (300, 200), (199, 641), (1, 1), (17, 33))  # (W, H)
MODES = ("RGB", "RGBA", "L", "LA", "P", "P+transparency", "P+bytes-transparency",
         "CMYK", "I;16", "I", "F", "1")
TOL = 1e-6


def reference(img, n_px):
    """torchvision's Resize(BICUBIC) / CenterCrop / RGB / ToTensor / Normalize, by hand."""
    w, h = img.size
    if w <= h:
        new_w, new_h = n_px, int(n_px * h / w)
    else:
        new_w, new_h = int(n_px * w / h), n_px
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.BICUBIC)
    top = int(round((new_h - n_px) / 2.0))
    left = int(round((new_w - n_px) / 2.0))
    img = img.crop((left, top, left + n_px, top + n_px))
    img = img.convert("RGB")
    x = np.asarray(img).astype(np.float32) / np.float32(255)
    x = (x - np.array(MEAN, dtype=np.float32)) / np.array(STD, dtype=np.float32)
    return x.transpose(2, 0, 1)


def make_image(mode, size, seed=0):
    """A random image of the given PIL mode and (W, H) size."""
    rng = np.random.default_rng(seed)
    w, h = size
    if mode == "RGB":
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    if mode in ("RGBA", "LA"):
        return Image.fromarray(rng.integers(0, 256, (h, w, len(mode)), dtype=np.uint8))
    if mode == "L":
        return Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8))
    if mode.startswith("P"):
        img = Image.frombytes("P", size, rng.integers(0, 32, w * h, dtype=np.uint8).tobytes())
        img.putpalette(rng.integers(0, 256, 32 * 3, dtype=np.uint8).tobytes())
        if mode == "P+transparency":
            img.info["transparency"] = 5
        elif mode == "P+bytes-transparency":
            img.info["transparency"] = bytes(rng.integers(0, 256, 32, dtype=np.uint8))
        assert img.mode == "P"
        return img
    if mode == "CMYK":
        return Image.frombytes("CMYK", size, rng.integers(0, 256, w * h * 4, dtype=np.uint8).tobytes())
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    elif mode == "I":
        img = Image.fromarray(rng.integers(-100, 400, (h, w), dtype=np.int32))
    elif mode == "F":
        img = Image.fromarray(rng.uniform(-50.0, 300.0, (h, w)).astype(np.float32))
    elif mode == "1":
        img = Image.fromarray(rng.integers(0, 2, (h, w)).astype(bool))
    else:
        raise AssertionError(mode)
    assert img.mode == mode
    return img


def check(out, img, n_px):
    assert type(out) is mindspore.Tensor
    assert out.dtype == mindspore.float32
    assert tuple(out.shape) == (3, n_px, n_px)
    got = out.asnumpy()
    assert got.dtype == np.float32
    expected = reference(img, n_px)
    assert np.abs(got - expected).max() <= TOL


@pytest.mark.filterwarnings("ignore:Palette images with Transparency")
@pytest.mark.parametrize("n_px", N_PX)
@pytest.mark.parametrize("mode", MODES)
def test_matches_reference_for_modes_and_sizes(mode, n_px):
    preprocess = _transform(n_px)
    for i, size in enumerate(SIZES):
        img = make_image(mode, size, seed=i)
        check(preprocess(img), img, n_px)


@pytest.mark.parametrize("size", [(1, 4000), (4000, 1)])
def test_extreme_aspect_ratios(size):
    # the full resize is 224 x 896000 pixels, as in torchvision: mode L keeps it light
    img = make_image("L", size)
    check(Preprocess(224)(img), img, 224)


def test_solid_colour_gives_known_values():
    # independent of any resampling: a flat image stays flat through resize and crop
    colour = (10, 200, 31)
    img = Image.new("RGB", (97, 41), colour)
    out = Preprocess(224)(img).asnumpy()
    for c in range(3):
        value = (np.float32(colour[c]) / np.float32(255) - np.float32(MEAN[c])) / np.float32(STD[c])
        assert np.all(out[c] == value)


@pytest.mark.parametrize("extra,top", [(7, 4), (5, 2), (3, 2), (1, 0), (2, 1)])
def test_crop_offsets_use_python_round(extra, top):
    # short side already n_px, so no resampling: row r of the input holds value r
    n = 16
    arr = np.repeat(np.arange(n + extra, dtype=np.uint8)[:, None], n, axis=1)
    img = Image.fromarray(arr)
    assert resize(img, n) is img
    cropped = np.asarray(center_crop(img, n))
    assert cropped.shape == (n, n)
    assert cropped[0, 0] == top == int(round(extra / 2.0))
    out = Preprocess(n)(img).asnumpy()
    assert np.abs(out - reference(img, n)).max() <= TOL


def test_resize_output_sizes():
    assert resize(Image.new("RGB", (300, 200)), 224).size == (336, 224)
    assert resize(Image.new("RGB", (199, 641)), 224).size == (224, int(224 * 641 / 199))
    assert resize(Image.new("RGB", (1, 3)), 5).size == (5, 15)
    assert resize(Image.new("RGB", (7, 7)), 3).size == (3, 3)


def test_center_crop_pads_small_images_with_zeros():
    arr = np.arange(1, 16, dtype=np.uint8).reshape(3, 5)  # H=3, W=5
    out = np.asarray(center_crop(Image.fromarray(arr), 8))
    expected = np.zeros((8, 8), dtype=np.uint8)
    # torchvision pads (crop - size) // 2 before and the rest after: left 1, top 2
    expected[2:5, 1:6] = arr
    np.testing.assert_array_equal(out, expected)

    # padding on one side only, then a normal crop on the other
    arr = np.arange(60, dtype=np.uint8).reshape(3, 20)
    out = np.asarray(center_crop(Image.fromarray(arr), 6))
    expected = np.zeros((6, 6), dtype=np.uint8)
    expected[1:4, :] = arr[:, 7:13]
    np.testing.assert_array_equal(out, expected)

    rgb = np.full((2, 2, 3), 200, dtype=np.uint8)
    out = np.asarray(center_crop(Image.fromarray(rgb), 4))
    assert out.shape == (4, 4, 3)
    assert out[1:3, 1:3].min() == 200 and out.sum() == 200 * 12


def test_center_crop_pads_palette_images_with_index_zero():
    img = Image.new("P", (2, 2), 3)
    img.putpalette([10, 20, 30] + [0, 0, 0] * 2 + [200, 100, 50] + [0, 0, 0] * 252)
    out = center_crop(img, 4)
    assert out.mode == "P"
    np.testing.assert_array_equal(np.asarray(out)[1:3, 1:3], 3)
    assert np.asarray(out)[0, 0] == 0
    rgb = np.asarray(out.convert("RGB"))
    assert tuple(rgb[0, 0]) == (10, 20, 30) and tuple(rgb[1, 1]) == (200, 100, 50)


def test_numpy_and_tensor_inputs_equal_pil_inputs():
    rng = np.random.default_rng(3)
    preprocess = Preprocess(224)
    cases = [
        (rng.integers(0, 256, (50, 70, 3), dtype=np.uint8), "RGB"),
        (rng.integers(0, 256, (50, 70, 4), dtype=np.uint8), "RGBA"),
        (rng.integers(0, 256, (50, 70, 2), dtype=np.uint8), "LA"),
        (rng.integers(0, 256, (50, 70), dtype=np.uint8), "L"),
    ]
    for arr, mode in cases:
        img = Image.fromarray(arr)
        assert img.mode == mode
        expected = preprocess(img).asnumpy()
        np.testing.assert_array_equal(preprocess(arr).asnumpy(), expected)
        np.testing.assert_array_equal(preprocess(mindspore.Tensor(arr)).asnumpy(), expected)
        assert np.abs(expected - reference(img, 224)).max() <= TOL
    gray = cases[3][0]
    np.testing.assert_array_equal(preprocess(gray[:, :, None]).asnumpy(), preprocess(gray).asnumpy())
    # non-contiguous views are fine too
    arr = cases[0][0]
    view = arr[:, ::-1]
    np.testing.assert_array_equal(preprocess(view).asnumpy(),
                                  preprocess(Image.fromarray(np.ascontiguousarray(view))).asnumpy())


def test_inputs_are_not_modified():
    arr = np.random.default_rng(4).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    before = arr.copy()
    img = Image.fromarray(arr)
    Preprocess(32)(arr)
    Preprocess(32)(img)
    np.testing.assert_array_equal(arr, before)
    np.testing.assert_array_equal(np.asarray(img), before)
    assert img.size == (40, 30) and img.mode == "RGB"


def test_output_is_a_usable_mindspore_tensor():
    out = Preprocess(224)(Image.new("RGB", (300, 250), (1, 2, 3)))
    assert tuple(out.unsqueeze(0).shape) == (1, 3, 224, 224)
    again = mindspore.Tensor(out)
    assert type(again) is mindspore.Tensor and again.dtype == mindspore.float32
    np.testing.assert_array_equal(again.asnumpy(), out.asnumpy())
    np.testing.assert_array_equal(np.asarray(out), out.asnumpy())
    batch = mindspore.ops.stack([out, out])
    assert tuple(batch.shape) == (2, 3, 224, 224)


def test_public_attributes_repr_and_pickle():
    preprocess = _transform(336)
    assert isinstance(preprocess, Preprocess)
    assert preprocess.n_px == 336
    assert Preprocess.MEAN == MEAN == (0.48145466, 0.4578275, 0.40821073)
    assert Preprocess.STD == STD == (0.26862954, 0.26130258, 0.27577711)
    text = repr(preprocess)
    assert text.startswith("Preprocess(\n") and text.endswith("\n)")
    for step in ("Resize(size=336, interpolation=bicubic)", "CenterCrop(size=(336, 336))",
                 "ConvertRGB()", "ToTensor()", f"Normalize(mean={MEAN}, std={STD})"):
        assert step in text
    assert text.index("Resize") < text.index("CenterCrop") < text.index("ConvertRGB") \
        < text.index("ToTensor") < text.index("Normalize")
    clone = pickle.loads(pickle.dumps(preprocess))
    assert clone.n_px == 336
    img = make_image("RGB", (40, 30))
    np.testing.assert_array_equal(clone(img).asnumpy(), preprocess(img).asnumpy())


@pytest.mark.parametrize("bad,words", [
    (None, ["NoneType", "PIL.Image.Image", "uint8 numpy.ndarray"]),
    ("cat.jpg", ["str", "PIL.Image.open"]),
    ([[1, 2], [3, 4]], ["list", "PIL.Image.Image"]),
    (b"\x89PNG", ["bytes"]),
    (3, ["int"]),
    (np.zeros((8, 8, 3), dtype=np.float32), ["numpy.ndarray of dtype float32", "(8, 8, 3)", "uint8"]),
    (np.zeros((8,), dtype=np.float64), ["dtype float64", "(8,)", "uint8"]),
    (np.zeros((2, 2, 2, 2), dtype=np.int64), ["dtype int64"]),
    (mindspore.Tensor(np.zeros((8, 8, 3), dtype=np.float32)), ["mindspore.Tensor of dtype float32", "(8, 8, 3)"]),
])
def test_bad_input_types(bad, words):
    with pytest.raises(TypeError) as info:
        Preprocess(224)(bad)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("shape,words", [
    ((8, 8, 5), ["(8, 8, 5)", "(H, W, C)"]),
    ((3, 8, 8, 3), ["(3, 8, 8, 3)"]),
    ((100,), ["(100,)", "Decode"]),
    ((), ["()"]),
    ((0, 5, 3), ["empty", "(0, 5, 3)"]),
    ((5, 0), ["empty", "(5, 0)"]),
])
def test_bad_array_shapes(shape, words):
    with pytest.raises(ValueError) as info:
        Preprocess(224)(np.zeros(shape, dtype=np.uint8))
    for word in words:
        assert word in str(info.value)


def test_empty_pil_image():
    with pytest.raises(ValueError, match="empty image of size 0x5"):
        Preprocess(224)(Image.new("RGB", (0, 5)))


@pytest.mark.parametrize("n_px,error,words", [
    (0, ValueError, "positive int, got 0"),
    (-3, ValueError, "positive int, got -3"),
    ("224", TypeError, "got str '224'"),
    (224.0, TypeError, "got float 224.0"),
    (True, TypeError, "got bool True"),
    (None, TypeError, "got NoneType None"),
])
def test_bad_n_px(n_px, error, words):
    with pytest.raises(error) as info:
        Preprocess(n_px)
    assert words in str(info.value) and "n_px" in str(info.value)


def test_numpy_integer_n_px():
    assert Preprocess(np.int64(224)).n_px == 224
    assert type(Preprocess(np.int64(224)).n_px) is int


# ---- mindspore.dataset pipelines -------------------------------------------------

N_DATA = 8
DATA_PX = 64


def _data():
    rng = np.random.default_rng(11)
    images = rng.integers(0, 256, (N_DATA, 40, 52, 3), dtype=np.uint8)
    labels = np.arange(N_DATA, dtype=np.int32)
    return images, labels


def _expected_batches(images, preprocess):
    direct = np.stack([preprocess(img).asnumpy() for img in images])
    return [direct[i:i + 4] for i in range(0, N_DATA, 4)]


@pytest.mark.parametrize("source", ["numpy_slices", "generator"])
@pytest.mark.parametrize("multiprocessing,workers", [(False, 1), (False, 2), (True, 2)])
def test_dataset_map_pipeline(source, multiprocessing, workers):
    images, labels = _data()
    preprocess = Preprocess(DATA_PX)
    if source == "numpy_slices":
        dataset = ds.NumpySlicesDataset({"image": images, "label": labels}, shuffle=False)
    else:
        def generate():
            for img, label in zip(images, labels):
                yield img, label
        dataset = ds.GeneratorDataset(generate, ["image", "label"], shuffle=False)
    dataset = dataset.map(preprocess, input_columns=["image"], num_parallel_workers=workers,
                          python_multiprocessing=multiprocessing).batch(4)
    expected = _expected_batches(images, preprocess)

    seen = 0
    for (batch, label), want in zip(dataset.create_tuple_iterator(), expected):
        assert type(batch) is mindspore.Tensor and batch.dtype == mindspore.float32
        assert tuple(batch.shape) == (4, 3, DATA_PX, DATA_PX)
        np.testing.assert_array_equal(batch.asnumpy(), want)
        np.testing.assert_array_equal(label.asnumpy(), labels[seen:seen + 4])
        seen += 4
    assert seen == N_DATA

    numpy_batches = [b for b, _ in dataset.create_tuple_iterator(output_numpy=True)]
    assert len(numpy_batches) == 2
    for got, want in zip(numpy_batches, expected):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)


def test_dataset_workers_get_numpy_arrays():
    """``map`` runs a Compose's steps: a Preprocess's one step returns the float32 NumPy array
    itself, so a pipeline's worker never converts a mindspore.Tensor back (which waits for every
    operation MindSpore has queued, e.g. the model encoding the previous batch)."""
    import dill
    from mindspore.dataset.transforms import Compose

    preprocess = Preprocess(DATA_PX)
    assert isinstance(preprocess, Compose)
    (step,) = Compose.decompose([preprocess])
    image = _data()[0][0]
    want = preprocess(image)
    assert type(want) is mindspore.Tensor
    for runner in (step, dill.loads(dill.dumps(step))):  # dill: how python_multiprocessing ships it
        got = runner(image)
        assert type(got) is np.ndarray and got.dtype == np.float32
        np.testing.assert_array_equal(got, want.asnumpy())
    np.testing.assert_array_equal(to_pixels(preprocess, image), want.asnumpy())
    clone = dill.loads(dill.dumps(preprocess))
    assert clone.n_px == DATA_PX and clone.transforms[0].transform.owner is clone
    np.testing.assert_array_equal(clone(image).asnumpy(), want.asnumpy())


def test_dataset_plain_iteration_like_cifar100():
    # Cifar100Dataset has the columns image, coarse_label, fine_label
    images, labels = _data()
    preprocess = Preprocess(DATA_PX)
    dataset = ds.NumpySlicesDataset(
        {"image": images, "coarse_label": labels // 2, "fine_label": labels}, shuffle=False)
    dataset = dataset.map(preprocess, input_columns=["image"]).batch(4)
    expected = _expected_batches(images, preprocess)
    count = 0
    for (images_batch, _, fine), want in zip(dataset, expected):
        assert tuple(images_batch.shape) == (4, 3, DATA_PX, DATA_PX)
        np.testing.assert_array_equal(images_batch.asnumpy(), want)
        np.testing.assert_array_equal(fine.asnumpy(), labels[count:count + 4])
        count += 4
    assert count == N_DATA


def test_dataset_grayscale_hwc1_and_decode_to_pil():
    rng = np.random.default_rng(12)
    gray = rng.integers(0, 256, (4, 30, 45, 1), dtype=np.uint8)
    preprocess = Preprocess(DATA_PX)
    dataset = ds.NumpySlicesDataset({"image": gray}, shuffle=False).map(preprocess, ["image"]).batch(4)
    (batch,) = next(dataset.create_tuple_iterator(output_numpy=True))
    np.testing.assert_array_equal(batch, np.stack([preprocess(Image.fromarray(g[:, :, 0])).asnumpy()
                                                   for g in gray]))

    # encoded files decoded to PIL by the dataset's own Decode, then preprocess
    encoded, expected = [], []
    for i in range(4):
        img = make_image("RGB", (33 + i, 27), seed=i)
        buffer = io.BytesIO()
        img.save(buffer, format="PNG")
        encoded.append(np.frombuffer(buffer.getvalue(), dtype=np.uint8))
        expected.append(reference(img, DATA_PX))

    def generate():
        for data in encoded:
            yield (data,)

    from mindspore.dataset import vision
    dataset = ds.GeneratorDataset(generate, ["image"], shuffle=False)
    dataset = dataset.map([vision.Decode(to_pil=True), preprocess], input_columns=["image"])
    got = [row[0] for row in dataset.create_tuple_iterator(output_numpy=True)]
    assert len(got) == 4
    for g, e in zip(got, expected):
        assert np.abs(g - e).max() <= TOL


def test_dataset_reports_bad_images():
    images = np.zeros((2, 8, 8, 3), dtype=np.float32)
    dataset = ds.NumpySlicesDataset({"image": images}, shuffle=False).map(Preprocess(32), ["image"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match="dtype uint8"):
            for _ in dataset.create_tuple_iterator():
                pass


@pytest.mark.parametrize("mode", ["P", "RGBA", "I;16"])
def test_resize_and_crop_happen_before_rgb_conversion(mode):
    # P resamples with nearest neighbour, RGBA with premultiplied alpha, I;16 at 16 bits:
    # converting first (a common porting mistake) gives different pixels
    img = make_image(mode, (61, 47), seed=7)
    preprocess = Preprocess(224)
    ours = preprocess(img).asnumpy()
    converted_first = preprocess(img.convert("RGB")).asnumpy()
    assert np.abs(ours - reference(img, 224)).max() <= TOL
    assert np.abs(ours - converted_first).max() > 0.01
