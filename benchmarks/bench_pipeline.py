"""Cold start and end-to-end feature extraction: this MindSpore port against OpenAI's PyTorch code.

    python benchmarks/bench_pipeline.py [--model ViT-B/32] [--images 512] [--batch 64] [--cpus 0,1]

Two measurements, each framework in its own fresh process pinned to the same CPUs (the helpers of
``bench_encode.py`` prepare the random weights: OpenAI's model built and randomised in PyTorch,
saved as a state dict, converted to ``.ckpt``):

- **cold start**: wall time of a whole process that imports the framework and the model code,
  loads the weights, preprocesses one JPEG and encodes it (``clip.load`` default settings, so the
  first call compiles the tower where ``load`` compiles it), from ``exec`` to the features;
- **extraction**: a folder of JPEGs (random pictures of different sizes, written once) decoded,
  preprocessed and encoded in batches: ``clip.extract_image_features`` against the same loop in
  PyTorch (PIL decode, the same preprocess arithmetic — Resize bicubic, CenterCrop, scale,
  normalise, written with PIL and NumPy since PyPI's torchvision does not load beside the local
  torch build — and ``model.encode_image`` under ``torch.no_grad()``), timed from the first
  file read to the last feature, after loading.

The script reports; it asserts nothing about speed. Run it on an otherwise idle machine.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import bench_encode  # noqa: E402  (no framework import at module level)

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)

COLD_TORCH = r"""
import os, sys, time
import numpy as np
import torch
from PIL import Image
sys.path.insert(0, {tests!r})
import reference
ref = reference.model_module()
import make_reference
model = ref.CLIP(**make_reference.config({arch!r})).eval()
model.load_state_dict(torch.load({pth!r}))
sys.path.insert(0, {here!r})
from bench_pipeline import numpy_preprocess
with torch.no_grad():
    x = torch.from_numpy(numpy_preprocess(Image.open({image!r}), model.visual.input_resolution)[None])
    model.encode_image(x).numpy()
"""

COLD_MINDSPORE = r"""
import sys
sys.path.insert(0, {root!r})
import clip
import mindspore as ms
from PIL import Image
model, preprocess = clip.load({ckpt!r}, device="CPU")
model.encode_image(ms.Tensor(preprocess(Image.open({image!r}))[None])).asnumpy()
"""


def numpy_preprocess(image, size):
    """OpenAI's preprocess (Resize bicubic on the short side, CenterCrop, RGB, [0, 1], normalise)
    with PIL and NumPy: ``[3, size, size]`` float32."""
    import numpy as np
    from PIL import Image

    w, h = image.size  # torchvision's Resize(size): the short side to size, the long one to int(size * long / short)
    short, long = min(w, h), max(w, h)
    new_long = int(size * long / short)
    image = image.resize((size, new_long) if w <= h else (new_long, size), Image.BICUBIC).convert("RGB")
    w, h = image.size
    left, top = int(round((w - size) / 2.0)), int(round((h - size) / 2.0))
    array = np.asarray(image.crop((left, top, left + size, top + size)), np.float32) / 255.0
    return ((array - np.array(MEAN, np.float32)) / np.array(STD, np.float32)).transpose(2, 0, 1)


def write_jpegs(folder, count, seed=0):
    import numpy as np
    from PIL import Image

    rng = np.random.RandomState(seed)
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        h, w = rng.randint(200, 640, size=2)
        base = rng.randint(0, 256, size=(h // 16 + 1, w // 16 + 1, 3)).astype(np.uint8)
        picture = Image.fromarray(base).resize((int(w), int(h)), Image.BILINEAR)  # smooth, JPEG-like content
        picture.save(os.path.join(folder, f"{i:05d}.jpg"), quality=90)


EXTRACT_TORCH = r"""
import glob, json, os, sys, time
import numpy as np
import torch
from PIL import Image
sys.path.insert(0, {tests!r}); sys.path.insert(0, {here!r})
import reference, make_reference
from bench_pipeline import numpy_preprocess
torch.set_num_threads({threads})
ref = reference.model_module()
model = ref.CLIP(**make_reference.config({arch!r})).eval()
model.load_state_dict(torch.load({pth!r}))
files = sorted(glob.glob(os.path.join({folder!r}, "*.jpg")))
size = model.visual.input_resolution
start = time.perf_counter()
out = []
with torch.no_grad():
    for i in range(0, len(files), {batch}):
        x = np.stack([numpy_preprocess(Image.open(f), size) for f in files[i:i + {batch}]])
        out.append(model.encode_image(torch.from_numpy(x)).numpy())
