"""``python -m clip train``: the options of :class:`clip.training.run.TrainConfig` on the command line.

``clip.cli`` registers the subcommand with :func:`add_train_parser`; errors follow the rest of the
command line (argparse's exit code 2 for malformed options, one ``error: ...`` line and exit code 1
for missing files, empty data sets and other bad input).
"""
import argparse
import os

from ..clip import _resolve_device
from ..distributed import add_launch_arguments, launch, launched_by_msrun
from .trainer import prefer_host_blocking_run
from .._argtypes import (non_negative_float as _non_negative_float, non_negative_int as _non_negative_int,
                         positive_float as _positive_float, positive_int as _positive_int)

__all__ = ["add_train_parser", "run_train"]


def _separator(text):
    text = {"\\t": "\t", "tab": "\t", "comma": ","}.get(text, text)
    if len(text) != 1:
        raise argparse.ArgumentTypeError(f"expected one character (or 'tab'), got {text!r}")
    return text


def add_train_parser(commands, parents=()):
    """Add the ``train`` subcommand to ``commands`` (an argparse sub-parser collection)."""
    from .data import DATA_FORMATS
    from .run import NAMED_CONFIGS

    p = commands.add_parser(
        "train", parents=list(parents), help="train or fine-tune CLIP on image-caption data",
        description="Train CLIP from scratch (--config) or fine-tune it (--model) with the contrastive loss, "
                    "AdamW and a cosine schedule, evaluating zero-shot accuracy and retrieval on --val-data.")
    g = p.add_argument_group("model")
    g.add_argument("--model", metavar="NAME_OR_PATH", help="fine-tune this model (a name or a .ckpt/.pt file)")
    g.add_argument("--config", metavar="NAME_OR_JSON",
                   help=f"train a new model from random weights: {', '.join(NAMED_CONFIGS)} or a JSON file of "
                        "CLIP(**config) arguments")
    g = p.add_argument_group("data")
    g.add_argument("--train-data", required=True, metavar="PATH", help="CSV/TSV file, Flickr token file or image folder")
    g.add_argument("--val-data", metavar="PATH", help="validation data in the same format (evaluation)")
    g.add_argument("--data-format", choices=DATA_FORMATS, default="csv", help="layout of the data (default: csv)")
    g.add_argument("--csv-separator", type=_separator, default="\t", metavar="CHAR",
                   help="CSV field separator (default: tab, as open_clip)")
    g.add_argument("--csv-img-key", default="filepath", metavar="COLUMN", help="image path column (default: filepath)")
    g.add_argument("--csv-caption-key", default="title", metavar="COLUMN", help="caption column (default: title)")
    g.add_argument("--train-split", metavar="FILE", help="flickr: list of the training images (Flickr_8k.trainImages.txt)")
    g.add_argument("--val-split", metavar="FILE", help="flickr: list of the validation images")
    g.add_argument("--images-root", metavar="DIR", help="flickr: folder of the images (default: beside the token file)")
    g.add_argument("--num-workers", type=_positive_int, default=2, metavar="N",
                   help="decoding threads per process (default: 2)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=_positive_int, default=1)
    batch = g.add_mutually_exclusive_group()
    batch.add_argument("--batch-size", type=_positive_int, metavar="N",
                       help="pairs per step and process (default: 64)")
    batch.add_argument("--global-batch-size", type=_positive_int, metavar="N",
                       help="pairs per step over all processes (divided equally among them)")
    g.add_argument("--max-steps", type=_positive_int, metavar="N", help="stop after N steps (checkpoint saved)")
    g.add_argument("--lr", type=_positive_float, help="peak learning rate (default: 5e-4 with --config, 1e-5 with --model)")
    g.add_argument("--wd", type=_non_negative_float, help="weight decay (default: 0.2 with --config, 0.1 with --model)")
    g.add_argument("--beta1", type=_non_negative_float)
    g.add_argument("--beta2", type=_non_negative_float)
    g.add_argument("--eps", type=_positive_float)
    g.add_argument("--warmup", type=_non_negative_int, default=0, metavar="STEPS", help="linear warm-up steps (default: 0)")
    g.add_argument("--schedule", choices=("cosine", "const"), default="cosine", help="learning-rate schedule")
    g.add_argument("--accum-freq", type=_positive_int, default=1, metavar="K",
                   help="exact gradient accumulation over K micro-batches (default: 1)")
    g.add_argument("--grad-clip-norm", type=_positive_float, metavar="NORM", help="clip the global gradient norm")
    g.add_argument("--lock-image", action="store_true", help="freeze the image tower (LiT)")
    g.add_argument("--lock-image-unlocked-groups", type=_non_negative_int, default=0, metavar="N",
                   help="with --lock-image: leave the last N layer groups trainable")
    g.add_argument("--lock-text", action="store_true", help="freeze the text tower")
    g.add_argument("--lock-text-unlocked-layers", type=_non_negative_int, default=0, metavar="N",
                   help="with --lock-text: leave the last N layer groups trainable")
    g.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32",
                   help="fp16/bf16: mixed precision (matrix products in low precision, fp32 master weights)")
    g.add_argument("--grad-checkpointing", action="store_true", help="recompute transformer blocks in backward")
    g.add_argument("--patch-dropout", type=float, default=0.0, metavar="P",
                   help="ViT: drop this fraction of patch tokens in training (open_clip's patch dropout; default 0)")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("evaluation, checkpoints, runtime")
    g.add_argument("--zeroshot-prompt-set", metavar="NAME",
                   help="templates for zero-shot evaluation and ImageFolder captions (default: 'a photo of a {}.')")
    g.add_argument("--eval-every", default="1epoch", metavar="N|Nepoch", help="evaluate every N steps or N epochs")
    g.add_argument("--save-every", default="1epoch", metavar="N|Nepoch", help="checkpoint every N steps or N epochs")
    g.add_argument("--output", required=True, metavar="DIR", help="output folder")
    g.add_argument("--resume", metavar="PATH|latest", help="continue from a checkpoint folder, or the newest in --output")
    g.add_argument("--device", help="Ascend, GPU or CPU (default: the best available)")
    g.add_argument("--mode", choices=("graph", "pynative"), default="graph",
                   help="graph: the training step is compiled (default); pynative: everything eager")
    add_launch_arguments(p, "train with N processes on this machine: starts msrun with N workers, which run this "
                            "command", "OUTPUT/logs")
    p.set_defaults(run=run_train)
    return p


