"""Throughput and memory of ``encode_image`` / ``encode_text``: this MindSpore port against
OpenAI's PyTorch code, in one run, with the same random weights and the same inputs.

    python benchmarks/bench_encode.py [--models ViT-B/32,RN50] [--batch 16] [--iters 5]
                                      [--warmup 2] [--rounds 1] [--cpus 0,1]
                                      [--frameworks torch,pynative,graph]
                                      [--seed 0] [--json OUT.json] [--workdir DIR]

For every model the script first (in helper processes) builds OpenAI's ``CLIP`` with random
weights (``tests/make_reference.py``: ``config`` + ``randomise``, rounded through float16
like OpenAI's release files), saves them as a float32 PyTorch state dict, converts that to a
MindSpore ``.ckpt`` with ``clip.convert`` and draws one batch of inputs: random images
``[B, 3, R, R]`` and random token ids shaped like real text (start token, 8-18 ids, end
token, zero padding to 77).

Then every (model, tower, framework) combination runs in its own fresh process:

- ``torch``: OpenAI's ``model.py`` (loaded by path, ``CLIP_REFERENCE_DIR``), float32,
  ``eval()``, under ``torch.no_grad()``, token ids int64 as OpenAI's ``clip.tokenize`` gives;
- ``pynative``: ``clip.load(ckpt, device="CPU", mode=1)``;
- ``graph``: ``clip.load(ckpt, device="CPU", mode=0)`` (towers compiled with ``mindspore.jit``);
  the MindSpore models take int32 token ids as this package's ``clip.tokenize`` gives.

Fairness: each process is pinned (``sched_setaffinity``, before the interpreter starts) to the
same CPU set, every thread it creates inherits that mask, and each framework is told to use as
many threads as there are CPUs in the set (``torch.set_num_threads``;
``mindspore.device_context.cpu.threads_num``; ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``/
``OPENBLAS_NUM_THREADS`` for the math libraries underneath both). The first call is timed on
its own (for ``graph`` it includes the compilation), the remaining warm-up calls are not timed,
then ``--iters`` calls are timed one by one, each including the copy of the features back to
numpy; the median is reported. With ``--rounds R`` every framework is measured R times, the
frameworks taking turns (PyTorch, then each MindSpore mode, then PyTorch again ...), and the
median of the rounds is reported; the speed ratio is then the median of each round's ratio to
the PyTorch run just before it, so that a busy phase of a shared machine slows both sides of a
ratio rather than one framework's whole measurement. A process holds a single framework, so its peak RSS
(``VmHWM``) is that framework's alone; the high-water mark is reset after loading so that the
load peak and the run peak are reported separately.

The script measures and reports; it asserts nothing about speed. It exits non-zero only when
a measurement process fails.
"""
import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TESTS = os.path.join(ROOT, "tests")

FRAMEWORKS = ("torch", "default", "eager", "graph")
LABELS = {"torch": "PyTorch (OpenAI)", "default": "MindSpore default", "eager": "MindSpore eager",
          "graph": "MindSpore mode=0"}
# "text": prompts of 6-16 tokens (typical zero-shot prompts); "text77": every row 77 tokens
TOWERS = ("image", "text", "text77")
LOAD_ARGS = {"default": {}, "eager": {"eager": True}, "graph": {"mode": 0}}