seconds = time.perf_counter() - start
np.save({out!r}, np.concatenate(out))
print(json.dumps({{"seconds": seconds, "images": len(files)}}))
"""

EXTRACT_MINDSPORE = r"""
import json, sys, time
import numpy as np
sys.path.insert(0, {root!r})
import mindspore as ms
ms.set_device("CPU")
ms.device_context.cpu.threads_num({threads})
import clip
model, preprocess = clip.load({ckpt!r}, device="CPU")
start = time.perf_counter()
result = clip.extract_image_features(model, preprocess, {folder!r}, batch_size={batch}, progress=False)
seconds = time.perf_counter() - start
features = np.asarray(result.features)
np.save({out!r}, features)
print(json.dumps({{"seconds": seconds, "images": int(features.shape[0])}}))
"""


def _python(code, cpus):
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], env=bench_encode._env(len(cpus)), capture_output=True,
                          text=True, preexec_fn=lambda: os.sched_setaffinity(0, cpus))
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return wall, proc.stdout


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="ViT-B/32")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3, help="cold starts per framework (median)")
    parser.add_argument("--cpus", default=None)
    args = parser.parse_args(argv)
    cpus = bench_encode._parse_cpus(args.cpus) if args.cpus else sorted(os.sched_getaffinity(0))
    work = tempfile.mkdtemp(prefix="bench_pipeline_")
    try:
        return _measure(args, cpus, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # weights and JPEGs: ~1.2 GB for ViT-B/32


def _measure(args, cpus, work):
    info = json.loads(bench_encode._run(["--_prepare", args.model, work, "--batch", "1", "--text-batch", "1"],
                                        cpus, "preparing weights"))
    info.update(json.loads(bench_encode._run(["--_convert", work], cpus, "converting")))
    folder = os.path.join(work, "jpegs")
    write_jpegs(folder, args.images)
    image = os.path.join(folder, "00000.jpg")
    fields = dict(tests=os.path.join(ROOT, "tests"), here=HERE, root=ROOT, arch=args.model, pth=info["pth"],
                  ckpt=info["ckpt"], image=image, folder=folder, batch=args.batch, threads=len(cpus))

    print(f"CPU: {bench_encode.cpu_description()}; CPUs {','.join(map(str, cpus))}; model {args.model}")
    cold = {}
    for name, code in (("PyTorch (OpenAI)", COLD_TORCH), ("MindSpore clip", COLD_MINDSPORE)):
        walls = sorted(_python(code.format(**fields), cpus)[0] for _ in range(args.repeat))
        cold[name] = walls[len(walls) // 2]
    base = cold["PyTorch (OpenAI)"]
    print("\ncold start: import + load + preprocess + encode one JPEG, whole process (median of "
          f"{args.repeat})")
    for name, seconds in cold.items():
        print(f"  {name:18s} {seconds:7.2f} s   x PyTorch's time: {seconds / base:.2f}")

    rates, outputs = {}, {}
    for name, code in (("PyTorch (OpenAI)", EXTRACT_TORCH), ("MindSpore clip", EXTRACT_MINDSPORE)):
        out = os.path.join(work, f"{len(rates)}.npy")
        _, stdout = _python(code.format(out=out, **fields), cpus)
        result = json.loads(stdout.strip().splitlines()[-1])
        rates[name] = result["images"] / result["seconds"]
        outputs[name] = out
    import numpy as np

    a, b = (np.load(outputs[n]) for n in ("PyTorch (OpenAI)", "MindSpore clip"))
    diff = float(np.abs(a - b).max() / np.abs(a).max())
    print(f"\nextraction: {args.images} JPEGs, batch {args.batch}, decode + preprocess + encode "
          f"(rel diff of features {diff:.1e})")
    for name, rate in rates.items():
        print(f"  {name:18s} {rate:7.1f} images/s   x PyTorch: {rate / rates['PyTorch (OpenAI)']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
