"""Tests of ``clip.datasets`` on small files written here in each published format."""
import csv
import os
import pickle
import shlex

import numpy as np
import pytest
from PIL import Image

from clip import datasets
from clip.datasets import (ClassificationData, ImageSource, group_captions, load_cifar,
                           load_image_folder, read_caption_csv, read_flickr8k_captions,
                           read_image_list, restricted_pickle_load)
from clip.evaluation import retrieval_recall

C10_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
             "dog", "frog", "horse", "ship", "truck"]
C100_FINE = [f"fine_{i:02d}" for i in range(100)]
C100_COARSE = [f"coarse_{i:02d}" for i in range(20)]

# one known pixel: image 0 of every split, row 3, column 5 has RGB (10, 200, 77)
ROW, COL, RGB = 3, 5, (10, 200, 77)


def make_images(n, seed):
    """``[n, 3072]`` CIFAR rows (1024 R, 1024 G, 1024 B) with the known pixel in row 0."""
    rows = np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)
    for channel, value in enumerate(RGB):
        rows[0, channel * 1024 + ROW * 32 + COL] = value
    return rows


def expected_hwc(rows):
    """HWC images from CIFAR rows, computed pixel by pixel (independent of the reader)."""
    out = np.empty((rows.shape[0], 32, 32, 3), dtype=np.uint8)
    for c in range(3):
        for r in range(32):
            out[:, r, :, c] = rows[:, c * 1024 + r * 32:c * 1024 + r * 32 + 32]
    return out