def cpu_description():
    """The CPU model and its widest vector ISA, from /proc/cpuinfo (Linux)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model == (platform.processor() or platform.machine()):
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{model}, {isa}"


SOT, EOT, CONTEXT = 49406, 49407, 77


# ---------------------------------------------------------------------------------------------
# /proc helpers (Linux)

def _status_kb(field):
    try:
        with open("/proc/self/status") as f:
            match = re.search(rf"^{field}:\s+(\d+)\s+kB", f.read(), re.M)
        return int(match.group(1)) if match else None
    except OSError:
        return None


def _mb(kb):
    return None if kb is None else round(kb / 1024.0, 1)


def _reset_peak_rss():
    """Reset VmHWM to the current RSS (``/proc/self/clear_refs``, Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _threads():
    """Thread count of this process by thread name, and the CPUs each may run on."""
    names, cpus = {}, set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
            cpus.update(os.sched_getaffinity(int(tid)))
        except OSError:
            continue
        name = re.sub(r"\d+$", "#", name)  # KernelThread_0, KernelThread_1 -> KernelThread_#
        names[name] = names.get(name, 0) + 1
    return names, sorted(cpus)


def _cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _parse_cpus(text):
    cpus = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            low, high = part.split("-")
            cpus.update(range(int(low), int(high) + 1))
        else:
            cpus.add(int(part))
    if not cpus:
        raise argparse.ArgumentTypeError("empty CPU list")
    return sorted(cpus)


# ---------------------------------------------------------------------------------------------
# Helper process 1: random weights and inputs (PyTorch + OpenAI's code)

def prepare_reference(arch, outdir, batch, seed, text_batch):
    import numpy as np
    import torch

    sys.path.insert(0, TESTS)
    import make_reference  # config(arch), randomise(model, seed)
    import reference

    ref = reference.model_module()
    torch.manual_seed(seed)
    model = ref.CLIP(**make_reference.config(arch)).eval()
    make_reference.randomise(model, seed)
    ref.convert_weights(model)  # the values OpenAI's float16 release files could hold ...
    model.float()  # ... computed in float32, as on CPU
    pth = os.path.join(outdir, "weights_fp32.pth")
    torch.save(model.state_dict(), pth)

    rng = np.random.RandomState(seed)
    res = model.visual.input_resolution
    images = rng.randn(batch, 3, res, res).astype(np.float32)
    tokens = np.zeros((text_batch, CONTEXT), np.int64)
    for row in range(text_batch):
        length = rng.randint(6, 17)  # start + 4..14 text ids + end: typical prompts of <= 16 tokens
        tokens[row, 0] = SOT
        tokens[row, 1:length - 1] = rng.randint(256, SOT, size=length - 2)  # ordinary BPE ids
        tokens[row, length - 1] = EOT
    tokens77 = np.concatenate([np.full((text_batch, 1), SOT), rng.randint(256, SOT, size=(text_batch, CONTEXT - 2)),
                               np.full((text_batch, 1), EOT)], axis=1).astype(np.int64)
    np.savez(os.path.join(outdir, "inputs.npz"), images=images, tokens=tokens, tokens77=tokens77)
    print(json.dumps({"pth": pth, "resolution": int(res),
                      "parameters": int(sum(p.numel() for p in model.parameters()))}))


# Helper process 2: the MindSpore checkpoint (this package's converter)

def prepare_checkpoint(outdir):
    sys.path.insert(0, ROOT)
    from clip.convert import convert

    path = convert(os.path.join(outdir, "weights_fp32.pth"), os.path.join(outdir, "weights_fp32.ckpt"))
    print(json.dumps({"ckpt": path}))


# ---------------------------------------------------------------------------------------------
# Measurement process: one framework, one model, one tower

def _torch_runner(spec, threads):
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    rss_import = _mb(_status_kb("VmRSS"))
    sys.path.insert(0, TESTS)
    import make_reference
    import reference

    ref = reference.model_module()
    t0 = time.perf_counter()
    model = ref.CLIP(**make_reference.config(spec["arch"]))
    model.load_state_dict(torch.load(spec["pth"], map_location="cpu"))
    model = model.float().eval()
    load_s = time.perf_counter() - t0

    data = np.load(spec["inputs"])
    if spec["tower"] == "image":
        x, encode = torch.from_numpy(data["images"]), model.encode_image
    else:
        x, encode = torch.from_numpy(data[_token_key(spec)]).long(), model.encode_text  # OpenAI: int64

    def run():
        with torch.no_grad():
            return encode(x).numpy()

    info = {"framework_version": f"torch {torch.__version__}", "rss_after_import_mb": rss_import,
            "threads_setting": {"torch.get_num_threads": torch.get_num_threads(),
                                "torch.get_num_interop_threads": torch.get_num_interop_threads()}}
    return run, load_s, info


def _token_key(spec):
    return "tokens77" if spec["tower"] == "text77" else "tokens"


def _mindspore_runner(spec, threads):
    import numpy as np
    import mindspore as ms

    ms.set_device("CPU")
    ms.device_context.cpu.threads_num(threads)  # MindSpore's CPU kernel thread pool (2.x API)
    sys.path.insert(0, ROOT)
    import clip
    rss_import = _mb(_status_kb("VmRSS"))

    t0 = time.perf_counter()
    model, _ = clip.load(spec["ckpt"], device="CPU", **LOAD_ARGS[spec["framework"]])
    load_s = time.perf_counter() - t0

    data = np.load(spec["inputs"])
    if spec["tower"] == "image":
        x, encode = ms.Tensor(data["images"]), model.encode_image
    else:
        x, encode = ms.Tensor(data[_token_key(spec)].astype(np.int32)), model.encode_text  # clip.tokenize: int32

    def run():
        return encode(x).asnumpy()

    info = {"framework_version": f"mindspore {ms.__version__}", "rss_after_import_mb": rss_import,
            "threads_setting": {"mindspore.device_context.cpu.threads_num": threads}}
    return run, load_s, info


def worker(spec_path):
    with open(spec_path) as f:
        spec = json.load(f)
    cpus = spec["cpus"]
    os.sched_setaffinity(0, cpus)  # already set before exec; kept for direct runs
    result = {key: spec[key] for key in ("arch", "tower", "framework", "batch")}
    result["affinity"] = sorted(os.sched_getaffinity(0))
    result["rss_start_mb"] = _mb(_status_kb("VmRSS"))

    make = _torch_runner if spec["framework"] == "torch" else _mindspore_runner
    run, load_s, info = make(spec, len(cpus))
    result.update(info)
    result["load_s"] = round(load_s, 3)

    import gc
    import numpy as np

    gc.collect()
    result["rss_after_load_mb"] = _mb(_status_kb("VmRSS"))
    result["peak_rss_load_mb"] = _mb(_status_kb("VmHWM"))  # import + load
    reset = _reset_peak_rss()

    t0 = time.perf_counter()
    features = run()  # first call: for graph mode this compiles
    result["first_call_s"] = round(time.perf_counter() - t0, 4)
    for _ in range(spec["warmup"] - 1):
        run()

    times = []
    cpu0 = _cpu_seconds()
    for _ in range(spec["iters"]):
        t0 = time.perf_counter()
        features = run()
        times.append(time.perf_counter() - t0)
    cpu_s = _cpu_seconds() - cpu0

    median = statistics.median(times)
    result.update(
        times_s=[round(t, 5) for t in times],
        median_s=round(median, 5),
        items_per_s=round(spec["batch"] / median, 3),
        cpu_per_wall=round(cpu_s / sum(times), 2),  # about how many CPUs were busy
        compile_s_estimate=round(result["first_call_s"] - median, 4) if spec["framework"] == "graph" else None,
        peak_rss_run_mb=_mb(_status_kb("VmHWM")) if reset else None,  # load state + compute
        peak_rss_process_mb=_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),  # whole life
        features_shape=list(features.shape),
        features_finite=bool(np.isfinite(features).all()),
    )
    result["threads"], result["thread_cpus"] = _threads()
    np.save(spec["features"], features)
    with open(spec["result"], "w") as f:
        json.dump(result, f, indent=1)


