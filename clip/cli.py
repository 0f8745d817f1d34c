"""The command line: ``python -m clip classify | embed | eval | convert | train ...``.

::

    python -m clip classify cat.jpg dog.png --labels cat dog car --top-k 2
    python -m clip classify photo.jpg --prompt-set cifar10 --json
    python -m clip embed photos/ --output photos-vitb32 --normalize
    python -m clip embed --texts captions.txt --output captions-vitb32
    python -m clip embed photos/ --output photos-vitb32 --workers 4   (4 processes under msrun)
    python -m clip eval --task zero-shot --dataset cifar-10-batches-py
    python -m clip eval --task linear-probe --dataset cifar-10-batches-py --json probe.json
    python -m clip eval --task retrieval --dataset Flickr8k.token.txt --images-root Flicker8k_Dataset
    python -m clip convert --pth_path ViT-B/32 --output ViT-B-32.ckpt
    python -m clip train --model ViT-B/32 --train-data train.csv --output runs/ft  (clip.training.cli)

Every subcommand but ``convert`` and ``train`` takes ``--model`` (a name from ``clip.available_models()``
or a ``.ckpt``/``.pt``/``.pth`` file; default ``ViT-B/32``), ``--device``, ``--mode``,
``--batch-size`` and ``--download-root``. Progress bars go to stderr (``--quiet`` hides them);
results go to stdout.

Exit codes: 0 on success; 2 for arguments argparse rejects (with the usage); 1 for every other
problem (a missing file, an unknown model or prompt set, an unreadable checkpoint, a failed
download...), reported as one ``error: ...`` line on stderr. ``--debug`` adds the traceback.
"""
import argparse
import json
import os
import sys
import traceback
import warnings

import numpy as np
from tqdm import tqdm

from . import _download, datasets, distributed, evaluation
from ._atomic import write_atomically
from .clip import _MODELS, _resolve_device, available_models, load
from .convert import add_open_clip_arguments, convert, default_output_path
from .distributed import launch, launched_by_msrun
from .features import (IMAGE_EXTENSIONS, ImageFeatures, _extract_rows, extract_image_features,
                       extract_text_features, find_images, open_image)
from .prompts import available_prompt_sets, get_prompt_set
from .zeroshot import ZeroShotClassifier, zero_shot_classifier
from ._argtypes import fraction as _fraction, non_negative_int as _non_negative_int, positive_int as _positive_int

__all__ = ["CLIError", "build_parser", "main"]

DEFAULT_MODEL = "ViT-B/32"
DEFAULT_TEMPLATE = "a photo of a {}."
_CLASSIFICATION_FORMATS = ("cifar", "imagefolder")
_CAPTION_FORMATS = ("flickr8k", "csv")
# file names that mark a folder as CIFAR (python or binary version), directly or in the
# standard sub-folder the archive extracts to
_CIFAR_MARKERS = ("batches.meta", "test_batch", "data_batch_1", "meta", "test", "train",
                  "batches.meta.txt", "test_batch.bin", "data_batch_1.bin", "test.bin", "train.bin",
                  "fine_label_names.txt")
_CIFAR_SUBFOLDERS = ("cifar-10-batches-py", "cifar-10-batches-bin", "cifar-100-python", "cifar-100-binary")
# messages longer than this many lines (MindSpore's C++ call stacks) are cut to their first line
_MAX_MESSAGE_LINES = 8


class CLIError(Exception):
    """A problem with the command's input, reported as one ``error: ...`` line (exit code 1)."""


# ---------------------------------------------------------------------------------------------
# argument parsing

