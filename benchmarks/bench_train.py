"""Samples per second of one full CLIP training step (forward, backward, AdamW) in this MindSpore port
against OpenAI's PyTorch model trained the same way, in one run, on the same cores.

    python benchmarks/bench_train.py [--models ViT-B/32,RN50] [--batch 32] [--steps 3] [--warmup 2]
                                     [--cpus 0,1] [--frameworks torch,mindspore] [--json OUT.json]
    python benchmarks/bench_train.py --workers 2 [--models vit-small,ViT-B/32] [--batch 16] ...

``--models`` takes OpenAI's names and the training configs ``vit-tiny``, ``rn-tiny``, ``vit-small``.

Each (model, framework) runs in its own fresh process, pinned (``sched_setaffinity``) to the same CPU
set, with the thread counts of both frameworks and of their math libraries set to its size:

- ``torch``: OpenAI's ``model.py`` (``CLIP_REFERENCE_DIR``) built from the model's configuration,
  in training mode (BatchNorm with batch statistics), float32; the loss of ``clip.training.ClipLoss``
  written in PyTorch; ``torch.optim.AdamW`` with open_clip's weight-decay groups (lr 5e-4, weight
  decay 0.2, the family's betas and eps); the ``logit_scale`` clamp.
- ``mindspore``: ``clip.model.CLIP`` with the same configuration, ``clip.training.init_parameters``,
  ``make_trainable(freeze_batch_norm_stats=False)``, ``create_optimizer`` and ``Trainer`` (compiled
  gradient graph, ``jit=True``), float32; graphs run on the calling thread as ``python -m clip train``
  runs them on a CPU (``clip.training.prefer_host_blocking_run``; ``MS_DEV_HOST_BLOCKING_RUN=0`` in
  the environment measures MindSpore's default, where the caller busy-waits on a core).

Inputs: random images ``[B, 3, R, R]`` and token rows of 77 ids (start, 8-18 ids, end, padding), the
same in both processes. PyTorch gets the 77-token rows, as OpenAI's ``tokenize`` and open_clip's
training feed them; MindSpore gets them as ``clip.training``'s data pipeline feeds its ``Trainer``:
cut after the longest caption (``clip.training.data.trim_tokens``, exact: the text tower is causal),
unless ``--text-tokens full``. The first ``--warmup`` steps are not timed (MindSpore compiles in the first);
then ``--steps`` steps are timed one by one and the median reported, with the peak resident memory
of the process (``VmHWM``) over the timed steps and over its whole life. The script measures and
reports; it asserts nothing about speed.

``--workers N`` measures data parallelism instead: MindSpore's step on the global batch ``--batch``
in one process on N cores against N processes under ``msrun`` (each pinned to one of the cores,
one thread, ``--batch / N`` pairs, ``Trainer(rank, world_size)``: the gathered loss and the averaged
gradients). Reported: samples/s of both and the communication share of the distributed step, i.e.
the time of the gradient AllReduce plus that of the loss's collectives (2 AllGathers of ``[B/N, D]``
forward, 2 AllReduces of ``[B, D]`` backward, timed alone with the same shapes) over the step time.
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


def _config(name):
    """``CLIP(**config)`` arguments of one of OpenAI's nine models or of a training config of
    ``clip.training.run.NAMED_CONFIGS`` (``vit-small``, ...: OpenAI's model code builds them too)."""
    sys.path.insert(0, ROOT)
    sys.path.insert(0, TESTS)
    from clip.training.run import NAMED_CONFIGS

    if name in NAMED_CONFIGS:
        return dict(NAMED_CONFIGS[name])
    import make_reference

    config = make_reference.config(name)
    if isinstance(config["vision_layers"], list):
        config["vision_layers"] = tuple(config["vision_layers"])
    return config


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

    # as `python -m clip train` runs on a CPU: graphs on the calling thread (MS_DEV_HOST_BLOCKING_RUN=0
    # in the environment measures MindSpore's default instead)
    training.prefer_host_blocking_run("CPU")
    model = training.make_trainable(training.init_parameters(CLIP(**config), seed=0), freeze_batch_norm_stats=False)
    trainer = training.Trainer(model, training.create_optimizer(model))
    x, t = Tensor(images), Tensor(tokens)
    return lambda: trainer.train_step(x, t)["loss"]


def dp_worker(spec):
    """Run under msrun, one rank of ``--workers N``: its share of the global batch; rank 0 prints
    one JSON line (to its log)."""
    import numpy as np
    import mindspore as ms
    from mindspore import Tensor, ops

    from clip import distributed, training
    from clip.model import CLIP

    training.prefer_host_blocking_run("CPU")  # as python -m clip train does under msrun
    ctx = distributed.init("CPU")
    os.sched_setaffinity(0, {spec["cpus"][ctx.rank % len(spec["cpus"])]})
    try:
        ms.device_context.cpu.threads_num(1)
    except Exception:  # noqa: BLE001
        pass
    config = _config(spec["model"])
    images, tokens = _inputs(config, spec["batch"])
    share = spec["batch"] // ctx.world_size
    mine = slice(ctx.rank * share, (ctx.rank + 1) * share)
    model = training.make_trainable(training.init_parameters(CLIP(**config), seed=0), freeze_batch_norm_stats=False)
    trainer = training.Trainer(model, training.create_optimizer(model), rank=ctx.rank, world_size=ctx.world_size)
    reduce_times = []
    average = trainer._average_over_processes

    def timed_average(loss, grads):  # the gradient AllReduce, timed after the gradients are ready
        grads[-1].asnumpy()
        start = time.perf_counter()
        out = average(loss, grads)
        out[1][-1].asnumpy()
        reduce_times.append(time.perf_counter() - start)
        return out

    trainer._average_over_processes = timed_average
    x, t = Tensor(images[mine]), Tensor(tokens[mine])
    for _ in range(spec["warmup"]):
        trainer.train_step(x, t)
    reduce_times.clear()
    times = []
    for _ in range(spec["steps"]):
        ctx.barrier()
        start = time.perf_counter()
        trainer.train_step(x, t)
        times.append(time.perf_counter() - start)
    # the loss's collectives alone, same shapes: 2 AllGathers forward, 2 AllReduces backward
    dim = config["embed_dim"]
    features = Tensor(np.ones((share, dim), np.float32))
    gathered = Tensor(np.ones((share * ctx.world_size, dim), np.float32))
    gather, reduce = ops.AllGather(), ops.AllReduce()
    loss_comm = []
    for _ in range(5):
        ctx.barrier()
        start = time.perf_counter()
        for _ in range(2):
            gather(features).asnumpy()
            reduce(gathered).asnumpy()
        loss_comm.append(time.perf_counter() - start)
    step = statistics.median(times)
    comm = statistics.median(reduce_times) + statistics.median(loss_comm)
    if ctx.is_main:
        print("RESULT " + json.dumps({"model": spec["model"], "framework": f"mindspore x{ctx.world_size}",
                                      "batch": spec["batch"], "step_s": step, "samples_per_s": spec["batch"] / step,
                                      "grad_allreduce_s": statistics.median(reduce_times),
                                      "loss_collectives_s": statistics.median(loss_comm),
                                      "communication_share": comm / step,
                                      "peak_rss_steps_mb": _peak_kb() / 1024}), flush=True)


def _run_workers(spec, cpus, workers):
    """``dp_worker`` as ``workers`` processes under msrun; rank 0's JSON line."""
    import tempfile

    sys.path.insert(0, ROOT)
    from clip import distributed

    with tempfile.TemporaryDirectory() as logs:
        command = distributed.msrun_command(workers, ["--dp-worker", json.dumps({**spec, "cpus": cpus})], logs,
                                            program=[os.path.abspath(__file__)])
        env = _env(1)
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
        with open(os.path.join(logs, "worker_0.log"), encoding="utf-8", errors="replace") as f:
            log = f.read()
    lines = [line[len("RESULT "):] for line in log.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(log.strip().splitlines()[-12:])
        raise RuntimeError(f"{spec['model']} with {workers} workers failed (exit {proc.returncode}):\n{tail}")
    return json.loads(lines[-1])


def main_workers(args, cpus):
    """``--workers N``: one process on the N cores against N processes of one core each."""
    print(f"CPU: {cpu_description()}; CPUs {cpus}; global batch {args.batch}; {args.warmup} warm-up + "
          f"{args.steps} timed steps, float32; MindSpore: 1 process x {len(cpus)} threads vs "
          f"{args.workers} processes x 1 thread (msrun, backend by device: mccl on CPU)")
    results = []
    print("\n| model | 1 process samples/s | %d processes samples/s | ratio | gradient AllReduce s | "
          "loss collectives s | communication share |" % args.workers)
    print("|---|---|---|---|---|---|---|")
    for model in args.models.split(","):
        spec = {"model": model, "framework": "mindspore", "batch": args.batch, "steps": args.steps,
                "warmup": args.warmup}
        one = _run(spec, cpus)
        many = _run_workers(spec, cpus, args.workers)
        results += [one, many]
        if "error" in one:
            print(f"| {model} | {one['error']} | {many['samples_per_s']:.2f} | | | | |")
            continue
        print(f"| {model} | {one['samples_per_s']:.2f} | {many['samples_per_s']:.2f} | "
              f"{many['samples_per_s'] / one['samples_per_s']:.2f}x | {many['grad_allreduce_s']:.3f} | "
              f"{many['loss_collectives_s']:.4f} | {100 * many['communication_share']:.1f} % |", flush=True)
    return results


def worker(spec):
    """Run in the measuring process: build, warm up, time; print one JSON line."""
    config = _config(spec["model"])
    images, tokens = _inputs(config, spec["batch"])
    threads = len(os.sched_getaffinity(0))
    build = _torch_step_fn if spec["framework"] == "torch" else _mindspore_step_fn
    if spec["framework"] == "mindspore" and spec.get("text_tokens", "trimmed") == "trimmed":
        sys.path.insert(0, ROOT)
        from clip.training.data import trim_tokens

        tokens = trim_tokens(tokens)  # what CaptionDataset feeds the Trainer
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
    parser.add_argument("--workers", type=int, default=None,
                        help="data parallelism: N processes (msrun) against one process on the same cores")
    parser.add_argument("--text-tokens", choices=("trimmed", "full"), default="trimmed",
                        help="MindSpore's captions as its training data feed them, cut after the longest "
                             "caption (default), or all 77 tokens like PyTorch's")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--dp-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    if args.dp_worker:
        dp_worker(json.loads(args.dp_worker))
        return 0
    cpus = sorted(int(c) for c in args.cpus.split(",")) if args.cpus else sorted(os.sched_getaffinity(0))
    if args.workers:
        if args.batch % args.workers:
            parser.error(f"--batch {args.batch} does not split into {args.workers} equal shares")
        results = main_workers(args, cpus)
        if args.json:
            sys.path.insert(0, ROOT)
            from clip._atomic import write_atomically

            write_atomically(args.json, lambda f: json.dump({"cpu": cpu_description(), "results": results},
                                                            f, indent=1))
        return 0
    print(f"CPU: {cpu_description()}; pinned to CPUs {cpus}; batch {args.batch}, "
          f"{args.warmup} warm-up + {args.steps} timed steps, float32; MindSpore's captions: {args.text_tokens}; "
          f"MS_DEV_HOST_BLOCKING_RUN={os.environ.get('MS_DEV_HOST_BLOCKING_RUN', '1 (set by the MindSpore worker)')}")
    results = []
    for model in args.models.split(","):
        for framework in args.frameworks.split(","):
            result = _run({"model": model, "framework": framework, "batch": args.batch, "steps": args.steps,
                           "warmup": args.warmup, "text_tokens": args.text_tokens}, cpus)
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
