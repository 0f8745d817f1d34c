"""Training data (``clip.training.data``): the three readers, skipped rows and images, the per-epoch
shuffle, sharding, and the transforms against OpenAI's preprocess."""
import os

import numpy as np
import pytest
from PIL import Image

import clip
from clip.training import data as tdata
from synthetic_captions import CLASSES, shape_samples, write_csv, write_flickr, write_image_folder


@pytest.fixture(scope="module")
def samples():
    return shape_samples(20, seed=3, size=40)


def test_csv_reader_separator_columns_relative_paths_and_skips(tmp_path, samples):
    path = write_csv(str(tmp_path), samples[:6], separator=",", image_key="img", caption_key="txt", name="pairs.csv")
    with open(path, "a", encoding="utf-8") as f:
        f.write("images/none.png,   \n")       # empty caption: skipped, counted
        f.write(',"a quoted, caption"\n')      # empty path: skipped, counted
    data = tdata.read_csv_data(path, separator=",", image_key="img", caption_key="txt")
    assert len(data) == 6
    assert data.skipped == {"empty caption": 1, "empty image path": 1}
    assert data.paths[0] == os.path.join(str(tmp_path), "images", "pairs.csv.0000.png")  # relative to the file
    assert all(os.path.isfile(p) for p in data.paths)
    assert data.captions[2] == [samples[2][2]]
    # open_clip's defaults: tab, filepath, title
    tsv = write_csv(str(tmp_path), samples[:4], name="pairs.tsv")
    assert len(tdata.read_csv_data(tsv)) == 4
    with pytest.raises(ValueError, match=r"no column 'title' in the header \['img', 'txt'\]"):
        tdata.read_csv_data(path, separator=",", image_key="img")


def test_csv_reader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="CSV file .*missing.csv' not found"):
        tdata.read_csv_data(str(tmp_path / "missing.csv"))
    empty = tmp_path / "empty.csv"
    empty.write_text("filepath\ttitle\na.png\t \n")
    with pytest.raises(ValueError, match=r"no usable image-caption pairs \(1 empty caption\)"):
        tdata.read_csv_data(str(empty))


def test_flickr_reader_split_grouping_and_random_caption_per_epoch(tmp_path, samples):
    token_file = write_flickr(str(tmp_path), samples[:8], captions_per_image=3)
    with open(token_file, "a", encoding="utf-8") as f:
        f.write("0001_shape.jpg#3\t \n")  # an empty caption
    split = tmp_path / "Flickr_8k.trainImages.txt"
    split.write_text("0001_shape.jpg\n0003_shape.jpg\n0004_shape.jpg\n")
    data = tdata.read_flickr_data(token_file, split_file=str(split))
    assert [os.path.basename(p) for p in data.paths] == ["0001_shape.jpg", "0003_shape.jpg", "0004_shape.jpg"]
    assert os.path.dirname(data.paths[0]).endswith("Flicker8k_Dataset")
    assert all(len(c) == 3 for c in data.captions) and data.skipped == {"empty caption": 1}
    # one of its captions per image, drawn per epoch, reproducibly
    dataset = tdata.CaptionDataset(tdata.read_flickr_data(token_file), 32, seed=5)
    rows = lambda epoch: [dataset.item(i, epoch)[1].tolist() for i in range(len(dataset))]  # noqa: E731
    assert rows(0) == rows(0)
    chosen = {tuple(map(tuple, rows(e))) for e in range(6)}
    assert len(chosen) > 1  # the caption choice changes between epochs
    first = [set(map(tuple, dataset.tokens[a:b].tolist())) for a, b in dataset._caption_rows]
    for epoch in range(3):
        for i, row in enumerate(rows(epoch)):
            assert tuple(row) in first[i]  # always one of the image's own captions


def test_image_folder_reader_uses_prompt_templates(tmp_path, samples):
    root = write_image_folder(str(tmp_path / "folder"), samples)
    data = tdata.read_image_folder_data(root, templates=["a photo of a {}.", "a drawing of a {}."])
    assert data.classnames == sorted(c for c in CLASSES if c in {s[2][2:] for s in samples})
    for path, label, captions in zip(data.paths, data.labels, data.captions):
        name = data.classnames[label]
        assert os.path.basename(os.path.dirname(path)) == name.replace(" ", "_")
        assert captions == [f"a photo of a {name}.", f"a drawing of a {name}."]
    with pytest.raises(ValueError, match="has no '{}'"):
        tdata.read_image_folder_data(root, templates=["a photo"])


def test_unreadable_images_are_skipped_and_counted(tmp_path, samples):
    path = write_csv(str(tmp_path), samples[:8], name="d.csv")
    data = tdata.read_csv_data(path)
    with open(data.paths[2], "wb") as f:
        f.write(b"not an image")
    os.remove(data.paths[5])
    dataset = tdata.CaptionDataset(data, 32, seed=0, num_workers=2)
    batches = list(dataset.batches(0, batch_size=4))
    assert sum(len(images) for images, _ in batches) == 6
    assert all(images.shape[1:] == (3, 32, 32) and images.dtype == np.float32 for images, _ in batches)
    assert dataset.skipped == {"unreadable image": 2}