# ---------------------------------------------------------------------------------------------
# Orchestration

def _env(threads):
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    env.setdefault("GLOG_v", "3")  # MindSpore: errors only on stderr
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def _run(args, cpus, what, timeout=None):
    """Run this script with ``args`` in a fresh process pinned to ``cpus``; return stdout."""
    proc = subprocess.run([sys.executable, os.path.abspath(__file__)] + args, env=_env(len(cpus)),
                          preexec_fn=lambda: os.sched_setaffinity(0, cpus), capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def _table(headers, rows):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def report(results, cpus, args):
    by_key = {(r["arch"], r["tower"], r["framework"]): r for r in results}
    speed, memory = [], []
    for r in results:
        base = by_key.get((r["arch"], r["tower"], "torch"))
        label = LABELS[r["framework"]]
        if "error" in r:
            speed.append([r["arch"], r["tower"], label, "FAILED", "", "", "", "", "", "", ""])
            continue
        ok_base = base is not None and "error" not in base
        ratio = r["items_per_s"] / base["items_per_s"] if ok_base else None
        paired = r.get("round_speed_vs_torch")
        if paired:
            ratio = statistics.median(paired)  # the median of the paired rounds' ratios
        mem_ratio = (r["peak_rss_run_mb"] / base["peak_rss_run_mb"]
                     if ok_base and r["peak_rss_run_mb"] and base["peak_rss_run_mb"] else None)
        load_ratio = r["peak_rss_load_mb"] / base["peak_rss_load_mb"] if ok_base else None
        r["speed_vs_torch"] = None if ratio is None else round(ratio, 3)
        r["peak_rss_run_vs_torch"] = None if mem_ratio is None else round(mem_ratio, 3)
        r["peak_rss_load_vs_torch"] = None if load_ratio is None else round(load_ratio, 3)
        speed.append([r["arch"], r["tower"], label, _fmt(r["first_call_s"], ".2f"), _fmt(r["median_s"], ".4f"),
                      _fmt(r["items_per_s"], ".1f"), _fmt(ratio, ".2f"),
                      " ".join(f"{x:.2f}" for x in paired) if paired else "-", _fmt(r["cpu_per_wall"], ".2f"),
                      _fmt(r.get("max_rel_diff_vs_torch"), ".1e"), _fmt(r["load_s"], ".1f")])
        memory.append([r["arch"], r["tower"], label, _fmt(r["rss_after_import_mb"], ".0f"),
                       _fmt(r["rss_after_load_mb"], ".0f"),
                       _fmt(r["peak_rss_load_mb"], ".0f"), _fmt(load_ratio, ".2f"),
                       _fmt(r["peak_rss_run_mb"], ".0f"), _fmt(mem_ratio, ".2f")])

    print(f"\nCPU: {cpu_description()}")
    rounds = (f"; {args.rounds} rounds, the frameworks taking turns, median of the rounds (x torch: median of "
              f"the rounds' ratios)" if args.rounds > 1 else "")
    print(f"encode throughput: {args.batch} images / {args.text_batch} texts per call, median of {args.iters} timed calls after "
          f"{args.warmup} warm-up call(s){rounds}; CPUs {','.join(map(str, cpus))} "
          f"({len(cpus)} thread(s) per framework)")
    print(_table(["model", "tower", "framework/mode", "1st call s", "median s", "items/s", "x torch",
                  "rounds x torch", "CPUs busy", "rel diff", "load s"], speed))
    print("\npeak resident memory (MB), each row its own process")
    print(_table(["model", "tower", "framework/mode", "RSS import", "RSS loaded", "peak load", "x torch",
                  "peak run", "x torch"], memory))
    print("\nx torch: items/s divided by PyTorch's (>1 = faster); memory divided by PyTorch's "
          "(>1 = more). 1st call includes graph compilation for 'graph'. CPUs busy = CPU time / "
          "wall time while timed. rel diff = max |features - PyTorch's| / max |PyTorch's|.", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="ViT-B/32,RN50", help="comma-separated (default ViT-B/32,RN50)")
    parser.add_argument("--batch", type=int, default=16, help="images per call (default 16)")
    parser.add_argument("--text-batch", type=int, default=64, help="texts per call (default 64)")
    parser.add_argument("--iters", type=int, default=5, help="timed calls per measurement (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed-for-throughput calls first, >= 1; "
                        "the first one is timed on its own (graph compilation)")
    parser.add_argument("--cpus", type=_parse_cpus, default=None,
                        help="CPU set for every framework, e.g. 0,1 or 0-3 (default: all this process may use)")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                        help=f"comma-separated subset of {','.join(FRAMEWORKS)}")
    parser.add_argument("--towers", default=",".join(TOWERS),
                        help="image, text (prompts of <= 16 tokens), text77 (77-token texts); default all")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every framework this many times, taking turns (PyTorch, then the others), "
                             "and report the median; x torch is then the median of the rounds' ratios (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write all results to this file")
    parser.add_argument("--workdir", default=None, help="keep weights/inputs here (default: a temporary folder)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per measurement process")
    # internal entry points of the helper processes
    parser.add_argument("--_prepare", nargs=2, metavar=("ARCH", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--_convert", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--_worker", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._worker:
        return worker(args._worker)
    if args._prepare:
        return prepare_reference(args._prepare[0], args._prepare[1], args.batch, args.seed, args.text_batch)
    if args._convert:
        return prepare_checkpoint(args._convert)

    if args.batch < 1 or args.iters < 1 or args.warmup < 1 or args.rounds < 1:
        parser.error("--batch, --iters, --warmup and --rounds must be at least 1")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    towers = [t.strip() for t in args.towers.split(",") if t.strip()]
    if set(frameworks) - set(FRAMEWORKS) or set(towers) - set(TOWERS):
        parser.error(f"--frameworks takes {FRAMEWORKS}, --towers takes {TOWERS}")
    frameworks = [f for f in FRAMEWORKS if f in frameworks]  # PyTorch first: it is the baseline
    available = sorted(os.sched_getaffinity(0))
    cpus = args.cpus or available
    if set(cpus) - set(available):
        parser.error(f"--cpus {cpus}: this process may only use CPUs {available}")

    workdir = args.workdir or tempfile.mkdtemp(prefix="clip_bench_")
    os.makedirs(workdir, exist_ok=True)
    try:
        return _measure(args, models, frameworks, towers, cpus, workdir)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def _measure_one(args, arch, tower, framework, index, info, cpus, mdir):
    """One measurement process (``index``: the round); its result dict, or one with ``error``."""
    tag = f"{framework}_{tower}" + (f"_r{index}" if args.rounds > 1 else "")
    batch = args.batch if tower == "image" else args.text_batch
    spec = dict(arch=arch, tower=tower, framework=framework, batch=batch, iters=args.iters,
                warmup=args.warmup, cpus=cpus, pth=info["pth"], ckpt=info.get("ckpt"),
                inputs=os.path.join(mdir, "inputs.npz"),
                features=os.path.join(mdir, f"{tag}_features.npy"),
                result=os.path.join(mdir, f"{tag}_result.json"))
    spec_path = os.path.join(mdir, f"{tag}_spec.json")
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    round_note = f" (round {index + 1} of {args.rounds})" if args.rounds > 1 else ""
    print(f"[{arch}] {tower:5s} {LABELS[framework]}{round_note} ...", file=sys.stderr, flush=True)
    try:
        _run(["--_worker", spec_path], cpus, f"{arch} {tower} {framework}", args.timeout)
        with open(spec["result"]) as f:
            result = json.load(f)
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        print(error, file=sys.stderr)
        return dict(arch=arch, tower=tower, framework=framework, error=str(error))
    result["features_path"] = spec["features"]
    return result


def _combine_rounds(results, torch_results):
    """One result from the rounds of a framework: the median of the rounds' median times (and of
    their peak memory), and, beside PyTorch, the ratio of each round to PyTorch's round run just
    before it (``round_speed_vs_torch``; paired, so a slow phase of a shared machine hits both)."""
    errors = [r for r in results if "error" in r]
    if errors:
        return errors[0]
    if len(results) == 1:
        return results[0]
    combined = dict(results[0])
    combined["round_median_s"] = [r["median_s"] for r in results]
    combined["median_s"] = round(statistics.median(combined["round_median_s"]), 5)
    combined["items_per_s"] = round(combined["batch"] / combined["median_s"], 3)
    for key in ("peak_rss_run_mb", "peak_rss_load_mb", "rss_after_load_mb", "rss_after_import_mb", "cpu_per_wall"):
        values = [r[key] for r in results if r.get(key) is not None]
        combined[key] = statistics.median(values) if values else None
    combined["max_rel_diff_vs_torch"] = max((r["max_rel_diff_vs_torch"] for r in results
                                             if r.get("max_rel_diff_vs_torch") is not None), default=None)
    if torch_results and combined["framework"] != "torch" and all("error" not in r for r in torch_results):
        combined["round_speed_vs_torch"] = [round(t["median_s"] / r["median_s"], 3)
                                            for t, r in zip(torch_results, results)]
    return combined


def _measure(args, models, frameworks, towers, cpus, workdir):
    results, prepared = [], {}
    failed = False
    for arch in models:
        mdir = os.path.join(workdir, arch.replace("/", "-").replace("@", "-"))
        os.makedirs(mdir, exist_ok=True)
        print(f"[{arch}] random weights and inputs ...", file=sys.stderr, flush=True)
        try:
            info = json.loads(_run(["--_prepare", arch, mdir, "--batch", str(args.batch), "--text-batch", str(args.text_batch),
                                    "--seed", str(args.seed)], cpus, f"{arch}: preparing weights"))
            if any(f != "torch" for f in frameworks):
                info.update(json.loads(_run(["--_convert", mdir], cpus, f"{arch}: converting to .ckpt")))
        except RuntimeError as error:
            print(error, file=sys.stderr)
            failed = True
            continue
        prepared[arch] = info
        for tower in towers:
            reference_features = None
            rounds = {framework: [] for framework in frameworks}
            for index in range(args.rounds):
                for framework in frameworks:
                    result = _measure_one(args, arch, tower, framework, index, info, cpus, mdir)
                    rounds[framework].append(result)
                    if "error" in result:
                        failed = True
                        continue
                    import numpy as np  # the orchestrator never imports a framework

                    features = np.load(result.pop("features_path"))
                    if framework == "torch":
                        reference_features = features
                    elif reference_features is not None:
                        scale = float(np.abs(reference_features).max()) or 1.0
                        result["max_rel_diff_vs_torch"] = float(np.abs(features - reference_features).max()) / scale
            results += [_combine_rounds(rounds[framework], rounds.get("torch")) for framework in frameworks]

    report(results, cpus, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": {"models": models, "batch": args.batch, "iters": args.iters,
                                    "warmup": args.warmup, "cpus": cpus, "frameworks": frameworks,
                                    "towers": towers, "seed": args.seed, "rounds": args.rounds, "python": platform.python_version(),
                                    "machine": platform.machine(), "cpu_count": os.cpu_count(),
                                    "cpu": cpu_description(), "text_batch": args.text_batch,
                                    "workdir": args.workdir},
                       "models": prepared, "results": results}, f, indent=1)
        print(f"\nwrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