class Py2Pickler(pickle._Pickler):
    """Writes ``bytes`` the way Python 2 wrote ``str`` (BINSTRING opcodes), like the files
    published on the CIFAR site (cPickle, protocol 2)."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj):
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + n.to_bytes(4, "little") + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def dump(obj, path, protocol):
    with open(path, "wb") as f:
        if protocol == "py2":
            Py2Pickler(f, protocol=2).dump(obj)
        else:
            pickle.dump(obj, f, protocol=protocol)


# ----------------------------------------------------------------------------------------
# writers of the four CIFAR layouts
# ----------------------------------------------------------------------------------------

def write_cifar10_python(root, protocol=4, per_batch=3, n_test=4):
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder)
    truth = {"train": ([], [])}
    for i in range(1, 6):
        rows = make_images(per_batch, seed=i)
        labels = [(i + j) % 10 for j in range(per_batch)]
        dump({b"batch_label": f"training batch {i} of 5".encode(), b"labels": labels,
              b"data": rows, b"filenames": [b"x.png"] * per_batch},
             os.path.join(folder, f"data_batch_{i}"), protocol)
        truth["train"][0].append(rows)
        truth["train"][1].extend(labels)
    rows = make_images(n_test, seed=0)
    labels = [9, 0, 3, 3][:n_test]
    dump({b"batch_label": b"testing batch 1 of 1", b"labels": labels, b"data": rows,
          b"filenames": [b"t.png"] * n_test}, os.path.join(folder, "test_batch"), protocol)
    truth["test"] = (rows, labels)
    dump({b"num_cases_per_batch": per_batch, b"label_names": [n.encode() for n in C10_NAMES],
          b"num_vis": 3072}, os.path.join(folder, "batches.meta"), protocol)
    truth["train"] = (np.concatenate(truth["train"][0]), truth["train"][1])
    return folder, truth


def write_cifar100_python(root, protocol=4):
    folder = os.path.join(root, "cifar-100-python")
    os.makedirs(folder)
    truth = {}
    for split, n, seed in (("train", 5, 1), ("test", 3, 2)):
        rows = make_images(n, seed)
        fine = [(7 * j + seed) % 100 for j in range(n)]
        coarse = [f // 5 for f in fine]
        dump({b"filenames": [b"f.png"] * n, b"batch_label": split.encode(),
              b"fine_labels": fine, b"coarse_labels": coarse, b"data": rows},
             os.path.join(folder, split), protocol)
        truth[split] = (rows, fine, coarse)
    dump({b"fine_label_names": [n.encode() for n in C100_FINE],
          b"coarse_label_names": [n.encode() for n in C100_COARSE]},
         os.path.join(folder, "meta"), protocol)
    return folder, truth


def write_cifar10_binary(root, per_batch=2, n_test=3):
    folder = os.path.join(root, "cifar-10-batches-bin")
    os.makedirs(folder)
    truth = {}
    train_rows, train_labels = [], []
    for i in range(1, 6):
        rows = make_images(per_batch, seed=10 + i)
        labels = [(3 * i + j) % 10 for j in range(per_batch)]
        records = np.concatenate([np.array(labels, np.uint8)[:, None], rows], axis=1)
        records.tofile(os.path.join(folder, f"data_batch_{i}.bin"))
        train_rows.append(rows)
        train_labels += labels
    truth["train"] = (np.concatenate(train_rows), train_labels)
    rows = make_images(n_test, seed=20)
    labels = [4, 9, 0][:n_test]
    np.concatenate([np.array(labels, np.uint8)[:, None], rows], axis=1).tofile(
        os.path.join(folder, "test_batch.bin"))
    truth["test"] = (rows, labels)
    with open(os.path.join(folder, "batches.meta.txt"), "w") as f:
        f.write("\n".join(C10_NAMES) + "\n\n")       # the real file ends with blank lines
    return folder, truth


def write_cifar100_binary(root):
    folder = os.path.join(root, "cifar-100-binary")
    os.makedirs(folder)
    truth = {}
    for split, n, seed in (("train", 4, 30), ("test", 3, 31)):
        rows = make_images(n, seed)
        fine = [(11 * j + seed) % 100 for j in range(n)]
        coarse = [(f + 1) % 20 for f in fine]   # deliberately unrelated to fine // 5
        records = np.concatenate([np.array(coarse, np.uint8)[:, None],
                                  np.array(fine, np.uint8)[:, None], rows], axis=1)
        records.tofile(os.path.join(folder, f"{split}.bin"))
        truth[split] = (rows, fine, coarse)
    for name, names in (("fine_label_names.txt", C100_FINE),
                        ("coarse_label_names.txt", C100_COARSE)):
        with open(os.path.join(folder, name), "w") as f:
            f.write("\n".join(names) + "\n")
    return folder, truth


def check(data, rows, labels, classnames):
    assert isinstance(data, ClassificationData)
    assert data.images.dtype == np.uint8 and data.images.shape == (len(labels), 32, 32, 3)
    assert data.labels.dtype == np.int64
    np.testing.assert_array_equal(data.labels, labels)
    np.testing.assert_array_equal(data.images, expected_hwc(rows))
    assert data.classnames == classnames
    assert data.paths is None and len(data) == len(labels)


# ----------------------------------------------------------------------------------------
# CIFAR
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["py2", 2, 4, 5])
def test_cifar10_python(tmp_path, protocol):
    folder, truth = write_cifar10_python(str(tmp_path), protocol=protocol)
    test = load_cifar(folder, split="test")
    check(test, *truth["test"], C10_NAMES)
    assert tuple(test.images[0, ROW, COL]) == RGB          # HWC, RGB
    train = load_cifar(str(tmp_path), split="train")        # parent folder works too
    check(train, *truth["train"], C10_NAMES)
    assert len(train) == 15


def test_cifar100_python_fine_and_coarse(tmp_path):
    folder, truth = write_cifar100_python(str(tmp_path), protocol="py2")
    rows, fine, coarse = truth["test"]
    check(load_cifar(folder, "test"), rows, fine, C100_FINE)
    check(load_cifar(str(tmp_path), "test", label="coarse"), rows, coarse, C100_COARSE)
    rows, fine, _ = truth["train"]
    train = load_cifar(str(tmp_path), "train", variant=100)
    check(train, rows, fine, C100_FINE)
    assert tuple(train.images[0, ROW, COL]) == RGB


def test_cifar10_binary(tmp_path):
    folder, truth = write_cifar10_binary(str(tmp_path))
    test = load_cifar(str(tmp_path), "test")
    check(test, *truth["test"], C10_NAMES)
    assert tuple(test.images[0, ROW, COL]) == RGB
    check(load_cifar(folder, "train", variant="cifar10"), *truth["train"], C10_NAMES)


def test_cifar100_binary(tmp_path):
    folder, truth = write_cifar100_binary(str(tmp_path))
    rows, fine, coarse = truth["test"]
    test = load_cifar(folder, "test")
    check(test, rows, fine, C100_FINE)
    assert tuple(test.images[0, ROW, COL]) == RGB
    check(load_cifar(folder, "test", label="coarse"), rows, coarse, C100_COARSE)
    rows, fine, coarse = truth["train"]
    check(load_cifar(str(tmp_path), "train", label="coarse"), rows, coarse, C100_COARSE)


def test_cifar_autodetection(tmp_path):
    root = str(tmp_path)
    _, t10 = write_cifar10_python(root)
    _, t10b = write_cifar10_binary(root)
    # both versions of CIFAR-10: the python version wins unless a format is asked for
    check(load_cifar(root), *t10["test"], C10_NAMES)
    check(load_cifar(root, format="binary"), *t10b["test"], C10_NAMES)
    _, t100 = write_cifar100_binary(root)
    with pytest.raises(ValueError, match="both CIFAR-10 and CIFAR-100.*variant=10 or variant=100"):
        load_cifar(root)
    check(load_cifar(root, variant=10), *t10["test"], C10_NAMES)
    rows, fine, _ = t100["test"]
    check(load_cifar(root, variant=100), rows, fine, C100_FINE)
    with pytest.raises(FileNotFoundError, match="no CIFAR-100 .python version. files"):
        load_cifar(root, variant=100, format="python")


def test_cifar_argument_errors(tmp_path):
    folder, _ = write_cifar10_binary(str(tmp_path))
    with pytest.raises(ValueError, match="label='coarse' is for CIFAR-100"):
        load_cifar(folder, label="coarse")
    with pytest.raises(ValueError, match="split must be"):
        load_cifar(folder, split="val")
    with pytest.raises(ValueError, match="variant must be"):
        load_cifar(folder, variant=20)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_cifar(os.path.join(folder, "nowhere"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no CIFAR-10/100 files found"):
        load_cifar(str(empty))


def test_cifar_missing_files_are_named(tmp_path):
    folder, truth = write_cifar10_python(str(tmp_path))
    os.remove(os.path.join(folder, "data_batch_3"))
    check(load_cifar(folder, "test"), *truth["test"], C10_NAMES)   # test split still readable
    with pytest.raises(FileNotFoundError, match=r"missing CIFAR file .*data_batch_3"):
        load_cifar(folder, "train")
    os.remove(os.path.join(folder, "batches.meta"))
    with pytest.raises(FileNotFoundError, match=r"missing CIFAR file .*batches\.meta"):
        load_cifar(folder, "test")

    bfolder, _ = write_cifar100_binary(str(tmp_path / "b"))
    os.remove(os.path.join(bfolder, "coarse_label_names.txt"))
    load_cifar(bfolder)   # fine labels do not need it
    with pytest.raises(FileNotFoundError, match="coarse_label_names.txt"):
        load_cifar(bfolder, label="coarse")


def test_cifar_corrupt_files_are_named(tmp_path):
    folder, _ = write_cifar10_binary(str(tmp_path / "bin"))
    path = os.path.join(folder, "test_batch.bin")
    with open(path, "r+b") as f:
        f.truncate(3073 * 2 + 100)
    with pytest.raises(ValueError, match=r"test_batch\.bin: size 6246 bytes is not a whole number "
                                         r"of 3073-byte CIFAR-10 records"):
        load_cifar(folder)
    # a label byte out of range
    records = np.zeros((1, 3073), np.uint8)
    records[0, 0] = 12
    records.tofile(path)
    with pytest.raises(ValueError, match=r"test_batch\.bin: labels must be in \[0, 10\)"):
        load_cifar(folder)

    folder, _ = write_cifar10_python(str(tmp_path / "py"))
    path = os.path.join(folder, "test_batch")
    with open(path, "rb") as f:
        head = f.read(200)
    with open(path, "wb") as f:
        f.write(head)                                    # truncated pickle
    with pytest.raises(ValueError, match="test_batch: corrupt or not a pickle"):
        load_cifar(folder)
    with open(path, "wb") as f:
        f.write(b"this is not a pickle at all")
    with pytest.raises(ValueError, match="test_batch: corrupt or not a pickle"):
        load_cifar(folder)
    dump({b"labels": [0], b"data": np.zeros((1, 100), np.uint8)}, path, 4)
    with pytest.raises(ValueError, match=r"test_batch: image data must be \[N, 3072\]"):
        load_cifar(folder)
    dump({b"labels": [0, 1], b"data": np.zeros((1, 3072), np.uint8)}, path, 4)
    with pytest.raises(ValueError, match="test_batch: labels must be 1 integers"):
        load_cifar(folder)
    dump({b"data": np.zeros((1, 3072), np.uint8)}, path, 4)
    with pytest.raises(ValueError, match="test_batch: no 'labels' entry"):
        load_cifar(folder)
    dump([1, 2, 3], path, 4)
    with pytest.raises(ValueError, match="test_batch: expected a pickled dict"):
        load_cifar(folder)


MARKER_COMMAND = "touch {}"


class Evil:
    """Pickles as a call of ``os.system``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (MARKER_COMMAND.format(shlex.quote(self.marker)),))