def test_shuffle_is_seeded_and_changes_every_epoch():
    a = tdata.epoch_batches(100, 0, 10, seed=1)
    assert a.shape == (10, 10) and sorted(a.ravel()) == list(range(100))
    assert np.array_equal(a, tdata.epoch_batches(100, 0, 10, seed=1))
    assert not np.array_equal(a, tdata.epoch_batches(100, 1, 10, seed=1))
    assert not np.array_equal(a, tdata.epoch_batches(100, 0, 10, seed=2))
    assert tdata.epoch_batches(103, 0, 10, seed=1).shape == (10, 10)  # drop_remainder


@pytest.mark.parametrize("num_shards", [2, 3])
def test_sharding_covers_every_sample_once_and_matches_one_big_batch(num_shards):
    n, batch = 50, 4
    shards = [tdata.epoch_batches(n, 2, batch, seed=7, num_shards=num_shards, shard_id=r) for r in range(num_shards)]
    flat = np.concatenate([s.ravel() for s in shards])
    assert len(flat) == len(set(flat.tolist())) == (n // (batch * num_shards)) * batch * num_shards  # no overlap
    one = tdata.epoch_batches(n, 2, batch * num_shards, seed=7)
    for b in range(len(one)):  # N workers x B reproduce 1 worker x N*B, batch by batch
        assert np.array_equal(np.concatenate([s[b] for s in shards]), one[b])
    # every sample once over the shards when the data splits evenly
    even = [tdata.epoch_batches(48, 0, 4, seed=0, num_shards=3, shard_id=r) for r in range(3)]
    assert sorted(np.concatenate([s.ravel() for s in even]).tolist()) == list(range(48))


def test_pipeline_batches_do_not_depend_on_workers_or_shards(tmp_path, samples):
    data = tdata.read_csv_data(write_csv(str(tmp_path), samples[:16], name="d.csv"))
    one = tdata.CaptionDataset(data, 32, seed=4, num_workers=1)
    three = tdata.CaptionDataset(data, 32, seed=4, num_workers=4)  # as many as the CPU has
    big = list(one.batches(1, batch_size=8))
    assert len(big) == 2
    for (x, t), (y, u) in zip(big, three.batches(1, batch_size=8)):
        assert np.array_equal(x, y) and np.array_equal(t, u)
    halves = [list(three.batches(1, batch_size=4, num_shards=2, shard_id=r)) for r in range(2)]
    for b in range(2):
        assert np.array_equal(np.concatenate([halves[0][b][0], halves[1][b][0]]), big[b][0])
    # resuming at batch 1 gives the same second batch
    (x, t), = list(one.batches(1, batch_size=8, start=1))
    assert np.array_equal(x, big[1][0]) and np.array_equal(t, big[1][1])


def test_tokens_are_clip_tokenize_cut_to_the_longest_caption(tmp_path, samples):
    data = tdata.read_csv_data(write_csv(str(tmp_path), samples[:5], name="d.csv"))
    dataset = tdata.CaptionDataset(data, 32, context_length=77)
    full = clip.tokenize([c[0] for c in data.captions]).asnumpy()
    length = dataset.tokens.shape[1]
    assert length == int(full.argmax(-1).max()) + 1
    assert np.array_equal(dataset.tokens, full[:, :length]) and not full[:, length:].any()


def test_trim_tokens_cuts_after_the_last_end_of_text_token():
    rows = np.zeros((3, 10), np.int64)
    rows[0, :3] = [49406, 5, 49407]
    rows[1, :6] = [49406, 7, 8, 9, 10, 49407]  # the longest: end-of-text at column 5
    rows[2, :2] = [49406, 49407]
    out = tdata.trim_tokens(rows)
    assert out.dtype == np.int32 and out.shape == (3, 6) and np.array_equal(out, rows[:, :6])
    # at least two columns; a row without padding keeps the full context
    assert tdata.trim_tokens(np.array([[49407, 0, 0]])).shape == (1, 2)
    full = np.arange(1, 11)[None]
    assert np.array_equal(tdata.trim_tokens(full), full)


def test_eval_transform_is_openai_preprocess_and_train_crop_follows_open_clip(samples):
    image = samples[0][0].resize((50, 40))
    preprocess = clip.transform.Preprocess(32)
    np.testing.assert_allclose(tdata.eval_transform(image, 32), preprocess(image).asnumpy(), atol=1e-6)
    rng = np.random.default_rng(0)
    for _ in range(200):
        left, top, w, h = tdata._crop_box(50, 40, rng, tdata.TRAIN_CROP_SCALE, (3 / 4, 4 / 3))
        assert 0 <= left and left + w <= 50 and 0 <= top and top + h <= 40
        assert 0.85 <= w * h / 2000 <= 1.0 and 3 / 4 - 0.05 <= w / h <= 4 / 3 + 0.05
    out = tdata.train_transform(image, 32, np.random.default_rng(1))
    assert out.shape == (3, 32, 32) and out.dtype == np.float32
    # a crop of >= 90 % of the area resized: close to the whole picture resized, not equal to it
    whole = clip.transform.normalised_array(image.resize((32, 32), Image.BICUBIC))
    assert 0 < np.abs(out - whole).mean() < 0.5
