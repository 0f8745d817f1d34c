"""``python -m clip train`` end to end on tiny generated data: outputs, ``clip.load`` of the final
weights, evaluation lines, exact resumption, locks, mixed precision and one-line errors.

The model is a tiny ViT (32 px, one block of width 64 per tower) trained for a few steps."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor

import clip
from clip.open_clip.weights import ARCHITECTURE_KEY
from clip import cli, training
from clip.model import CLIP
from clip.training.precision import MixedPrecisionTrainer
from synthetic_captions import shape_samples, write_csv, write_image_folder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = dict(embed_dim=32, image_resolution=32, vision_layers=1, vision_width=64, vision_patch_size=16,
              context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1, transformer_layers=1)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-data")
    config = root / "tiny.json"
    config.write_text(json.dumps(CONFIG))
    return {"config": str(config),
            "train": write_csv(str(root), shape_samples(24, seed=0, size=40), name="train.csv"),
            "val": write_csv(str(root), shape_samples(12, seed=1, size=40), name="val.csv"),
            "folder_train": write_image_folder(str(root / "folder_train"), shape_samples(24, seed=2, size=40)),
            "folder_val": write_image_folder(str(root / "folder_val"), shape_samples(18, seed=3, size=40)),
            "root": str(root)}


@pytest.fixture(autouse=True)
def _environment_restored(monkeypatch):
    """``python -m clip train`` sets MS_DEV_HOST_BLOCKING_RUN in its process (it owns it); run in
    process here, the variable is put back as it was after each test."""
    monkeypatch.delenv(training.HOST_BLOCKING_RUN, raising=False)


def test_host_blocking_run_is_preferred_on_the_cpu_only(monkeypatch):
    assert not training.prefer_host_blocking_run("GPU")
    assert training.HOST_BLOCKING_RUN not in os.environ
    monkeypatch.setenv(training.HOST_BLOCKING_RUN, "0")  # the user's choice stands
    assert not training.prefer_host_blocking_run("CPU") and os.environ[training.HOST_BLOCKING_RUN] == "0"
    monkeypatch.delenv(training.HOST_BLOCKING_RUN)
    assert training.prefer_host_blocking_run("CPU") and os.environ[training.HOST_BLOCKING_RUN] == "1"


def _train(capsys, *argv):
    code = cli.main(["train", "--quiet", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _lines(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _weights(path):
    return {k: v.asnumpy() for k, v in ms.load_checkpoint(path).items() if k != ARCHITECTURE_KEY}


def test_train_writes_final_checkpoint_metrics_and_respects_lock(files, tmp_path, capsys):
    out_dir = str(tmp_path / "run")
    code, out, err = _train(capsys, "--config", files["config"], "--train-data", files["train"], "--val-data",
                            files["val"], "--batch-size", "8", "--epochs", "2", "--eval-every", "2",
                            "--lock-image", "--warmup", "2", "--output", out_dir)
    assert code == 0, err
    assert os.environ[training.HOST_BLOCKING_RUN] == "1"  # the CLI on a CPU runs graphs on its own thread
    assert f"saved {os.path.join(out_dir, 'final.ckpt')}" in out and "trained 6 steps" in out
    records = _lines(os.path.join(out_dir, "metrics.jsonl"))
    train_rows = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in train_rows] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in evals] == [2, 4, 6]
    for r in train_rows:
        assert np.isfinite(r["loss"]) and r["samples_per_s"] > 0 and 1 <= r["logit_scale"] <= 100
    assert train_rows[0]["lr"] == pytest.approx(5e-4 / 2) and train_rows[1]["lr"] == pytest.approx(5e-4)
    for key in ("image_to_text_R@1", "text_to_image_R@10", "image_to_text_median_rank", "text_to_image_mean_rank"):
        assert key in evals[-1]
    assert 1 <= evals[-1]["text_to_image_mean_rank"] <= 12 and 0 <= evals[-1]["image_to_text_R@5"] <= 1

    # the final weights load with clip.load and are the trained ones
    final = os.path.join(out_dir, "final.ckpt")
    model, preprocess = clip.load(final, device="CPU")
    assert model.visual.input_resolution == 32 and model.context_length == 77
    weights = _weights(final)
    saved = _weights(os.path.join(out_dir, "checkpoints", "step_00000006", "model.ckpt"))
    assert all(np.array_equal(weights[k], saved[k]) for k in weights)
    # --lock-image: the image tower kept its initial weights, the text tower learned
    initial = {k: p.asnumpy() for k, p in training.init_parameters(CLIP(**CONFIG), seed=0).parameters_and_names()}
    assert all(np.array_equal(weights[k], initial[k]) for k in weights if k.startswith("visual."))
    assert not np.array_equal(weights["text_projection"], initial["text_projection"])
    features = model.encode_image(preprocess(shape_samples(1, seed=9)[0][0]).unsqueeze(0))
    assert features.shape == (1, 32)


def test_fine_tuned_weights_keep_the_architecture(files, tmp_path, capsys):
    """A model whose architecture the weights do not tell (the exact GELU, as open_clip's LAION
    models have, and non-default head counts) is fine-tuned: the final weights and every
    checkpoint record its architecture, so ``clip.load`` rebuilds that model, not OpenAI's
    QuickGELU default that the weights alone would suggest."""
    architecture = dict(CONFIG, vision_heads=2, transformer_heads=2, quick_gelu=False)
    start = training.init_parameters(CLIP(**architecture), seed=3)
    source = clip.convert.save_state_dict(
        {n: p.asnumpy() for n, p in start.parameters_and_names()}, str(tmp_path / "gelu.ckpt"), architecture)
    out_dir = str(tmp_path / "run")
    code, out, err = _train(capsys, "--model", source, "--train-data", files["train"], "--batch-size", "8",
                            "--epochs", "1", "--save-every", "2", "--lr", "1e-3", "--output", out_dir)
    assert code == 0, err
    expected = CLIP(**architecture).architecture
    checkpoint = os.path.join(out_dir, "checkpoints", "step_00000002")
    for path in (os.path.join(out_dir, "final.ckpt"), os.path.join(checkpoint, "model.ckpt")):
        model, _ = clip.load(path, device="CPU")
        assert model.architecture == expected, path
    assert training.load_checkpoint(checkpoint)["config"] == expected
    # the weights alone describe OpenAI's default (QuickGELU, heads of 64): another model
    inferred = CLIP(**clip.model.infer_config(_weights(os.path.join(out_dir, "final.ckpt")))).architecture
    assert inferred["quick_gelu"] is True and inferred != expected


def test_resume_latest_continues_exactly(files, tmp_path, capsys):
    common = ["--config", files["config"], "--train-data", files["train"], "--batch-size", "8", "--epochs", "2",
              "--accum-freq", "2", "--grad-clip-norm", "1.0", "--seed", "3", "--save-every", "never"]
    whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
    assert _train(capsys, *common, "--output", whole)[0] == 0
    code, out, _ = _train(capsys, *common, "--output", parts, "--max-steps", "4")  # stops in the second epoch
    assert code == 0 and "stopped at step 4" in out and not os.path.exists(os.path.join(parts, "final.ckpt"))
    code, out, _ = _train(capsys, *common, "--output", parts, "--resume", "latest")
    assert code == 0 and "trained 6 steps" in out
    a = [r for r in _lines(os.path.join(whole, "metrics.jsonl")) if r["kind"] == "train"]
    b = [r for r in _lines(os.path.join(parts, "metrics.jsonl")) if r["kind"] == "train"]
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]
    for x, y in zip(a, b):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-6, abs=1e-7), (x, y)
        assert y["lr"] == x["lr"] and y["epoch"] == x["epoch"]
    wa, wb = _weights(os.path.join(whole, "final.ckpt")), _weights(os.path.join(parts, "final.ckpt"))
    assert max(float(np.abs(wa[k] - wb[k]).max()) for k in wa) < 1e-6


def test_imagefolder_zero_shot_through_python_m_clip(files, tmp_path):
    out_dir = str(tmp_path / "folder-run")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-m", "clip", "train", "--quiet", "--config", files["config"],
                             "--data-format", "imagefolder", "--train-data", files["folder_train"],
                             "--val-data", files["folder_val"], "--zeroshot-prompt-set", "cifar10",
                             "--batch-size", "12", "--output", out_dir, "--device", "CPU"],
                            capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "zeroshot_top1" in result.stdout
    evals = [r for r in _lines(os.path.join(out_dir, "metrics.jsonl")) if r["kind"] == "eval"]
    assert len(evals) == 1 and evals[0]["step"] == 2
    n_classes = len(os.listdir(files["folder_val"]))
    for k in ("zeroshot_top1", "zeroshot_top5"):
        assert 0 <= evals[0][k] <= 1 and (evals[0][k] * 18) == pytest.approx(round(evals[0][k] * 18))
    assert evals[0]["zeroshot_top5"] >= evals[0]["zeroshot_top1"] and n_classes > 5


@pytest.mark.parametrize("argv, message", [
    (["--train-data", "{root}/missing.csv"], "error: --train-data '{root}/missing.csv' not found"),
    (["--train-data", "{train}", "--csv-img-key", "path"], "error: {train}: no column 'path' in the header"),
    (["--train-data", "{root}/empty.csv"], "error: {root}/empty.csv: no usable image-caption pairs (2 empty caption)"),
    (["--train-data", "{train}", "--batch-size", "64"], "error: --train-data has 24 usable pairs, fewer than one batch of 64"),
    (["--train-data", "{train}", "--precision", "bf16"], "error: --precision bf16 needs a GPU or Ascend device"),
    (["--train-data", "{train}", "--batch-size", "6", "--accum-freq", "4"], "error: --batch-size 6 is not divisible by --accum-freq 4"),
    (["--train-data", "{train}", "--batch-size", "8", "--eval-every", "soon", "--val-data", "{val}"], "error: cannot read the interval 'soon'"),
    (["--train-data", "{train}", "--batch-size", "8", "--resume", "latest"], "error: --resume latest: no checkpoint in"),
    (["--train-data", "{train}", "--model", "{train}"], "error: give exactly one of --model (fine-tune) and --config"),
])
def test_bad_input_gets_one_line_errors(files, tmp_path, capsys, argv, message):
    with open(os.path.join(files["root"], "empty.csv"), "w", encoding="utf-8") as f:
        f.write("filepath\ttitle\na.png\t\nb.png\t \n")
    fill = lambda s: s.format(root=files["root"], train=files["train"], val=files["val"])  # noqa: E731
    code, out, err = _train(capsys, "--config", files["config"], *map(fill, argv), "--output", str(tmp_path / "out"))
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(fill(message)), err


def test_malformed_options_are_argparse_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--config", "vit-tiny", "--train-data", "x.csv", "--output", "o", "--lr", "-1"])
    assert exit_info.value.code == 2
    assert "argument --lr: expected a number > 0, got -1.0" in capsys.readouterr().err


def test_plot_training_curves_draws_the_logged_values(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from clip.plotting import plot_training_curves

    records = [{"kind": "train", "step": s, "epoch": 0, "loss": 4.0 / s, "lr": 1e-3, "logit_scale": 14.3}
               for s in (1, 2, 3)] + [{"kind": "eval", "step": 3, "epoch": 0, "zeroshot_top1": 0.5,
                                       "image_to_text_R@1": 0.25, "text_to_image_R@1": 0.75}]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    fig = plot_training_curves(str(tmp_path))  # the run's folder
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss", "lr", "logit_scale", "image_to_text_R@1", "text_to_image_R@1", "zeroshot_top1"]
    x, y = fig.axes[0].lines[0].get_data()
    assert list(x) == [1, 2, 3] and list(y) == [4.0, 2.0, 4.0 / 3]
    assert list(fig.axes[5].lines[0].get_data()[1]) == [0.5]
    with pytest.raises(ValueError, match="no record has 'accuracy'; the metrics have: .*loss"):
        plot_training_curves(records, keys=("accuracy",))


def _tiny_trainer(precision=None, **kwargs):
    config = dict(CONFIG, context_length=16, vocab_size=1000)
    model = training.make_trainable(training.init_parameters(CLIP(**config), seed=1), freeze_batch_norm_stats=False)
    optimizer = training.create_optimizer(model)
    if precision is None:
        return training.Trainer(model, optimizer, **kwargs)
    return MixedPrecisionTrainer(model, optimizer, precision=precision, **kwargs)


def _batch():
    rng = np.random.default_rng(0)
    tokens = np.zeros((6, 16), np.int32)
    tokens[:, 0] = 1
    tokens[:, 1:4] = rng.integers(2, 990, (6, 3))
    tokens[:, 4] = 999
    return Tensor(rng.standard_normal((6, 3, 32, 32)).astype(np.float32)), Tensor(tokens)


def test_fp16_mixed_precision_step_on_cpu_kernels():
    """fp16: close to the fp32 step (MindSpore has these fp16 CPU kernels); an overflowing loss scale
    skips the update and halves the scale."""
    images, texts = _batch()
    reference, mixed = _tiny_trainer(), _tiny_trainer("fp16", scale_value=2.0 ** 10)
    a, b = reference.train_step(images, texts), mixed.train_step(images, texts)
    assert not b["skipped"] and b["loss_scale"] == 2.0 ** 10
    assert b["loss"] == pytest.approx(a["loss"], rel=5e-3) and b["grad_norm"] == pytest.approx(a["grad_norm"], rel=5e-2)
    for (name, p), q in zip(reference.model.parameters_and_names(), mixed.model.get_parameters()):
        assert p.dtype == q.dtype == ms.float32  # master weights stay float32
    overflow = _tiny_trainer("fp16", scale_value=2.0 ** 127)
    before = {n: p.asnumpy().copy() for n, p in overflow.model.parameters_and_names()}
    result = overflow.train_step(images, texts)
    assert result["skipped"] and result["step"] == 0 and result["loss_scale"] == 2.0 ** 126
    assert all(np.array_equal(before[n], p.asnumpy()) for n, p in overflow.model.parameters_and_names())


def test_fp16_loss_scale_is_saved_and_resumed(tmp_path):
    """The dynamic loss scale (value and count of finite steps) goes into the checkpoint and comes
    back on resume: a resumed fp16 run scales as the uninterrupted one."""
    images, texts = _batch()
    trainer = _tiny_trainer("fp16", scale_value=2.0 ** 127, scale_window=3)
    trainer.train_step(images, texts)  # overflows: the scale halves
    trainer.train_step(images, texts)  # and again
    saved_scale = trainer.loss_scale
    assert saved_scale == 2.0 ** 125
    training.save_checkpoint(str(tmp_path / "ckpt"), trainer)
    fresh = _tiny_trainer("fp16", scale_value=2.0 ** 127, scale_window=3)
    assert fresh.loss_scale == 2.0 ** 127
    training.resume(str(tmp_path / "ckpt"), fresh)
    assert fresh.loss_scale == saved_scale
    assert int(fresh.scaler.counter.asnumpy()) == int(trainer.scaler.counter.asnumpy())
    assert fresh.train_step(images, texts)["loss_scale"] == trainer.train_step(images, texts)["loss_scale"]