def _runtime_options(with_model=True):
    """The options every subcommand shares, as an argparse parent parser."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("model and runtime")
    if with_model:
        group.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME_OR_PATH",
                           help=f"a model name ({', '.join(available_models())}; downloaded once and "
                                f"SHA-256 checked) or a .ckpt/.pt/.pth file (default: {DEFAULT_MODEL})")
        group.add_argument("--device", default=None,
                           help="Ascend, GPU or CPU ('cuda'/'cpu' accepted, optionally ':<id>'); "
                                "default: the best available")
        group.add_argument("--mode", choices=("graph", "pynative"), default="pynative",
                           help="accepted for compatibility: either way the towers run as compiled "
                                "graphs (mindspore.jit) and the global mode is left as it is")
        group.add_argument("--eager", action="store_true",
                           help="compile nothing: every operation runs eagerly (slower; for debugging)")
        group.add_argument("--batch-size", type=_positive_int, default=32, metavar="N",
                           help="images or texts per model call (default: 32)")
    group.add_argument("--download-root", "--download_root", dest="download_root", default=None, metavar="DIR",
                       help="cache folder of downloaded models (default: $CLIP_CACHE_DIR or ~/.cache/clip)")
    group.add_argument("-q", "--quiet", action="store_true",
                       help="no progress bars (they go to stderr otherwise)")
    group.add_argument("--debug", action="store_true",
                       help="on an error, print the Python traceback too")
    return parent


def _add_num_workers(parser):
    """``--num-workers`` of the commands that decode image files (``extract_image_features``'s)."""
    parser.add_argument("--num-workers", type=_non_negative_int, default=None, metavar="N",
                        help="threads decoding and preprocessing images, 0: between model calls "
                             "(default: 0 on machines of up to 4 CPUs, else 2)")


def build_parser():
    """The ``argparse`` parser of ``python -m clip`` (its subcommands are ``classify``, ``embed``,
    ``eval`` and ``convert``)."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="python -m clip",
        description="CLIP for MindSpore from the command line: zero-shot image classification, "
                    "image and text features, evaluation on standard datasets, weight conversion.",
        epilog="Run 'python -m clip COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"clip {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    runtime = _runtime_options()

    # classify --------------------------------------------------------------------------------
    p = commands.add_parser(
        "classify", parents=[runtime], help="rank candidate labels for images (zero-shot)",
        description="Rank candidate labels for each image by CLIP's probabilities "
                    "softmax(logit_scale.exp() * cosine(image, label prompts)).")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    labels = p.add_argument_group("labels (give one)").add_mutually_exclusive_group()
    labels.add_argument("--labels", nargs="+", metavar="LABEL", help="the candidate labels")
    labels.add_argument("--labels-file", metavar="FILE",
                        help="a UTF-8 text file with one label per line (blank lines are ignored)")
    labels.add_argument("--prompt-set", metavar="NAME",
                        help="the class names AND templates of a prompt set (prompt ensembling), e.g. "
                             "cifar10, imagenet; one of: " + ", ".join(available_prompt_sets()))
    p.add_argument("--templates", nargs="+", metavar="TEMPLATE",
                   help=f"prompt templates with a '{{}}' for the label, averaged (default: "
                        f"'{DEFAULT_TEMPLATE}', or the prompt set's templates)")
    p.add_argument("--top-k", type=_positive_int, default=5, metavar="K",
                   help="labels shown per image (default: 5; at most the number of labels)")
    p.add_argument("--json", action="store_true",
                   help='print JSON instead of tables: [{"image": path, "predictions": '
                        '[{"label": ..., "score": probability}, ...]}, ...]')
    p.set_defaults(run=_cmd_classify)

    # embed -----------------------------------------------------------------------------------
    p = commands.add_parser(
        "embed", parents=[runtime], help="save the features of many images (or texts)",
        description="Encode images (or lines of text) and save the features as <PREFIX>.npy "
                    "(float32 [N, embed_dim]) plus <PREFIX>.paths.txt (images: the file of each row) "
                    "or <PREFIX>.texts.txt (texts: the text of each row). Images that cannot be read "
                    "are listed in the summary and skipped.")
    p.add_argument("source", nargs="?", metavar="SOURCE",
                   help="a folder (searched recursively for image files), a text file listing image "
                        "paths one per line (relative paths are relative to the list's folder), or one image")
    p.add_argument("--texts", metavar="FILE",
                   help="embed the lines of this UTF-8 text file (blank lines skipped) instead of images")
    p.add_argument("--output", "-o", required=True, metavar="PREFIX",
                   help="output prefix: writes PREFIX.npy and PREFIX.paths.txt (or PREFIX.texts.txt)")
    p.add_argument("--normalize", action="store_true", help="scale every feature vector to unit L2 norm")
    _add_num_workers(p)
    p.add_argument("--truncate", action="store_true",
                   help="cut texts longer than the context length (77 tokens) instead of failing")
    distributed.add_launch_arguments(
        p, "encode the images with N processes on this machine: starts msrun with N workers, which run this "
           "command; each encodes every N-th batch, rank 0 writes the one result, the same as with one process; "
           "--texts is always embedded in one process", "PREFIX.logs")
    p.set_defaults(run=_cmd_embed)

    # eval ------------------------------------------------------------------------------------
    p = commands.add_parser(
        "eval", parents=[runtime], help="zero-shot, linear-probe or retrieval evaluation",
        description="Evaluate a model on a dataset. zero-shot and linear-probe read CIFAR-10/100 "
                    "(python or binary version) or an ImageFolder tree (DATASET/<class>/..., or "
                    "DATASET/<split>/<class>/...); retrieval reads captions from a Flickr8k token file "
                    "(<image>#<n><TAB><caption>) or a CSV file with a header.")
    p.add_argument("--task", required=True, choices=("zero-shot", "linear-probe", "retrieval"),
                   help="zero-shot: top-1, top-5 and mean per-class recall with class-name prompts; "
                        "linear-probe: logistic regression on train features, C chosen on a validation "
                        "part of train, scored on the test split; retrieval: recall@1/5/10 image->text "
                        "and text->image")
    p.add_argument("--dataset", required=True, metavar="PATH",
                   help="classification: the CIFAR folder or the ImageFolder root; retrieval: the caption "
                        "file, or a folder (then --captions names the caption file)")
    p.add_argument("--dataset-format", choices=_CLASSIFICATION_FORMATS + _CAPTION_FORMATS, default=None,
                   help="default: detected (a folder with CIFAR files: cifar, another folder: imagefolder; "
                        "a .csv caption file: csv, another caption file: flickr8k)")
    p.add_argument("--split", default=None, metavar="NAME",
                   help="the split evaluated: CIFAR 'train' or 'test'; for an ImageFolder the sub-folder "
                        "DATASET/NAME (default: test; zero-shot falls back to DATASET itself when "
                        "DATASET/test does not exist)")
    p.add_argument("--train-split", default="train", metavar="NAME",
                   help="linear-probe: the training split (default: train)")
    p.add_argument("--prompt-set", metavar="NAME",
                   help="zero-shot: class names and templates of this prompt set (default: cifar10/cifar100 "
                        "for CIFAR; for an ImageFolder the folder names, '_' read as spaces, with "
                        f"'{DEFAULT_TEMPLATE}')")
    p.add_argument("--templates", nargs="+", metavar="TEMPLATE",
                   help="zero-shot: prompt templates with a '{}' for the class name (override the default)")
    p.add_argument("--val-fraction", type=_fraction, default=0.2, metavar="F",
                   help="linear-probe: share of each training class held out to choose C (default: 0.2)")
    p.add_argument("--seed", type=int, default=0,
                   help="linear-probe: seed of the validation split (default: 0)")
    p.add_argument("--captions", metavar="FILE",
                   help="retrieval: the caption file when --dataset is a folder")
    p.add_argument("--images-root", metavar="DIR",
                   help="retrieval: folder the image names of the captions are relative to (default: "
                        "--dataset if it is a folder, else the caption file's folder)")
    p.add_argument("--split-file", metavar="FILE",
                   help="retrieval, flickr8k: keep only the images listed in this file "
                        "(e.g. Flickr_8k.testImages.txt)")
    p.add_argument("--path-column", default="path", metavar="NAME",
                   help="retrieval, csv: column of the image paths (default: path)")
    p.add_argument("--caption-column", default="caption", metavar="NAME",
                   help="retrieval, csv: column of the captions (default: caption)")
    _add_num_workers(p)
    p.add_argument("--json", dest="json_out", metavar="OUT.json",
                   help="also write the results to this JSON file (atomically)")
    p.set_defaults(run=_cmd_eval)

    # convert ---------------------------------------------------------------------------------
    p = commands.add_parser(
        "convert", parents=[_runtime_options(with_model=False)],
        help="convert OpenAI's PyTorch weights to a MindSpore .ckpt (as ckpt_transform.py)",
        description="Convert OpenAI CLIP PyTorch weights (.pt/.pth, TorchScript release or state dict) to "
                    "a MindSpore checkpoint without PyTorch; same as 'python ckpt_transform.py'.")
    p.add_argument("--pth_path", "--pth-path", dest="pth_path", required=True, metavar="PATH_OR_NAME",
                   help="a .pt/.pth file, or a model name such as ViT-B/32 (downloaded)")
    p.add_argument("--output", "-o", default=None, metavar="OUT.ckpt",
                   help="output file (default: the input path with the suffix .ckpt; for a model name "
                        "<file stem>.ckpt in the current folder, e.g. ViT-B-32.ckpt)")
    add_open_clip_arguments(p)
    p.set_defaults(run=_cmd_convert)

    # train (clip.training.cli) -----------------------------------------------------------------
    from .training.cli import add_train_parser
    add_train_parser(commands, parents=[_runtime_options(with_model=False)])
    return parser


# ---------------------------------------------------------------------------------------------
# shared helpers

def _progress(args):
    return not args.quiet


def _model_file(name, download_root, progress):
    """The local file of ``--model``: downloaded (and checked) for a model name."""
    if name in _MODELS:
        return _download.download(_MODELS[name], _download.default_cache_dir(download_root), progress=progress)
    if os.path.isdir(name):
        raise CLIError(f"--model {name}: is a folder; give a model name or a .ckpt/.pt/.pth file")
    if not os.path.isfile(name):
        raise CLIError(f"unknown model {name!r}: no such file, and not a model name; available models: "
                       f"{', '.join(available_models())}")
    return name


def _load_model(args):
    path = _model_file(args.model, args.download_root, _progress(args))
    if args.eager and args.mode == "graph":
        raise CLIError("--eager compiles nothing; it cannot be combined with --mode graph")
    return load(path, device=args.device, mode=args.mode, eager=args.eager)


def _read_text_lines(path, what):
    """Stripped non-blank lines of a UTF-8 text file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path!r} not found")
    try:
        with open(path, "r", encoding="utf-8-sig") as f:
            lines = [line.strip() for line in f.read().splitlines()]
    except UnicodeDecodeError as error:
        raise CLIError(f"{what} {path!r} is not a UTF-8 text file ({error})") from None
    return [line for line in lines if line]