class EvalEvil:
    """Pickles as a call of ``builtins.eval``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({self.marker!r}, 'w').close()",))


@pytest.mark.parametrize("evil_class", [Evil, EvalEvil])
@pytest.mark.parametrize("where", ["batch", "nested", "meta"])
def test_malicious_pickle_is_refused(tmp_path, evil_class, where):
    folder, _ = write_cifar10_python(str(tmp_path / "data"))
    marker = str(tmp_path / "pwned")
    evil = evil_class(marker)
    if where == "batch":
        target, payload = "test_batch", evil
    elif where == "nested":
        target = "test_batch"
        payload = {b"labels": [0], b"data": np.zeros((1, 3072), np.uint8), b"x": [1, {b"y": evil}]}
    else:
        target = "batches.meta"
        payload = {b"label_names": [b"a"] * 10, b"extra": evil}
    dump(payload, os.path.join(folder, target), 2)
    with open(os.path.join(folder, target), "rb") as f:
        assert b"system" in f.read() or evil_class is EvalEvil     # the payload is really there
    refused = (rf"{target}: not a safe dataset pickle: refused to load global "
               r"'(posix|nt|os|builtins|__builtin__)\.(system|eval)'")
    with pytest.raises(ValueError, match=refused):
        load_cifar(folder)
    assert not os.path.exists(marker)
    # plain pickle.load would have run it: proves the test payload is live
    with open(os.path.join(folder, target), "rb") as f:
        pickle.load(f)
    assert os.path.exists(marker)


def test_restricted_pickle_load_allows_plain_data(tmp_path):
    path = str(tmp_path / "ok.pkl")
    obj = {b"a": [1, 2, b"x", "y"], "b": np.arange(6, dtype=np.int32).reshape(2, 3),
           "c": np.float32(1.5)}
    for protocol in ("py2", 2, 4, 5):
        dump(obj, path, protocol)
        got = restricted_pickle_load(path)
        assert got[b"a"] == [1, 2, b"x", "y"]
        np.testing.assert_array_equal(got["b"], obj["b"])
        assert got["b"].dtype == np.int32 and got["c"] == 1.5
    dump({"f": os.path.join}, path, 4)
    with pytest.raises(ValueError, match="refused to load global"):
        restricted_pickle_load(path)


# ----------------------------------------------------------------------------------------
# image folders
# ----------------------------------------------------------------------------------------

def touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"")


def test_image_folder_order_like_torchvision(tmp_path):
    root = str(tmp_path)
    for rel in ["b/2.jpg", "b/1.png", "b/notes.txt", "B/z.JPG", "a/sub/x.jpeg", "a/y.bmp",
                "a/sub2/w.webp", "a/sub/.hidden.tif", "c/deep/er/q.PNG"]:
        touch(os.path.join(root, rel))
    touch(os.path.join(root, "stray.jpg"))               # files in root are not a class
    data = load_image_folder(root)
    assert data.classnames == ["B", "a", "b", "c"]       # Python string order
    rels = [os.path.relpath(p, root).replace(os.sep, "/") for p in data.paths]
    assert rels == ["B/z.JPG",
                    "a/y.bmp", "a/sub/.hidden.tif", "a/sub/x.jpeg", "a/sub2/w.webp",
                    "b/1.png", "b/2.jpg",
                    "c/deep/er/q.PNG"]
    np.testing.assert_array_equal(data.labels, [0, 1, 1, 1, 1, 2, 2, 3])
    assert data.labels.dtype == np.int64 and data.images is None
    only_png = load_image_folder(root, extensions=".png", allow_empty=True)
    assert [os.path.basename(p) for p in only_png.paths] == ["1.png", "q.PNG"]
    assert only_png.classnames == ["B", "a", "b", "c"]


def test_image_folder_errors(tmp_path):
    root = str(tmp_path)
    with pytest.raises(FileNotFoundError, match="no class folders"):
        load_image_folder(root)
    touch(os.path.join(root, "cat", "1.jpg"))
    touch(os.path.join(root, "dog", "readme.txt"))
    with pytest.raises(FileNotFoundError, match=r"class folder\(s\) dog"):
        load_image_folder(root)
    data = load_image_folder(root, allow_empty=True)
    assert data.classnames == ["cat", "dog"] and len(data) == 1
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_image_folder(os.path.join(root, "missing"))


def test_image_source(tmp_path):
    root = str(tmp_path)
    colours = {"red": (255, 0, 0), "blue": (0, 0, 255)}
    for name, colour in colours.items():
        os.makedirs(os.path.join(root, name))
        Image.new("RGB", (6, 4), colour).save(os.path.join(root, name, "im.png"))
    Image.new("L", (5, 5), 128).save(os.path.join(root, "red", "grey.png"))
    data = load_image_folder(root)
    source = ImageSource(data)
    assert len(source) == 3
    image, label = source[0]                            # blue/im.png
    assert image.shape == (4, 6, 3) and image.dtype == np.uint8 and int(label) == 0
    assert tuple(image[2, 3]) == (0, 0, 255)
    image, label = source[1]                            # red/grey.png, converted to RGB
    assert image.shape == (5, 5, 3) and tuple(image[0, 0]) == (128, 128, 128) and int(label) == 1
    seen = []
    shapes = ImageSource(data, transform=lambda img: (seen.append(img.mode), np.zeros(img.size))[1])
    assert shapes[1][0].shape == (5, 5) and seen == ["L"]      # transform gets the image as opened
    with pytest.raises(IndexError):
        source[3]

    rows = make_images(2, 0)
    memory = ClassificationData(labels=np.array([3, 1]), classnames=["a", "b", "c", "d"],
                                images=expected_hwc(rows))
    image, label = ImageSource(memory)[0]
    assert tuple(image[ROW, COL]) == RGB and int(label) == 3


def test_image_source_in_mindspore_dataset(tmp_path):
    import mindspore.dataset as ds

    rows = make_images(3, 0)
    memory = ClassificationData(labels=np.array([2, 0, 1]), classnames=["a", "b", "c"],
                                images=expected_hwc(rows))
    dataset = ds.GeneratorDataset(ImageSource(memory), ["image", "label"], shuffle=False)
    got = [(item["image"], int(item["label"])) for item in
           dataset.create_dict_iterator(output_numpy=True, num_epochs=1)]
    assert [g[1] for g in got] == [2, 0, 1]
    np.testing.assert_array_equal(got[0][0], expected_hwc(rows)[0])


# ----------------------------------------------------------------------------------------
# captions
# ----------------------------------------------------------------------------------------

FLICKR_TOKENS = (
    "1000268201_693b08cb0e.jpg#0\tA child in a pink dress is climbing up a set of stairs .\n"
    "1000268201_693b08cb0e.jpg#1\tA girl going into a wooden building .\n"
    "\n"
    "1001773457_577c3a7d70.jpg#0\tA black dog and a spotted dog are fighting\n"
    "1001773457_577c3a7d70.jpg#1\tThe #1 dog , with a tab\tinside .  \n"
    "1002674143_1b742ab4b8.jpg#0\tA little girl covered in paint .\n"
    "1000268201_693b08cb0e.jpg#2\tA little girl climbing into a playhouse .\n"
)


def test_flickr8k_tokens(tmp_path):
    path = tmp_path / "Flickr8k.token.txt"
    path.write_text(FLICKR_TOKENS, encoding="utf-8")
    pairs = read_flickr8k_captions(str(path))
    assert pairs == [
        ("1000268201_693b08cb0e.jpg", "A child in a pink dress is climbing up a set of stairs ."),
        ("1000268201_693b08cb0e.jpg", "A girl going into a wooden building ."),
        ("1001773457_577c3a7d70.jpg", "A black dog and a spotted dog are fighting"),
        ("1001773457_577c3a7d70.jpg", "The #1 dog , with a tab\tinside ."),
        ("1002674143_1b742ab4b8.jpg", "A little girl covered in paint ."),
        ("1000268201_693b08cb0e.jpg", "A little girl climbing into a playhouse ."),
    ]
    split = tmp_path / "Flickr_8k.testImages.txt"
    split.write_text("1000268201_693b08cb0e.jpg\n1002674143_1b742ab4b8.jpg\n\n")
    assert read_image_list(split) == ["1000268201_693b08cb0e.jpg", "1002674143_1b742ab4b8.jpg"]
    kept = read_flickr8k_captions(path, split_file=split)
    assert [p[0] for p in kept] == ["1000268201_693b08cb0e.jpg"] * 2 + [
        "1002674143_1b742ab4b8.jpg", "1000268201_693b08cb0e.jpg"]

    images, captions, t2i = group_captions(kept, image_root="/data/Flicker8k_Dataset")
    assert images == [os.path.join("/data/Flicker8k_Dataset", "1000268201_693b08cb0e.jpg"),
                      os.path.join("/data/Flicker8k_Dataset", "1002674143_1b742ab4b8.jpg")]
    assert captions[3] == "A little girl climbing into a playhouse ."
    np.testing.assert_array_equal(t2i, [0, 0, 1, 0])
    assert t2i.dtype == np.int64


@pytest.mark.parametrize("line, message", [
    ("1000268201_693b08cb0e.jpg#0 no tab here", "line 2: expected"),
    ("1000268201_693b08cb0e.jpg\tno caption number", "line 2: expected"),
    ("1000268201_693b08cb0e.jpg#x\tbad number", "line 2: expected"),
    ("1000268201_693b08cb0e.jpg#3\t   ", "line 2: empty caption"),
])
def test_flickr8k_malformed(tmp_path, line, message):
    path = tmp_path / "tokens.txt"
    path.write_text("a.jpg#0\tfine\n" + line + "\n")
    with pytest.raises(ValueError, match=f"tokens.txt, {message}"):
        read_flickr8k_captions(path)
    with pytest.raises(FileNotFoundError, match="not found"):
        read_flickr8k_captions(tmp_path / "missing.txt")


def test_caption_csv(tmp_path):
    path = tmp_path / "captions.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "path", "caption"])
        writer.writerow([1, "images/a.jpg", "A dog, a cat, and a bird"])
        writer.writerow([2, "images/a.jpg", 'She said "hello", twice'])
        writer.writerow([3, "images/b, with comma.jpg", "two\nlines"])
        writer.writerow([4, "images/c.jpg", "  café au lait  "])
    raw = path.read_text(encoding="utf-8")
    assert '"A dog, a cat, and a bird"' in raw and '""hello""' in raw   # really quoted
    pairs = read_caption_csv(path)
    assert pairs == [("images/a.jpg", "A dog, a cat, and a bird"),
                     ("images/a.jpg", 'She said "hello", twice'),
                     ("images/b, with comma.jpg", "two\nlines"),
                     ("images/c.jpg", "café au lait")]
    images, captions, t2i = group_captions(pairs)
    assert images == ["images/a.jpg", "images/b, with comma.jpg", "images/c.jpg"]
    np.testing.assert_array_equal(t2i, [0, 0, 1, 2])
    assert len(captions) == 4

    # other column names, and a byte-order mark
    other = tmp_path / "other.csv"
    other.write_text("\ufefffile,text\nx.png,hello\n", encoding="utf-8")
    pairs = read_caption_csv(other, path_column="file", caption_column="text")
    assert pairs == [("x.png", "hello")]


def test_caption_csv_errors(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("image,caption\na.jpg,hi\n")
    with pytest.raises(ValueError, match=r"bad.csv: no column 'path' in the header "
                                         r"\(found: 'image', 'caption'\)"):
        read_caption_csv(path)
    path.write_text("path,caption\na.jpg,hi\nb.jpg\n")
    with pytest.raises(ValueError, match="bad.csv, line 3: too few fields"):
        read_caption_csv(path)
    path.write_text("path,caption\na.jpg,\n")
    with pytest.raises(ValueError, match="bad.csv, line 2: empty caption"):
        read_caption_csv(path)
    path.write_text("")
    with pytest.raises(ValueError, match="empty file"):
        read_caption_csv(path)
    with pytest.raises(ValueError, match="no .image, caption. pairs"):
        group_captions([])
    with pytest.raises(ValueError, match=r"pairs\[1\] must be an \(image, caption\) pair"):
        group_captions([("a", "b"), ("c",)])


def test_captions_feed_retrieval_recall(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text("x.jpg#0\tone\nx.jpg#1\ttwo\ny.jpg#0\tthree\n")
    images, captions, t2i = group_captions(read_flickr8k_captions(path))
    image_features = np.array([[1.0, 0.0], [0.0, 1.0]])
    text_features = np.array([[0.9, 0.1], [0.2, 0.8], [0.1, 0.9]])  # caption "two" looks like y
    got = retrieval_recall(image_features, text_features, t2i, ks=(1,))
    # text->image: captions 0 and 2 right, caption 1 wrong; image->text: x's best caption is
    # caption 0 (first), y's best is caption 2 (0.9/|(0.1,0.9)| beats 0.8/|(0.2,0.8)|)
    assert got == pytest.approx({"image_to_text_R@1": 1.0, "text_to_image_R@1": 2 / 3})
    assert len(images) == 2 and captions == ["one", "two", "three"]


def test_all_exports_exist():
    for name in datasets.__all__:
        assert hasattr(datasets, name), name
