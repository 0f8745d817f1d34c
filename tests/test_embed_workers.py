"""``python -m clip embed --workers N``: the images encoded by N processes under msrun.

One real launch (``--workers 2``, ~30 s: msrun starts a scheduler and two workers, each importing
MindSpore) is compared with the same command in one process; the errors that must stop the
command before msrun starts are checked in-process, with ``launch`` replaced by a function that
fails the test. The helpers (pictures, the tiny checkpoint, running the CLI) are those of
``test_cli``.
"""
import os
import re

import numpy as np
import pytest

from clip import cli
from test_cli import _picture, _python_m_clip, run, tiny_ckpt  # noqa: F401 - tiny_ckpt is a fixture


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory):
    """11 pictures in a nested folder, an unreadable ``.jpg`` (garbage bytes) and a non-image file.

    Sorted, the broken file is the 4th of 12 images: with ``--batch-size 3`` it falls in batch 1,
    which the second process encodes, and it shifts the batches of readable images that one
    process forms (``_BatchEncoder`` groups the readable images ``batch_size`` at a time)."""
    root = tmp_path_factory.mktemp("embed-workers")
    os.makedirs(root / "sub")
    good = []
    for i in range(11):
        path = str(root / ("sub" if i % 4 == 3 else "") / f"p{i:02d}.png")
        _picture(200 + i, (36 + 4 * i, 44)).save(path)
        good.append(path)
    broken = str(root / "p03b.jpg")
    with open(broken, "wb") as f:
        f.write(b"\xff\xd8 these bytes are not a JPEG")
    (root / "readme.txt").write_text("not an image")
    return str(root), sorted(good), broken


def _summary(out, prefix):
    """The summary lines of an embed run's stdout, with the output prefix written PREFIX."""
    lines = [line for line in out.splitlines()
             if re.match(r"(embedded|features:|paths:|failed:|  \S.*: \w+Error)", line)]
    return [line.replace(str(prefix), "PREFIX") for line in lines]


def test_two_workers_match_one_process(capsys, tiny_ckpt, image_tree, tmp_path):  # noqa: F811
    root, good, broken = image_tree
    common = ["--model", tiny_ckpt, "--device", "CPU", "--batch-size", "3", "--num-workers", "1", "-q"]
    one = tmp_path / "one" / "feats"
    code, out_one, err = run(capsys, "embed", root, "--output", one, *common)
    assert code == 0, err
    two = tmp_path / "two" / "feats"
    proc = _python_m_clip("embed", root, "--workers", "2", "--output", two, *common)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # the same rows, in the same order, with the same paths file
    with open(str(one) + ".paths.txt", encoding="utf-8") as f:
        paths_one = f.read()
    with open(str(two) + ".paths.txt", encoding="utf-8") as f:
        paths_two = f.read()
    assert paths_one.splitlines() == good
    assert paths_two == paths_one
    features_one, features_two = np.load(str(one) + ".npy"), np.load(str(two) + ".npy")
    assert features_two.dtype == np.float32 and features_two.shape == features_one.shape == (11, 32)
    # equal within float32 rounding, not necessarily bitwise: after the unreadable file the two
    # runs put different images together in one encode_image call (one process regroups the
    # readable images of the whole list, each worker those of its own batches), and a matrix
    # product's rounding may depend on the number of rows it is computed with
    np.testing.assert_allclose(features_two, features_one, rtol=1e-5, atol=1e-6)

    # rank 0 prints the one-process summary (other ranks print nothing), the failure exactly once
    assert _summary(proc.stdout, two) == _summary(out_one, one)
    assert "embedded 11 of 12 images (dim 32)" in proc.stdout
    (line,) = [line for line in proc.stdout.splitlines() if broken in line]
    assert line.startswith(f"  {broken}: UnidentifiedImageError")
    assert "starting 2 processes with msrun" in proc.stderr
    # nothing left beside the output but msrun's logs (default: PREFIX.logs), one per process
    assert sorted(os.listdir(two.parent)) == ["feats.logs", "feats.npy", "feats.paths.txt"]
    assert {"worker_0.log", "worker_1.log"} <= set(os.listdir(str(two) + ".logs"))


@pytest.mark.parametrize("case", ["missing source", "output names a folder", "texts", "no images"])
def test_bad_input_fails_before_msrun(capsys, monkeypatch, tmp_path, case):
    def launch(*args, **kwargs):
        raise AssertionError("msrun was started")

    monkeypatch.setattr(cli, "launch", launch)
    for name in ("MS_WORKER_NUM", "MS_ROLE"):  # as when started from a shell, not by msrun
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "empty"
    os.makedirs(empty)
    texts = tmp_path / "texts.txt"
    texts.write_text("a dog\n", encoding="utf-8")
    source, output, expected = {
        "missing source": ([tmp_path / "missing"], tmp_path / "out" / "f", "not found"),
        "output names a folder": ([empty], str(tmp_path / "out") + os.sep, "names a folder"),
        "texts": (["--texts", texts], tmp_path / "out" / "f", "--texts is embedded in one process"),
        "no images": ([empty], tmp_path / "out" / "f", "no image files"),
    }[case]
    code, out, err = run(capsys, "embed", *source, "--workers", "2", "--output", output,
                         "--model", "no-such-model.ckpt", "--device", "CPU", "-q")
    assert code == 1
    assert out == ""
    assert err.splitlines() == [err.strip()] and err.startswith("error: ") and expected in err
    assert not os.path.exists(tmp_path / "out")  # no logs folder either