def start_workers(args, argv) -> int:
    """``--workers N`` outside msrun: run this same command line as N processes under msrun."""
    from .run import TrainConfig, per_process_batch_size

    fields = set(TrainConfig.__dataclass_fields__)
    per_process_batch_size(TrainConfig(**{k: v for k, v in vars(args).items() if k in fields}), args.workers)
    log_dir = args.log_dir or os.path.join(args.output, "logs")
    return launch(args.workers, argv, log_dir, args.master_port, args.cluster_timeout)


def run_train(args) -> int:
    """Run ``python -m clip train`` with parsed ``args``; prints a summary, returns the exit code."""
    from .run import TrainConfig, train

    if (args.model is None) == (args.config is None):
        raise ValueError("give exactly one of --model (fine-tune) and --config (train from scratch)")
    if args.workers > 1 and not launched_by_msrun():
        return start_workers(args, args.argv)
    fields = set(TrainConfig.__dataclass_fields__)
    values = {k: v for k, v in vars(args).items() if k in fields}
    values["progress"] = not args.quiet
    prefer_host_blocking_run(_resolve_device(args.device)[0])  # this program's process: before any graph runs
    summary = train(TrainConfig(**values))
    if summary["rank"] != 0:  # rank 0 reports for the job
        return 0
    skipped = ", ".join(f"{n} {why}" for why, n in summary["skipped"].items() if n) or "nothing"
    print(f"trained {summary['steps']} steps; skipped: {skipped}")
    if summary["eval"]:
        print("last evaluation: " + ", ".join(f"{k} {v:.4g}" for k, v in summary["eval"].items()
                                              if k not in ("kind", "step", "epoch")))
    if summary["final"]:
        print(f"saved {summary['final']}")
    else:
        print(f"stopped at step {summary['steps']} (--max-steps); continue with --resume latest")
    return 0