def _write_json(path, data):
    write_atomically(path, lambda f: f.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n"))


def _report_failures(failed, stream):
    for path, message in failed:
        print(f"  {path}: {message}", file=stream)


def _warn_skipped(failed, total):
    if failed:
        print(f"warning: skipped {len(failed)} of {total} images that could not be read:", file=sys.stderr)
        _report_failures(failed, sys.stderr)


def _image_features(args, model, preprocess, source, total):
    """``extract_image_features`` with the CLI's options; its warning about unreadable files is
    left to the caller, which lists them."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="skipped .* images that could not be read")
        result = extract_image_features(model, preprocess, source, batch_size=args.batch_size,
                                        num_workers=args.num_workers, progress=_progress(args))
    if total and not len(result):
        path, message = result.failed[0]
        raise CLIError(f"none of the {total} images could be read (the first: {path}: {message})")
    return result


def _format_metrics(rows, plain=()):
    """Lines of a ``metric value`` table: fractions with 4 decimals and as percentages, the
    metrics named in ``plain`` (such as the linear probe's ``C``) as plain numbers."""
    width = max(len("metric"), *(len(name) for name, _ in rows))
    lines = [f"{'metric':<{width}}  {'value':>8}"]
    for name, value in rows:
        if value is None:
            lines.append(f"{name:<{width}}  {'-':>8}")
        elif name in plain:
            lines.append(f"{name:<{width}}  {value:8.4g}")
        else:
            lines.append(f"{name:<{width}}  {value:8.4f}  ({100 * value:.2f}%)")
    return lines


# ---------------------------------------------------------------------------------------------
# classify

def _classify_labels(args):
    """``(labels, templates, prompt set name or None)`` from the label options."""
    prompt_set = None
    if args.prompt_set is not None:
        prompt_set = get_prompt_set(args.prompt_set)
        labels, templates = list(prompt_set.classnames), list(prompt_set.templates)
    elif args.labels_file is not None:
        labels = _read_text_lines(args.labels_file, "labels file")
        if not labels:
            raise CLIError(f"labels file {args.labels_file!r} holds no labels (one per line expected)")
        templates = [DEFAULT_TEMPLATE]
    elif args.labels is not None:
        labels = [label.strip() for label in args.labels]
        templates = [DEFAULT_TEMPLATE]
    else:
        raise CLIError("no labels: give --labels L1 L2 ..., --labels-file FILE or --prompt-set NAME")
    if prompt_set is None:
        seen = set()
        for label in labels:
            if not label:
                raise CLIError("a label is empty")
            if label in seen:
                raise CLIError(f"the label {label!r} is given twice")
            seen.add(label)
    if args.templates is not None:
        templates = list(args.templates)
    return labels, templates, prompt_set.name if prompt_set is not None else None


def _open_for_classify(path):
    try:
        return open_image(path)
    except Exception as error:  # noqa: BLE001 - any unreadable image is reported by name
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CLIError(f"cannot read image {path!r}: {message}") from error


def _cmd_classify(args):
    labels, templates, _ = _classify_labels(args)
    for path in args.images:
        if not os.path.exists(path):
            raise FileNotFoundError(f"image {path!r} not found")
        if os.path.isdir(path):
            raise CLIError(f"{path!r} is a folder; classify takes image files")
    model, preprocess = _load_model(args)
    classifier = ZeroShotClassifier(model, preprocess, labels, templates, batch_size=args.batch_size,
                                    progress=_progress(args))
    top_k = min(args.top_k, len(labels))
    results = []
    with tqdm(total=len(args.images), unit="image", desc="classify", disable=not _progress(args),
              file=sys.stderr) as bar:
        for start in range(0, len(args.images), args.batch_size):
            chunk = args.images[start:start + args.batch_size]
            ranked = classifier([_open_for_classify(path) for path in chunk], top_k=top_k)
            results.extend({"image": path, "predictions": [{"label": p["label"], "score": p["score"]} for p in preds]}
                           for path, preds in zip(chunk, ranked))
            bar.update(len(chunk))

    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
        return 0
    width = max(len("label"), *(len(p["label"]) for r in results for p in r["predictions"]))
    for n, result in enumerate(results):
        if n:
            print()
        print(result["image"])
        print(f"  {'rank':>4}  {'label':<{width}}  {'score':>7}")
        for rank, prediction in enumerate(result["predictions"], start=1):
            print(f"  {rank:>4}  {prediction['label']:<{width}}  {100 * prediction['score']:6.2f}%")
    return 0


# ---------------------------------------------------------------------------------------------
# embed

def _output_files(prefix, kind):
    prefix = os.fspath(prefix)
    if prefix.endswith(".npy"):
        prefix = prefix[:-len(".npy")]
    if not os.path.basename(prefix):
        raise CLIError(f"--output {prefix!r} names a folder; add a file name stem, e.g. {prefix}features")
    return prefix + ".npy", prefix + f".{kind}.txt"


def _image_list(path):
    """Image paths listed one per line in ``path``; relative ones are joined to its folder.
    An image file given instead of a list stands for itself."""
    if path.lower().endswith(IMAGE_EXTENSIONS):
        return [path]
    folder = os.path.dirname(path)
    entries = _read_text_lines(path, "image list")
    if not entries:
        raise CLIError(f"image list {path!r} lists no images")
    return [entry if os.path.isabs(entry) else os.path.join(folder, entry) for entry in entries]


def _embed_texts(args, model):
    texts = _read_text_lines(args.texts, "text file")
    if not texts:
        raise CLIError(f"text file {args.texts!r} holds no text")
    npy, txt = _output_files(args.output, "texts")
    features = extract_text_features(model, texts, batch_size=args.batch_size, progress=_progress(args),
                                     normalize=args.normalize, truncate=args.truncate)
    features = np.ascontiguousarray(features, dtype=np.float32)
    write_atomically(npy, lambda f: np.save(f, features, allow_pickle=False), binary=True)
    write_atomically(txt, lambda f: f.write("".join(text + "\n" for text in texts)))
    print(f"embedded {len(texts)} texts (dim {features.shape[1]}) from {args.texts}")
    print(f"features: {npy} {list(features.shape)} float32")
    print(f"texts:    {txt}")
    return 0


def _image_paths(source):
    """The ordered image files of SOURCE: a folder's images (sorted, recursively), the files of a
    list, or one image."""
    if not os.path.isdir(source):
        return _image_list(source)
    paths = find_images(source)
    if not paths:
        raise CLIError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {source!r}")
    return paths


def _save_embedding(args, result, npy, txt):
    """Write an image embedding and print its summary (one line per unreadable image)."""
    total = len(result) + len(result.failed)
    if not len(result):
        print(f"failed: all {total} images could not be read:")
        _report_failures(result.failed, sys.stdout)
        raise CLIError(f"none of the {total} images could be read; nothing written")
    result.save(npy[:-len(".npy")])
    print(f"embedded {len(result)} of {total} images (dim {result.features.shape[1]}) from {args.source}")
    print(f"features: {npy} {list(result.features.shape)} float32")
    print(f"paths:    {txt}")
    print(f"failed:   {len(result.failed)}" + (" (not embedded):" if result.failed else ""))
    _report_failures(result.failed, sys.stdout)
    return 0


def _cmd_embed(args):
    if (args.source is None) == (args.texts is None):
        raise CLIError("give either SOURCE (a folder or a list of image paths) or --texts FILE, not "
                       + ("both" if args.source is not None else "neither"))
    if args.texts is not None:
        if args.workers > 1 or distributed.msrun_world_size() > 1:
            raise CLIError("--texts is embedded in one process; drop --workers (and do not start it under msrun)")
        if not os.path.isfile(args.texts):
            raise FileNotFoundError(f"text file {args.texts!r} not found")
        _output_files(args.output, "texts")
        model, _ = _load_model(args)
        return _embed_texts(args, model)

    if not os.path.exists(args.source):
        raise FileNotFoundError(f"{args.source!r} not found (SOURCE is a folder or a list of image paths)")
    npy, txt = _output_files(args.output, "paths")
    if launched_by_msrun():
        return _embed_images_as_rank(args, npy, txt)
    paths = _image_paths(args.source)
    if args.workers > 1:  # the inputs are checked: run this command line as N processes under msrun
        _resolve_device(args.device)
        _model_file(args.model, args.download_root, _progress(args))  # a model name is downloaded once, here
        log_dir = args.log_dir or npy[:-len(".npy")] + ".logs"
        return launch(args.workers, args.argv, log_dir, args.master_port, args.cluster_timeout)
    model, preprocess = _load_model(args)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="skipped .* images that could not be read")
        result = extract_image_features(model, preprocess, paths, batch_size=args.batch_size,
                                        num_workers=args.num_workers, progress=_progress(args),
                                        normalize=args.normalize)
    return _save_embedding(args, result, npy, txt)


# the options of embed that shape its result: the same on every rank
_EMBED_SETTINGS = ("source", "output", "model", "download_root", "device", "mode", "eager", "batch_size",
                   "normalize")


def _shard_file(npy, rank, world_size):
    """Where one rank leaves its share for rank 0 (beside the output; removed by rank 0)."""
    return f"{npy[:-len('.npy')]}.rank{rank}-of-{world_size}.npz"


def _embed_images_as_rank(args, npy, txt):
    """``embed`` as one of the processes started by msrun.

    Every rank lists the same images and cuts them into batches of ``--batch-size`` in order; rank
    ``r`` of ``W`` encodes batches ``r, r + W, r + 2W, ...`` and leaves its features, their
    positions in the list and its unreadable files in a shard file; after a barrier rank 0 puts
    the shards together in list order, writes PREFIX.npy and PREFIX.paths.txt as one process
    would, removes the shards and prints the summary."""
    distributed.check_workers(args.workers)
    target, device_id = _resolve_device(args.device)
    ctx = distributed.init(target, device_id)  # first: msrun's scheduler process ends in here
    ctx.check_same({name: getattr(args, name) for name in _EMBED_SETTINGS}, "settings")
    paths = _image_paths(args.source)
    ctx.check_same({"images": paths}, "lists of images (SOURCE changed while they started)")
    model, preprocess = _load_model(args)
    size, world = args.batch_size, ctx.world_size
    mine = [i for b in range(ctx.rank, -(-len(paths) // size), world)
            for i in range(b * size, min((b + 1) * size, len(paths)))]  # positions in `paths`
    features, rows, failed = _extract_rows(model, preprocess, [paths[i] for i in mine], batch_size=size,
                                           num_workers=args.num_workers, progress=_progress(args),
                                           normalize=args.normalize)
    shard = {"features": features,
             "rows": np.asarray([mine[j] for j in rows], np.int64),
             "paths": np.asarray([paths[mine[j]] for j in rows], np.str_),
             "failed_rows": np.asarray([mine[j] for j, _ in failed], np.int64),
             "failed_messages": np.asarray([message for _, message in failed], np.str_)}
    write_atomically(_shard_file(npy, ctx.rank, world), lambda f: np.savez(f, **shard), binary=True)
    ctx.barrier()
    if not ctx.is_main:
        return 0  # rank 0 reports for the job
    shards = [_shard_file(npy, rank, world) for rank in range(world)]
    try:
        result = _join_shards(shards, paths)
    finally:
        for path in shards:
            if os.path.exists(path):
                os.remove(path)
    return _save_embedding(args, result, npy, txt)


def _join_shards(shards, paths):
    """The ``ImageFeatures`` of ``paths`` from the ranks' shard files, in list order."""
    rows, features, failed = [], [], []
    for shard in shards:
        with np.load(shard, allow_pickle=False) as part:
            if part["paths"].tolist() != [paths[i] for i in part["rows"].tolist()]:
                raise RuntimeError(f"{shard} was written for another list of images")
            rows.append(part["rows"])
            features.append(part["features"])
            failed.extend(zip(part["failed_rows"].tolist(), part["failed_messages"].tolist()))
    rows = np.concatenate(rows)
    seen = np.sort(np.concatenate([rows, np.asarray([i for i, _ in failed], np.int64)]))
    if not np.array_equal(seen, np.arange(len(paths))):
        raise RuntimeError(f"the shards {', '.join(shards)} do not hold every image once")
    order = np.argsort(rows, kind="stable")
    features = np.concatenate(features)[order]
    failed.sort()
    return ImageFeatures(features, [paths[i] for i in rows[order]], [(paths[i], m) for i, m in failed])


# ---------------------------------------------------------------------------------------------
# eval

def _looks_like_cifar(folder):
    for where in (folder,) + tuple(os.path.join(folder, sub) for sub in _CIFAR_SUBFOLDERS):
        if any(os.path.isfile(os.path.join(where, name)) for name in _CIFAR_MARKERS):
            return True
    return False


def _dataset_format(args):
    fmt = args.dataset_format
    if args.task == "retrieval":
        if fmt is None:
            caption_file = args.captions or args.dataset
            fmt = "csv" if caption_file.lower().endswith(".csv") else "flickr8k"
        if fmt not in _CAPTION_FORMATS:
            raise CLIError(f"--task retrieval reads captions (--dataset-format flickr8k or csv), not {fmt}")
        return fmt
    if not os.path.exists(args.dataset):
        raise FileNotFoundError(f"dataset {args.dataset!r} not found")
    if not os.path.isdir(args.dataset):
        raise CLIError(f"--task {args.task} needs a dataset folder (CIFAR or ImageFolder); "
                       f"{args.dataset!r} is a file")
    if fmt is None:
        fmt = "cifar" if _looks_like_cifar(args.dataset) else "imagefolder"
    if fmt not in _CLASSIFICATION_FORMATS:
        raise CLIError(f"--task {args.task} reads a classification dataset (--dataset-format cifar or "
                       f"imagefolder), not {fmt}")
    return fmt


def _load_split(args, fmt, split, explicit):
    """``ClassificationData`` of one split. An ImageFolder split is the sub-folder ``split``;
    when the split was not asked for explicitly and that sub-folder does not exist, the
    dataset folder itself."""
    if fmt == "cifar":
        return datasets.load_cifar(args.dataset, split=split)
    folder = os.path.join(args.dataset, split)
    if not os.path.isdir(folder):
        if explicit:
            raise FileNotFoundError(f"ImageFolder split {split!r}: no folder {folder!r}")
        folder = args.dataset
    return datasets.load_image_folder(folder)


def _classification_features(args, model, preprocess, data):
    """``(features [N, D], labels [N], failed)`` of a ``ClassificationData``."""
    if data.images is not None:  # CIFAR, in memory
        import mindspore.dataset as ds

        dataset = ds.GeneratorDataset(datasets.ImageSource(data), column_names=["image", "label"], shuffle=False)
        result = extract_image_features(model, preprocess, dataset, batch_size=args.batch_size,
                                        num_workers=args.num_workers, progress=_progress(args), column="image")
        return result.features, data.labels, []
    result = _image_features(args, model, preprocess, list(data.paths), len(data))
    label_of = dict(zip(data.paths, data.labels))
    labels = np.asarray([label_of[path] for path in result.paths], dtype=np.int64)
    _warn_skipped(result.failed, len(data))
    return result.features, labels, result.failed


def _zero_shot_names(args, fmt, data):
    """``(class names, templates, prompt set name or None)`` for zero-shot evaluation."""
    prompt_set = None
    if args.prompt_set is not None:
        prompt_set = get_prompt_set(args.prompt_set)
    elif fmt == "cifar" and len(data.classnames) in (10, 100):
        prompt_set = get_prompt_set(f"cifar{len(data.classnames)}")
    if prompt_set is not None:
        if len(prompt_set.classnames) != len(data.classnames):
            raise CLIError(f"prompt set {prompt_set.name!r} has {len(prompt_set.classnames)} classes but the "
                           f"dataset has {len(data.classnames)}")
        classnames, templates = list(prompt_set.classnames), list(prompt_set.templates)
    else:
        classnames, templates = [name.replace("_", " ") for name in data.classnames], [DEFAULT_TEMPLATE]
    if args.templates is not None:
        templates = list(args.templates)
    return classnames, templates, prompt_set.name if prompt_set is not None else None


def _failed_json(failed):
    return [{"path": path, "error": message} for path, message in failed]


def _eval_zero_shot(args, fmt, report):
    split = args.split or "test"
    data = _load_split(args, fmt, split, explicit=args.split is not None)
    classnames, templates, prompt_set = _zero_shot_names(args, fmt, data)
    model, preprocess = _load_model(args)
    weights = zero_shot_classifier(model, classnames, templates, batch_size=args.batch_size,
                                   progress=_progress(args))
    features, labels, failed = _classification_features(args, model, preprocess, data)
    metrics = evaluation.zero_shot_evaluate(features, labels, weights, ks=(1, 5))
    report.update(split=split, num_images=int(len(labels)), num_classes=len(classnames),
                  prompt_set=prompt_set, num_templates=len(templates), metrics=metrics,
                  failed=_failed_json(failed))
    header = (f"zero-shot: {len(labels)} images, {len(classnames)} classes, {len(templates)} template"
              f"{'s' if len(templates) != 1 else ''}" + (f" (prompt set {prompt_set})" if prompt_set else ""))
    return header, list(metrics.items())


def _align_labels(train, test):
    """Test labels re-indexed to the training classes (ImageFolder splits may differ)."""
    if list(test.classnames) == list(train.classnames):
        return test.labels
    index = {name: i for i, name in enumerate(train.classnames)}
    unknown = [name for name in test.classnames if name not in index]
    if unknown:
        raise CLIError(f"the test split has classes that the training split lacks: {', '.join(unknown)}")
    mapping = np.asarray([index[name] for name in test.classnames], dtype=np.int64)
    return mapping[test.labels]


def _eval_linear_probe(args, fmt, report):
    split = args.split or "test"
    if split == args.train_split:
        raise CLIError(f"--split {split} is also the training split; evaluate on another split")
    train = _load_split(args, fmt, args.train_split, explicit=True)
    test = _load_split(args, fmt, split, explicit=True)
    test_labels = _align_labels(train, test)
    test = datasets.ClassificationData(labels=test_labels, classnames=train.classnames, images=test.images,
                                       paths=test.paths)
    model, preprocess = _load_model(args)
    train_x, train_y, train_failed = _classification_features(args, model, preprocess, train)
    test_x, test_y, test_failed = _classification_features(args, model, preprocess, test)
    result = evaluation.linear_probe(train_x, train_y, test_x, test_y, val_fraction=args.val_fraction,
                                     seed=args.seed, ks=(1, 5))
    metrics = {"top1": result["test_top1"], "top5": result["test_top5"],
               "mean_per_class_recall": result["mean_per_class_recall"]}
    report.update(split=split, train_split=args.train_split, num_train=int(len(train_y)),
                  num_images=int(len(test_y)), num_classes=len(train.classnames), C=result["C"],
                  val_accuracy=result["val_accuracy"], metrics=metrics,
                  sweep=[{"C": s["C"], "val_accuracy": s["val_accuracy"]} for s in result["sweep"]],
                  failed=_failed_json(train_failed + test_failed))
    header = (f"linear-probe: {len(train_y)} training images ({args.train_split}), {len(test_y)} test images "
              f"({split}), {len(train.classnames)} classes")
    rows = [("C", result["C"]), ("val_accuracy", result["val_accuracy"])] + list(metrics.items())
    return header, rows


def _caption_inputs(args):
    """``(caption file, images root)`` of a retrieval evaluation."""
    if os.path.isdir(args.dataset):
        if args.captions is None:
            raise CLIError(f"--dataset {args.dataset!r} is a folder; name the caption file with --captions")
        caption_file, root = args.captions, args.dataset
    elif os.path.isfile(args.dataset):
        if args.captions is not None:
            raise CLIError("--captions is for a --dataset folder; --dataset already names the caption file")
        caption_file, root = args.dataset, os.path.dirname(args.dataset)
    else:
        raise FileNotFoundError(f"dataset {args.dataset!r} not found")
    if not os.path.isfile(caption_file):
        raise FileNotFoundError(f"caption file {caption_file!r} not found")
    if args.images_root is not None:
        root = args.images_root
    if not os.path.isdir(root or "."):
        raise FileNotFoundError(f"images folder {root!r} not found")
    return caption_file, root


def _eval_retrieval(args, fmt, report):
    caption_file, root = _caption_inputs(args)
    if fmt == "flickr8k":
        pairs = datasets.read_flickr8k_captions(caption_file, split_file=args.split_file)
    else:
        if args.split_file is not None:
            raise CLIError("--split-file is for Flickr8k token files, not CSV captions")
        pairs = datasets.read_caption_csv(caption_file, path_column=args.path_column,
                                          caption_column=args.caption_column)
    if not pairs:
        raise CLIError(f"{caption_file}: no captions" + (" of the images in --split-file" if args.split_file else ""))
    image_paths, captions, text_to_image = datasets.group_captions(pairs, image_root=root or None)
    model, preprocess = _load_model(args)
    images = _image_features(args, model, preprocess, image_paths, len(image_paths))
    _warn_skipped(images.failed, len(image_paths))
    row_of = {path: row for row, path in enumerate(images.paths)}
    keep = [image_paths[i] in row_of for i in text_to_image]
    captions = [caption for caption, k in zip(captions, keep) if k]
    text_to_image = np.asarray([row_of[image_paths[i]] for i, k in zip(text_to_image, keep) if k], dtype=np.int64)
    texts = extract_text_features(model, captions, batch_size=args.batch_size, progress=_progress(args),
                                  truncate=True)
    metrics = evaluation.retrieval_recall(images.features, texts, text_to_image, ks=(1, 5, 10))
    report.update(captions=caption_file, images_root=root, num_images=len(images), num_captions=len(captions),
                  metrics=metrics, failed=_failed_json(images.failed))
    header = f"retrieval: {len(images)} images, {len(captions)} captions"
    return header, list(metrics.items())


# options of eval that only one task reads: a mistake when given to another
_TASK_OPTIONS = {
    "prompt_set": ("--prompt-set", ("zero-shot",)),
    "templates": ("--templates", ("zero-shot",)),
    "captions": ("--captions", ("retrieval",)),
    "images_root": ("--images-root", ("retrieval",)),
    "split_file": ("--split-file", ("retrieval",)),
}


def _cmd_eval(args):
    for attribute, (option, tasks) in _TASK_OPTIONS.items():
        if getattr(args, attribute) is not None and args.task not in tasks:
            raise CLIError(f"{option} is for --task {' or '.join(tasks)}, not {args.task}")
    if args.task == "retrieval" and args.split is not None:
        raise CLIError("--split is for zero-shot and linear-probe; retrieval keeps the images of --split-file")
    fmt = _dataset_format(args)
    report = {"task": args.task, "model": args.model, "dataset": args.dataset, "dataset_format": fmt}
    run = {"zero-shot": _eval_zero_shot, "linear-probe": _eval_linear_probe, "retrieval": _eval_retrieval}[args.task]
    header, rows = run(args, fmt, report)
    print(f"{header}  [model {args.model}, dataset {args.dataset} ({fmt})]")
    for line in _format_metrics(rows, plain=("C",)):
        print(line)
    if args.json_out:
        _write_json(args.json_out, report)
        print(f"wrote {args.json_out}")
    return 0


# ---------------------------------------------------------------------------------------------
# convert

def _cmd_convert(args):
    source, output = args.pth_path, args.output
    if source in _MODELS:
        # downloaded here, so that --quiet reaches the progress bar; clip.convert.convert's naming kept
        source = _model_file(source, args.download_root, _progress(args))
        output = output or os.path.basename(default_output_path(source, args.format))
    path = convert(source, output, args.download_root, args.model_name, args.format, args.quick_gelu)
    print(f"saved {path}")
    return 0


# ---------------------------------------------------------------------------------------------
# entry point

def _one_line(error):
    """The message of ``error`` on one line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], str) and len(lines) == 1:
        lines = [error.args[0]]  # KeyError quotes its message
    if not lines:
        return type(error).__name__
    if len(lines) > _MAX_MESSAGE_LINES:
        return f"{lines[0]} ({len(lines) - 1} more lines; run with --debug)"
    return " ".join(lines)


_EXPECTED_ERRORS = (CLIError, OSError, ValueError, RuntimeError, KeyError)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Python warnings as one ``warning: ...`` line on stderr."""
    print(f"warning: {_one_line(message)}", file=sys.stderr)


def main(argv=None):
    """Run ``python -m clip`` with ``argv`` (default ``sys.argv[1:]``) and return the exit code.

    argparse exits (``SystemExit`` with code 2) on arguments it rejects; every other error is
    printed as one ``error: ...`` line on stderr and returns 1 (``--debug``: with the traceback).
    """
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # the command line as given (``--workers N`` runs it again under msrun)
    with warnings.catch_warnings():
        if not args.debug:
            warnings.showwarning = _show_warning
        try:
            return args.run(args)
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # the reader of stdout went away (e.g. '| head'): stop quietly
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())  # so that the final flush does not fail again
            except (OSError, ValueError, AttributeError):
                pass
            return 141  # 128 + SIGPIPE, as a shell reports a process stopped by a broken pipe
        except Exception as error:  # noqa: BLE001 - the CLI reports every failure as one line
            if args.debug:
                traceback.print_exc()
            if isinstance(error, _EXPECTED_ERRORS):
                print(f"error: {_one_line(error)}", file=sys.stderr)
            else:
                print(f"error: {type(error).__name__}: {_one_line(error)} (an unexpected error; "
                      "run with --debug for the traceback)", file=sys.stderr)
            return 1
