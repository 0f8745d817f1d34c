"""Data-parallel training under msrun (2 processes on this CPU, MindSpore's "mccl" backend).

- the gradient of the distributed contrastive loss equals one process's gradient of the whole
  batch, and the naive variants (no gradient through the gather, local-only logits) differ from it;
- ``python -m clip train --workers 2 --batch-size B`` takes the steps of ``--batch-size 2B`` in one
  process: a tiny ViT from scratch with gradient accumulation, killed after two steps and resumed;
  a tiny ResNet fine-tuned with frozen BatchNorm and a locked text tower;
- a wrong launch fails with a clear error within a bounded time instead of hanging.

Each msrun launch costs ~30 s here (three processes import MindSpore), so the launches are few.
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import mindspore as ms

from clip.open_clip.weights import ARCHITECTURE_KEY
from clip import cli, distributed
from clip.training import WEIGHTS_FILE, run as training_run
from synthetic_captions import shape_samples, write_csv
from tiny_checkpoint import write_tiny_checkpoint

HERE = os.path.dirname(os.path.abspath(__file__))
VIT = dict(embed_dim=32, image_resolution=32, vision_layers=1, vision_width=64, vision_patch_size=16,
           context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1, transformer_layers=1)
LAUNCH_TIMEOUT = 600  # seconds: a hung launch fails the test instead of the CI job


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("dp-data")
    (root / "vit.json").write_text(json.dumps(VIT))
    return {"root": str(root), "vit": str(root / "vit.json"),
            "resnet": write_tiny_checkpoint(root / "resnet.ckpt", "resnet", image_resolution=64),
            "train": write_csv(str(root), shape_samples(24, seed=0, size=40), name="train.csv"),
            "train48": write_csv(str(root), shape_samples(48, seed=0, size=40), name="train48.csv")}


def _one_process(*argv):
    assert cli.main(["train", "--quiet", *argv]) == 0


def _workers(*argv, check=True, **popen):
    """``python -m clip train --workers 2 ...`` in a fresh process (the front starts msrun)."""
    command = [sys.executable, "-m", "clip", "train", "--quiet", "--workers", "2", *argv]
    if popen:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    result = subprocess.run(command, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _train_lines(output):
    with open(os.path.join(output, "metrics.jsonl"), encoding="utf-8") as f:
        return [r for r in map(json.loads, f) if r["kind"] == "train"]


def _weights(path):
    return {k: v.asnumpy() for k, v in ms.load_checkpoint(path).items() if k != ARCHITECTURE_KEY}


def _checkpoint_weights(output, step):
    return _weights(os.path.join(output, "checkpoints", f"step_{step:08d}", WEIGHTS_FILE))


def _without_key_biases(weights):
    """The weights without the attention key biases. Their gradient is zero in exact arithmetic
    (adding a constant to all of a query's logits leaves the softmax unchanged), so what is
    computed for them is rounding noise, which AdamW's normalised step turns into +-lr moves that
    differ between any two summation orders (measured: the tiny ResNet's ``attnpool.k_proj.bias``
    moved 1e-3 apart while everything else agreed to 3e-4 at most)."""
    out = {}
    for name, value in weights.items():
        if name.endswith("k_proj.bias"):
            continue
        if name.endswith("in_proj_bias"):  # [q | k | v]
            third = value.shape[0] // 3
            value = np.concatenate([value[:third], value[2 * third:]])
        out[name] = value
    return out


def _rel_diff(a, b):
    """Normwise relative difference of two weight sets (same names), key biases left out."""
    assert a.keys() == b.keys()
    a, b = _without_key_biases(a), _without_key_biases(b)
    num = sum(float(((a[k].astype(np.float64) - b[k]) ** 2).sum()) for k in a)
    den = sum(float((a[k].astype(np.float64) ** 2).sum()) for k in a)
    return (num / den) ** 0.5


def _assert_same_run(one, two, steps, early=3):
    """The 2-process run took the 1-process run's steps: losses, and the weights after ``early``
    steps (relative difference <= 1e-5) and at the end (<= 1e-4)."""
    a, b = _train_lines(one), _train_lines(two)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, steps + 1))
    for ra, rb in zip(a, b):
        tolerance = 1e-5 if ra["step"] <= early else 1e-4
        assert abs(ra["loss"] - rb["loss"]) <= tolerance * abs(ra["loss"]), (ra, rb)
        assert ra["lr"] == rb["lr"]
    early_diff = _rel_diff(_checkpoint_weights(one, early), _checkpoint_weights(two, early))
    final_diff = _rel_diff(_weights(os.path.join(one, "final.ckpt")), _weights(os.path.join(two, "final.ckpt")))
    assert early_diff <= 1e-5, early_diff
    assert final_diff <= 1e-4, final_diff
    return early_diff, final_diff


def test_gradient_equals_one_process_and_naive_variants_differ(tmp_path):
    out = tmp_path / "grads.json"
    command = distributed.msrun_command(2, [str(out)], str(tmp_path / "logs"),
                                        program=[os.path.join(HERE, "distributed_worker.py")])
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=LAUNCH_TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(out.read_text())
    assert got["world_size"] == 2
    assert abs(got["correct"]["loss"] - got["full_loss"]) <= 1e-6 * got["full_loss"]
    assert got["correct"]["grad_rel_diff"] <= 1e-5, got
    # the naive variants are far off (measured: 0.78 both), so the check above can fail
    assert got["no_grad_through_gather"]["grad_rel_diff"] > 0.1, got
    assert got["local_logits"]["grad_rel_diff"] > 0.1, got
    assert abs(got["local_logits"]["loss"] - got["full_loss"]) > 0.1


def test_two_workers_equal_one_process_vit_with_accumulation_killed_and_resumed(data, tmp_path):
    """ViT from scratch, accum-freq 2: 2 x 4 pairs per step against 1 x 8, two epochs (12 steps).
    The 2-process run is killed once it has written a checkpoint, then resumed with
    ``--resume latest``; it must still take exactly the one-process steps."""
    common = ["--config", data["vit"], "--train-data", data["train48"], "--accum-freq", "2", "--epochs", "2",
              "--save-every", "1", "--seed", "3"]
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    _one_process(*common, "--batch-size", "8", "--output", one)

    front = _workers(*common, "--batch-size", "4", "--output", two, start_new_session=True)
    latest = os.path.join(two, "checkpoints", "LATEST")
    deadline = time.time() + LAUNCH_TIMEOUT
    while time.time() < deadline and front.poll() is None:
        if os.path.isfile(latest):
            break
        time.sleep(0.05)
    assert front.poll() is None, "the run ended before it could be killed: " + front.communicate()[1][-3000:]
    os.killpg(front.pid, signal.SIGINT)  # the front and msrun; msrun kills its workers
    front.communicate(timeout=60)
    _wait_for_workers_to_exit(two)
    steps_before = len(_train_lines(two))
    assert 1 <= steps_before < 12, steps_before
    assert not os.path.exists(os.path.join(two, "final.ckpt"))

    _workers(*common, "--batch-size", "4", "--output", two, "--resume", "latest")
    early, final = _assert_same_run(one, two, steps=12)
    print(f"ViT 2x4 vs 1x8 (killed at step {steps_before}, resumed): weights rel. diff after 3 steps "
          f"{early:.2e}, after 2 epochs {final:.2e}")
    with open(os.path.join(two, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    assert (config["world_size"], config["batch_size_per_process"], config["global_batch_size"]) == (2, 4, 8)
    assert sorted(os.listdir(os.path.join(two, "logs"))) == ["scheduler.log", "worker_0.log", "worker_1.log"]


def _wait_for_workers_to_exit(output, timeout=30):
    """No process of the killed run (its command line names ``output``) is left."""
    deadline = time.time() + timeout
    while True:
        alive = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if output.encode() in f.read():
                        alive.append(int(pid))
            except OSError:
                pass
        if not alive:
            return
        if time.time() > deadline:
            for pid in alive:
                os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"processes of the killed run were still alive after {timeout} s: {alive}")
        time.sleep(0.5)


def test_two_workers_equal_one_process_resnet_frozen_batch_norm(data, tmp_path):
    """A tiny ResNet fine-tuned (BatchNorm statistics frozen), text tower locked: 2 x 4 against 1 x 8."""
    common = ["--model", data["resnet"], "--train-data", data["train"], "--lock-text", "--lr", "1e-3",
              "--save-every", "3", "--seed", "5"]
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    _one_process(*common, "--batch-size", "8", "--output", one)
    _workers(*common, "--batch-size", "4", "--output", two)
    early, final = _assert_same_run(one, two, steps=3)
    print(f"ResNet 2x4 vs 1x8: weights rel. diff after 3 steps {early:.2e}")
    weights = _weights(os.path.join(two, "final.ckpt"))
    start = _weights(data["resnet"])
    assert all(np.array_equal(weights[k], start[k]) for k in start if k.startswith("transformer."))
    assert all(np.array_equal(weights[k], start[k]) for k in start if "moving_" in k)  # frozen statistics
    assert not np.array_equal(weights["visual.conv1.weight"], start["visual.conv1.weight"])


# ---------------------------------------------------------------------------------------------
# wrong launches: clear errors, bounded waits

def _plain_msrun(tmp_path, script_args, worker_num=2, local_worker_num=2, timeout=60):
    command = distributed.msrun_command(worker_num, script_args, str(tmp_path / "logs"), cluster_timeout=timeout,
                                        program=[])
    command[command.index(f"--local_worker_num={worker_num}")] = f"--local_worker_num={local_worker_num}"
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    start = time.time()
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=LAUNCH_TIMEOUT)
    logs = {name: (tmp_path / "logs" / name).read_text(errors="replace")
            for name in os.listdir(tmp_path / "logs")}
    return result, logs, time.time() - start


MISMATCH = """
import os, sys
from clip import cli
lr = "1e-3" if os.environ.get("RANK_ID") == "1" else "1e-4"
sys.exit(cli.main(sys.argv[1:] + ["--lr", lr]))
"""


def test_ranks_started_with_different_settings_fail_with_the_differing_names(data, tmp_path):
    script = tmp_path / "mismatch.py"
    script.write_text(MISMATCH)
    result, logs, _ = _plain_msrun(tmp_path, [str(script), "train", "--quiet", "--config", data["vit"],
                                              "--train-data", data["train"], "--batch-size", "4",
                                              "--output", str(tmp_path / "run")])
    assert result.returncode != 0
    message = "error: the ranks were started with different settings: lr differ between rank 0 and rank(s) 1"
    assert any(message in log for name, log in logs.items() if name.startswith("worker_")), logs
    assert not os.path.exists(tmp_path / "run" / "metrics.jsonl")


def test_a_rank_that_cannot_reach_the_scheduler_fails_within_the_timeout(data, tmp_path):
    """Two workers expected, one started: the one fails after the cluster timeout (5 s) with a
    message naming the scheduler's address, instead of waiting forever."""
    result, logs, seconds = _plain_msrun(tmp_path, ["-m", "clip", "train", "--quiet", "--config", data["vit"],
                                                    "--train-data", data["train"], "--output", str(tmp_path / "run")],
                                         local_worker_num=1, timeout=5)
    assert result.returncode != 0
    assert "error: this process (rank 0) could not join the job: the scheduler at 127.0.0.1:" in logs["worker_0.log"]
    assert "within 5 s" in logs["worker_0.log"]
    assert seconds < 120


def test_launch_errors_found_before_starting_processes(data, tmp_path, capsys, monkeypatch):
    # the global batch must split into equal shares
    code = cli.main(["train", "--quiet", "--config", data["vit"], "--train-data", data["train"], "--workers", "3",
                     "--global-batch-size", "8", "--output", str(tmp_path / "a")])
    assert code == 1
    assert "error: --global-batch-size 8 does not split into 3 equal per-process batches" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "a")
    # the Python API runs in one process; more need msrun
    with pytest.raises(ValueError, match="for 2 processes use 'python -m clip train --workers 2"):
        training_run.train(training_run.TrainConfig(output=str(tmp_path / "b"), train_data=data["train"],
                                                    config=data["vit"], workers=2))
    # under msrun, --workers must match what msrun started (checked before joining the job)
    monkeypatch.setenv("MS_WORKER_NUM", "4")
    monkeypatch.setenv("MS_ROLE", "MS_WORKER")
    with pytest.raises(ValueError, match="--workers 2, but msrun started 4 processes"):
        training_run.train(training_run.TrainConfig(output=str(tmp_path / "c"), train_data=data["train"],
                                                    config=data["vit"], workers=2))
    with pytest.raises(ValueError, match="--global-batch-size 6 does not split into 4 equal"):
        training_run.train(training_run.TrainConfig(output=str(tmp_path / "c"), train_data=data["train"],
                                                    config=data["vit"], global_batch_size=6))
    assert training_run.per_process_batch_size(training_run.TrainConfig(
        output="x", train_data="y", global_batch_size=8), 4) == 2


def test_msrun_command_is_a_thin_front():
    command = distributed.msrun_command(3, ["train", "--output", "o"], "logs", master_port=8123, cluster_timeout=30)
    assert command[:3] == [sys.executable, "-m", "mindspore.parallel.cluster.run"]
    assert command[3:11] == ["--worker_num=3", "--local_worker_num=3", "--master_port=8123", "--log_dir=logs",
                             "--join=True", "--cluster_time_out=30", "--tail_worker_log=0", "python"]
    assert command[11:] == ["-m", "clip", "train", "--output", "o"]
    with pytest.raises(ValueError, match="--workers must be >= 1"):
        distributed.msrun_command(0, [], "logs")
