"""Samples per second of one full CLIP training step (forward, backward, AdamW) in this MindSpore port
against OpenAI's PyTorch model trained the same way, in one run, on the same cores.

    python benchmarks/bench_train.py [--models ViT-B/32,RN50] [--batch 32] [--steps 3] [--warmup 2]
                                     [--cpus 0,1] [--frameworks torch,mindspore] [--json OUT.json]

Each (model, framework) runs in its own fresh process, pinned (``sched_setaffinity``) to the same CPU
set, with the thread counts of both frameworks and of their math libraries set to its size:

- ``torch``: OpenAI's ``model.py`` (``CLIP_REFERENCE_DIR``) built from the model's configuration,
  in training mode (BatchNorm with batch statistics), float32; the loss of ``clip.training.ClipLoss``
  written in PyTorch; ``torch.optim.AdamW`` with open_clip's weight-decay groups (lr 5e-4, weight
  decay 0.2, the family's betas and eps); the ``logit_scale`` clamp.
- ``mindspore``: ``clip.model.CLIP`` with the same configuration, ``clip.training.init_parameters``,
  ``make_trainable(freeze_batch_norm_stats=False)``, ``create_optimizer`` and ``Trainer`` (compiled
  gradient graph, ``jit=True``), float32.

Inputs: random images ``[B, 3, R, R]`` and token rows of 77 ids (start, 8-18 ids, end, padding), the
same in both processes. The first ``--warmup`` steps are not timed (MindSpore compiles in the first);
then ``--steps`` steps are timed one by one and the median reported, with the peak resident memory
of the process (``VmHWM``) over the timed steps and over its whole life. The script measures and
reports; it asserts nothing about speed.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TESTS = os.path.join(ROOT, "tests")
sys.path.insert(0, HERE)
from bench_encode import cpu_description  # noqa: E402  (imports no framework)
FRAMEWORKS = ("torch", "mindspore")


def _peak_kb():
    with open("/proc/self/status") as f:
        return int(re.search(r"^VmHWM:\s+(\d+)", f.read(), re.M).group(1))


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _inputs(config, batch, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    res = config["image_resolution"]
    images = rng.standard_normal((batch, 3, res, res)).astype(np.float32)
    tokens = np.zeros((batch, 77), np.int32)
    for i in range(batch):
        n = int(rng.integers(8, 19))
        tokens[i, 0], tokens[i, 1:n + 1], tokens[i, n + 1] = 49406, rng.integers(1, 49000, n), 49407
    return images, tokens


def _torch_step_fn(config, images, tokens, threads):
    import math

    import torch

    sys.path.insert(0, TESTS)
    import reference

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = reference.model_module().CLIP(**config).float().train()
    vit = not isinstance(config["vision_layers"], (tuple, list))
    skip = {"positional_embedding", "visual.positional_embedding", "visual.class_embedding", "logit_scale"}
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and n not in skip]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and n not in skip)]
    optimizer = torch.optim.AdamW([{"params": other, "weight_decay": 0.0}, {"params": decay, "weight_decay": 0.2}],
                                  lr=5e-4, betas=(0.9, 0.98) if vit else (0.9, 0.999), eps=1e-6 if vit else 1e-8)
    x, t = torch.from_numpy(images), torch.from_numpy(tokens).long()
    labels = torch.arange(len(images))

    def step():
        image = model.encode_image(x)
        text = model.encode_text(t)
        image = image / image.norm(dim=-1, keepdim=True)
        text = text / text.norm(dim=-1, keepdim=True)
        logits = model.logit_scale.exp() * image @ text.T
        loss = (torch.nn.functional.cross_entropy(logits, labels) +
                torch.nn.functional.cross_entropy(logits.T, labels)) / 2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        return float(loss.detach())

    return step


def _mindspore_step_fn(config, images, tokens, threads):
    import mindspore as ms
    from mindspore import Tensor

    sys.path.insert(0, ROOT)
    ms.set_device("CPU")
    try:
        ms.device_context.cpu.threads_num(threads)  # MindSpore's CPU kernel thread pool
    except Exception:  # noqa: BLE001 - older/newer spelling; the environment variables still apply
        pass
    from clip import training
    from clip.model import CLIP

    model = training.make_trainable(training.init_parameters(CLIP(**config), seed=0), freeze_batch_norm_stats=False)
    trainer = training.Trainer(model, training.create_optimizer(model))
    x, t = Tensor(images), Tensor(tokens)
    return lambda: trainer.train_step(x, t)["loss"]


def worker(spec):
    """Run in the measuring process: build, warm up, time; print one JSON line."""
    sys.path.insert(0, TESTS)
    import make_reference

    config = make_reference.config(spec["model"])
    if isinstance(config["vision_layers"], list):
        config["vision_layers"] = tuple(config["vision_layers"])
    images, tokens = _inputs(config, spec["batch"])
    threads = len(os.sched_getaffinity(0))
    build = _torch_step_fn if spec["framework"] == "torch" else _mindspore_step_fn
    start = time.perf_counter()
    step = build(config, images, tokens, threads)
    build_s = time.perf_counter() - start
    first = None
    for i in range(spec["warmup"]):
        start = time.perf_counter()
        step()
        first = time.perf_counter() - start if i == 0 else first
    _reset_peak()
    times, losses = [], []
    for _ in range(spec["steps"]):
        start = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(json.dumps({"model": spec["model"], "framework": spec["framework"], "batch": spec["batch"],
                      "threads": threads, "build_s": build_s, "first_step_s": first, "step_s": median,
                      "samples_per_s": spec["batch"] / median, "peak_rss_steps_mb": _peak_kb() / 1024,
                      "losses": losses}))


def _env(threads):
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    env.setdefault("GLOG_v", "3")
    return env


def _run(spec, cpus):
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
                          env=_env(len(cpus)), preexec_fn=lambda: os.sched_setaffinity(0, cpus),
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode == -9:  # the kernel's OOM killer (or a user) sent SIGKILL
        return {**spec, "error": "killed by SIGKILL (out of memory?)"}
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-12:])
        raise RuntimeError(f"{spec['model']} / {spec['framework']} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    """Parse the options, run every (model, framework) in its own pinned process, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="ViT-B/32,RN50")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--cpus", default=None, help="CPU ids, e.g. 0,1 (default: every CPU of this process)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    cpus = sorted(int(c) for c in args.cpus.split(",")) if args.cpus else sorted(os.sched_getaffinity(0))
    print(f"CPU: {cpu_description()}; pinned to CPUs {cpus}; batch {args.batch}, "
          f"{args.warmup} warm-up + {args.steps} timed steps, float32")
    results = []
    for model in args.models.split(","):
        for framework in args.frameworks.split(","):
            result = _run({"model": model, "framework": framework, "batch": args.batch, "steps": args.steps,
                           "warmup": args.warmup}, cpus)
            results.append(result)
            if "error" in result:
                print(f"  {model:9s} {framework:9s} {result['error']}", flush=True)
                continue
            print(f"  {model:9s} {framework:9s} {result['samples_per_s']:7.2f} samples/s  "
                  f"(step {result['step_s']:.2f} s, first {result['first_step_s']:.1f} s, "
                  f"peak RSS {result['peak_rss_steps_mb']:.0f} MB)", flush=True)
    print("\n| model | PyTorch samples/s | MindSpore samples/s | ratio | PyTorch peak MB | MindSpore peak MB |")
    print("|---|---|---|---|---|---|")
    for model in args.models.split(","):
        rows = {r["framework"]: r for r in results if r["model"] == model}
        if set(rows) >= set(FRAMEWORKS) and not any("error" in r for r in rows.values()):
            t, m = rows["torch"], rows["mindspore"]
            print(f"| {model} | {t['samples_per_s']:.2f} | {m['samples_per_s']:.2f} | "
                  f"{m['samples_per_s'] / t['samples_per_s']:.2f}x | {t['peak_rss_steps_mb']:.0f} | "
                  f"{m['peak_rss_steps_mb']:.0f} |")
    if args.json:
        sys.path.insert(0, ROOT)
        from clip._atomic import write_atomically

        write_atomically(args.json, lambda f: json.dump({"cpu": cpu_description(), "results": results},
                                                        f, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
