"""The notebooks in notebooks/ run end to end on a random-weight checkpoint.

Each notebook reads its model from ``CLIP_NOTEBOOK_MODEL``; here that is a tiny checkpoint
written by the test, so the notebooks run offline in seconds and cannot silently rot. They are
executed with nbclient in a kernel started from this interpreter (``sys.executable``, through a
kernelspec written to a temporary folder that ``JUPYTER_PATH`` points at), so no globally
installed kernelspec is needed, and in the notebooks' own folder, as Jupyter would.
"""
import ast
import json
import os
import pickle
import re
import sys

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from tiny_checkpoint import write_tiny_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(ROOT, "notebooks")
NAMES = ["Interacting_with_CLIP.ipynb", "Prompt_Engineering.ipynb", "Fine_tuning.ipynb"]
KERNEL = "clip-notebook-test"


def _read(name):
    return nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)


def _source(cell):
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_is_valid_and_clean(name):
    nb = _read(name)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and any(cell.cell_type == "markdown" for cell in nb.cells)
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, "commit the notebooks with outputs cleared"
    first = _source(code[0])
    assert 'os.environ.get("CLIP_NOTEBOOK_MODEL", "ViT-B/32")' in first
    assert 'os.environ.get("CLIP_NOTEBOOK_DEVICE")' in first
    for cell in code:  # the notebooks never fetch anything but the model itself
        assert "http" not in _source(cell) and "urlopen" not in _source(cell)


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """Environment for a kernel running this Python with the checkout's ``clip``."""
    base = tmp_path_factory.mktemp("jupyter")
    spec_dir = base / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "clip tests", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    env = {
        "JUPYTER_PATH": str(base),                    # where KERNEL's spec is found
        "IPYTHONDIR": str(base / "ipython"),          # keep the user's IPython profile out
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",  # figures become image/png outputs
        "PYTHONPATH": os.pathsep.join([ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
        "CLIP_NOTEBOOK_DEVICE": "CPU",
    }
    return env


def _execute(name, checkpoint, env, monkeypatch, **extra_env):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CLIP_NOTEBOOK_MODEL", checkpoint)
    for key in ("CLIP_NOTEBOOK_CIFAR", "CLIP_NOTEBOOK_SAMPLES", "CLIP_NOTEBOOK_EPOCHS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in extra_env.items():
        monkeypatch.setenv(key, value)
    nb = _read(name)
    client = NotebookClient(nb, kernel_name=KERNEL, timeout=600, allow_errors=False,
                            resources={"metadata": {"path": NOTEBOOKS}})  # run in notebooks/
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    return nb


def _outputs(cell):
    """``(stdout text, number of image/png outputs, text/plain results)`` of a code cell."""
    stdout, images, plain = "", 0, []
    for output in cell.get("outputs", []):
        assert output.output_type != "error", output
        if output.output_type == "stream" and output.name == "stdout":
            stdout += output.text
        elif output.output_type in ("display_data", "execute_result"):
            images += "image/png" in output.data
            if output.output_type == "execute_result":
                plain.append(output.data.get("text/plain", ""))
    return stdout, images, plain


def _cell(nb, needle, exact=False):
    matches = [cell for cell in nb.cells if cell.cell_type == "code"
               and (_source(cell).strip() == needle if exact else needle in _source(cell))]
    assert len(matches) == 1, f"{len(matches)} code cells contain {needle!r}"
    return matches[0]


def _check_every_cell_ran(nb):
    """Every code cell was executed and none has an error output (``_outputs`` raises on one)."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.execution_count is not None
            _outputs(cell)


def test_interacting_with_clip_runs(tmp_path, kernel_env, monkeypatch):
    checkpoint = write_tiny_checkpoint(tmp_path / "tiny-vit.ckpt", kind="vit")
    nb = _execute("Interacting_with_CLIP.ipynb", checkpoint, kernel_env, monkeypatch)
    _check_every_cell_ran(nb)

    stdout, _, _ = _outputs(_cell(nb, "clip.load(MODEL"))
    assert f"loaded {checkpoint} on CPU" in stdout  # the environment variables chose the model and device

    stdout, _, _ = _outputs(_cell(nb, "n_parameters ="))
    count = int(re.search(r"Model parameters: ([\d,]+)", stdout).group(1).replace(",", ""))
    assert 1_000_000 < count < 10_000_000  # the tiny model, not ViT-B/32 (151M)
    for line in ("Input resolution: 224", "Context length: 77", "Vocab size: 49408", "Embedding dimension: 32"):
        assert line in stdout

    _, _, plain = _outputs(_cell(nb, "clip.available_models()", exact=True))
    assert "ViT-B/32" in plain[0]
    _, _, plain = _outputs(_cell(nb, "preprocess", exact=True))
    assert "CenterCrop(size=(224, 224))" in plain[0]
    stdout, _, _ = _outputs(_cell(nb, "tokenizer.decode"))
    assert "text:   a diagram of a neural network" in stdout

    stdout, _, _ = _outputs(_cell(nb, "pictures = {}"))
    assert stdout.strip() == "8 pictures"  # CLIP.png was found from notebooks/ and 7 drawings made
    stdout, _, _ = _outputs(_cell(nb, "model.encode_image(image_input)"))
    assert "-> (8, 32)" in stdout

    assert _outputs(_cell(nb, "ax.imshow(image)"))[1] == 1              # the gallery
    assert _outputs(_cell(nb, "plot_similarity("))[1] == 1              # the heatmap
    assert _outputs(_cell(nb, "plot_topk("))[1] == 1                    # the top-5 charts

    stdout, _, _ = _outputs(_cell(nb, "logits_per_image, logits_per_text = model("))
    difference = float(re.search(r"largest difference from the cosine matrix: (\S+)", stdout).group(1))
    assert difference < 1e-4
    stdout, _, _ = _outputs(_cell(nb, "clip.ZeroShotClassifier("))
    assert len(stdout.strip().splitlines()) == 8


def _table(stdout, ks):
    """``{prompt choice: (templates, top-k..., per-class recall)}`` from the printed comparison table."""
    lines = stdout.splitlines()
    header = r"prompts\s+templates\s+" + r"\s+".join(f"top-{k}" for k in ks) + r"\s+per-class recall\s+build \(s\)$"
    assert re.match(header, lines[0]), lines[0]
    assert set(lines[1]) == {"-"}
    rows = {}
    for line in lines[2:7]:
        match = re.match(r"(.+?)\s+(\d+)\s+([\d.]+)%\s+([\d.]+)%\s+([\d.]+)%\s+([\d.]+)$", line)
        assert match, line
        rows[match.group(1)] = (int(match.group(2)), *(float(match.group(i)) / 100 for i in (3, 4, 5)))
    assert lines[7] == ""
    return rows


def test_prompt_engineering_runs(tmp_path, kernel_env, monkeypatch):
    checkpoint = write_tiny_checkpoint(tmp_path / "tiny-resnet.ckpt", kind="resnet")
    nb = _execute("Prompt_Engineering.ipynb", checkpoint, kernel_env, monkeypatch)
    _check_every_cell_ran(nb)

    stdout, _, _ = _outputs(_cell(nb, "clip.load(MODEL"))
    assert f"loaded {checkpoint} on CPU" in stdout
    stdout, _, _ = _outputs(_cell(nb, "SHAPES = ["))
    assert "synthetic shapes: 64 images, 8 classes" in stdout

    # the hand-made ensemble equals the library's class vector
    stdout, _, _ = _outputs(_cell(nb, "by_hand ="))
    cosine = float(re.search(r"class vector: (\S+)", stdout).group(1))
    assert abs(cosine - 1) < 1e-5

    # the comparison table: one row per prompt choice, accuracies in [0, 1]
    stdout, _, _ = _outputs(_cell(nb, "TEMPLATE_SETS = {"))
    rows = _table(stdout, ks=(1, 3))
    assert {name: row[0] for name, row in rows.items()} == {
        "class name only": 1, "a photo of a {}.": 1, "7 ImageNet templates (subset)": 7,
        "80 ImageNet templates": 80, "5 shape templates": 5}
    for templates, top1, top3, recall in rows.values():
        assert 0 <= top1 <= top3 <= 1 and 0 <= recall <= 1
        assert (top1 * 64) == pytest.approx(round(top1 * 64), abs=0.04)  # a whole number of the 64 images
    assert "chance top-1 = 12.5%" in stdout

    assert _outputs(_cell(nb, 'ax.set_xlabel("top-1 accuracy")'))[1] == 1
    _, _, plain = _outputs(_cell(nb, "zero_shot_evaluate(image_features"))
    evaluated = ast.literal_eval(plain[0])  # the same metrics for the 80-template classifier
    assert set(evaluated) == {"top1", "top3", "mean_per_class_recall"}
    _, top1, top3, recall = rows["80 ImageNet templates"]
    assert evaluated["top1"] == pytest.approx(top1, abs=5e-4)
    assert evaluated["top3"] == pytest.approx(top3, abs=5e-4)
    assert evaluated["mean_per_class_recall"] == pytest.approx(recall, abs=5e-4)


def _write_cifar10_test_split(root, n):
    """A CIFAR-10 "python version" test split of ``n`` plain-colour images (labels ``i % 10``)."""
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder)
    colours = np.random.default_rng(0).integers(0, 256, size=(n, 3), dtype=np.uint8)
    rows = np.repeat(colours, 1024, axis=1)  # [n, 3072]: 1024 red, 1024 green, 1024 blue values
    with open(os.path.join(folder, "test_batch"), "wb") as f:
        pickle.dump({b"data": rows, b"labels": [i % 10 for i in range(n)]}, f)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        pickle.dump({b"label_names": [name.encode() for name in names]}, f)


def test_prompt_engineering_runs_on_cifar_from_disk(tmp_path, kernel_env, monkeypatch):
    checkpoint = write_tiny_checkpoint(tmp_path / "tiny-vit.ckpt", kind="vit")
    _write_cifar10_test_split(str(tmp_path / "cifar"), n=30)
    nb = _execute("Prompt_Engineering.ipynb", checkpoint, kernel_env, monkeypatch,
                  CLIP_NOTEBOOK_CIFAR=str(tmp_path / "cifar"), CLIP_NOTEBOOK_SAMPLES="20")
    stdout, _, _ = _outputs(_cell(nb, "SHAPES = ["))
    assert "CIFAR10 test split: 20 images, 10 classes" in stdout
    stdout, _, _ = _outputs(_cell(nb, "TEMPLATE_SETS = {"))
    rows = _table(stdout, ks=(1, 3))
    assert rows["18 CIFAR10 templates"][0] == 18
    assert "chance top-1 = 10.0%" in stdout


def test_fine_tuning_runs(tmp_path, kernel_env, monkeypatch):
    """Fine_tuning.ipynb on the tiny random ViT: metrics before and after, the loss curves, WiSE-FT
    whose end points are the zero-shot and the fine-tuned model."""
    checkpoint = write_tiny_checkpoint(tmp_path / "tiny-vit.ckpt", kind="vit")
    nb = _execute("Fine_tuning.ipynb", checkpoint, kernel_env, monkeypatch, CLIP_NOTEBOOK_EPOCHS="1")
    _check_every_cell_ran(nb)

    stdout, _, _ = _outputs(_cell(nb, "model, preprocess = clip.load(MODEL"))
    assert f"loaded {checkpoint} on CPU" in stdout
    stdout, _, _ = _outputs(_cell(nb, "def write_split("))
    assert stdout.strip() == "96 training pairs, 36 validation pairs, 12 classes"
    stdout, _, _ = _outputs(_cell(nb, "before = evaluate(model)"))
    before = ast.literal_eval(stdout.split("before:", 1)[1].strip())
    stdout, _, _ = _outputs(_cell(nb, "summary = train("))
    assert re.match(r"trained 8 steps; last loss \d+\.\d+", stdout.strip()), stdout
    assert _outputs(_cell(nb, "plot_training_curves("))[1] == 1
    stdout, _, _ = _outputs(_cell(nb, "after = evaluate(fine_tuned)"))
    after = {}
    for line in stdout.strip().splitlines():
        key, old, _, new = line.split()
        assert float(old) == pytest.approx(before[key], abs=1e-3)
        after[key] = float(new)
    assert set(after) == set(before)
    stdout, _, _ = _outputs(_cell(nb, "training.wise_ft("))
    rows = [line.split() for line in stdout.strip().splitlines()[1:]]
    assert [float(r[0]) for r in rows] == [0.0, 0.5, 1.0]
    # alpha 0 is the zero-shot model, alpha 1 the fine-tuned one
    assert float(rows[0][1]) == pytest.approx(before["zeroshot_top1"], abs=1e-3)
    assert float(rows[-1][1]) == pytest.approx(after["zeroshot_top1"], abs=1e-3)
    assert float(rows[-1][2]) == pytest.approx(after["text_to_image_R@1"], abs=1e-3)
    # the notebook removes its temporary folder (pictures, run folder, checkpoints)
    stdout, _, _ = _outputs(_cell(nb, "shutil.rmtree(ROOT)"))
    root = stdout.split("removed", 1)[1].strip()
    assert os.path.basename(root).startswith("clip-finetune-") and not os.path.exists(root)
