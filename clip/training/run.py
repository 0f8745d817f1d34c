"""A complete training run: model, data, optimiser, schedule, evaluation, checkpoints, logs.

:func:`train` is what ``python -m clip train`` calls; it takes a :class:`TrainConfig`::

    from clip.training.run import TrainConfig, train
    summary = train(TrainConfig(model="ViT-B/32", train_data="train.csv", val_data="val.csv",
                                epochs=2, batch_size=64, output="runs/ft"))

The output folder::

    DIR/config.json            the run's settings
    DIR/metrics.jsonl          one JSON object per line: {"kind": "train", "step", "epoch", "loss", "lr",
                               "logit_scale", "grad_norm", "samples_per_s"} per step, {"kind": "eval",
                               "step", "epoch", <metrics>} per evaluation
    DIR/checkpoints/step_<N>/  training checkpoints (clip.training.save_checkpoint)
    DIR/checkpoints/LATEST     the name of the newest checkpoint (what --resume latest reads)
    DIR/final.ckpt             the final weights: clip.load("DIR/final.ckpt")

Resuming (``resume="latest"`` or a checkpoint folder) restores weights, AdamW's moments and step
and the data position (epoch and batch); the data order and augmentation depend only on the
seed, the epoch and the sample (see :mod:`clip.training.data`), so a resumed run computes the
same steps as an uninterrupted one. ``max_steps`` stops a run early (after saving a checkpoint).

Data parallelism: started by ``msrun`` (directly, or through ``python -m clip train --workers N``),
every process runs :func:`train` with the same settings. :func:`clip.distributed.init` joins the
job; ``batch_size`` is per process (open_clip's meaning; or give ``global_batch_size``); each
global batch of ``batch_size * world_size`` pairs (the same batches one process would take with
that batch size) is split across the ranks, the contrastive loss compares every rank's features
with all the others' (:class:`~clip.training.ClipLoss`) and the gradients are averaged, so ``N``
processes compute the steps of one process with ``N`` times the batch. Only rank 0 writes (config,
metrics, checkpoints, the final weights) and evaluates; every rank can resume from the checkpoints
(the output folder must be visible to all of them). BatchNorm layers that train their statistics
(a ResNet from scratch) normalise each process's share separately (no synchronised BatchNorm).
"""
import dataclasses
import hashlib
import json
import os
import re
import sys
import time
from collections import OrderedDict
from typing import Optional

import numpy as np
from mindspore import Tensor
from tqdm import tqdm

from .. import distributed
from .._atomic import write_atomically
from ..clip import _resolve_device, _select_device, load
from ..convert import save_state_dict
from ..model import CLIP, VisionTransformer
from ..prompts import get_prompt_set
from .checkpoint import resume as resume_checkpoint
from .checkpoint import save_checkpoint
from .data import CaptionDataset, read_data
from .evaluate import Evaluator
from .optim import create_optimizer
from .precision import MixedPrecisionTrainer, check_precision
from .schedule import make_schedule
from .trainable import enable_grad_checkpointing, init_parameters, lock_image, lock_text, make_trainable
from .trainer import Trainer

__all__ = ["TrainConfig", "train", "NAMED_CONFIGS", "model_config", "parse_every", "latest_checkpoint",
           "per_process_batch_size"]

_TEXT = dict(context_length=77, vocab_size=49408)
#: small architectures for training from scratch (``--config NAME``); OpenAI's vocabulary and context
NAMED_CONFIGS = {
    "vit-tiny": dict(embed_dim=64, image_resolution=64, vision_layers=2, vision_width=128, vision_patch_size=16,
                     transformer_width=128, transformer_heads=2, transformer_layers=2, **_TEXT),
    "rn-tiny": dict(embed_dim=64, image_resolution=64, vision_layers=(1, 1, 1, 1), vision_width=32,
                    vision_patch_size=None, transformer_width=128, transformer_heads=2, transformer_layers=2,
                    **_TEXT),
    "vit-small": dict(embed_dim=256, image_resolution=128, vision_layers=6, vision_width=384,
                      vision_patch_size=16, transformer_width=256, transformer_heads=4, transformer_layers=6,
                      **_TEXT),
}


@dataclasses.dataclass
class TrainConfig:
    """The settings of a run (the options of ``python -m clip train``; see the README)."""

    output: str
    train_data: str
    model: Optional[str] = None               # a model name or a .ckpt/.pt file (fine-tuning)
    config: Optional[str] = None              # a NAMED_CONFIGS name or a JSON file of CLIP(**config) (from scratch)
    val_data: Optional[str] = None
    data_format: str = "csv"
    csv_separator: str = "\t"
    csv_img_key: str = "filepath"
    csv_caption_key: str = "title"
    train_split: Optional[str] = None         # Flickr split lists
    val_split: Optional[str] = None
    images_root: Optional[str] = None
    epochs: int = 1
    batch_size: Optional[int] = None          # pairs per step and process (default 64)
    global_batch_size: Optional[int] = None   # or: pairs per step over all processes (divided among them)
    lr: Optional[float] = None                # default: the preset's (5e-4 from scratch, 1e-5 fine-tuning)
    wd: Optional[float] = None                # default: the preset's (0.2 / 0.1)
    beta1: Optional[float] = None
    beta2: Optional[float] = None
    eps: Optional[float] = None
    warmup: int = 0
    schedule: str = "cosine"
    accum_freq: int = 1
    grad_clip_norm: Optional[float] = None
    lock_image: bool = False
    lock_image_unlocked_groups: int = 0
    lock_text: bool = False
    lock_text_unlocked_layers: int = 0
    precision: str = "fp32"
    grad_checkpointing: bool = False
    patch_dropout: float = 0.0  # ViT only: fraction of patch tokens dropped in training (open_clip)
    zeroshot_prompt_set: Optional[str] = None  # templates for zero-shot and ImageFolder captions
    eval_every: str = "1epoch"
    save_every: str = "1epoch"
    resume: Optional[str] = None
    seed: int = 0
    device: Optional[str] = None
    mode: str = "graph"                       # graph: compiled training step; pynative: eager
    num_workers: int = 2                      # decoding threads (per process)
    workers: int = 1                          # processes: 1, or the number msrun started
    download_root: Optional[str] = None
    max_steps: Optional[int] = None
    progress: bool = True


def parse_every(text, steps_per_epoch: int) -> Optional[int]:
    """``"100"`` -> every 100 steps, ``"2epoch"`` / ``"2epochs"`` -> every 2 epochs (in steps),
    ``"0"``/``"never"``/``None`` -> never."""
    if text is None or str(text).strip().lower() in ("0", "never", "none", ""):
        return None
    match = re.fullmatch(r"\s*(\d+)\s*(epochs?|ep|steps?)?\s*", str(text).lower())
    if not match:
        raise ValueError(f"cannot read the interval {text!r}: use a number of steps (100) or of epochs (1epoch)")
    n = int(match.group(1))
    if n == 0:
        return None
    return n * steps_per_epoch if (match.group(2) or "").startswith("ep") else n


def model_config(config: str) -> dict:
    """``CLIP(**config)`` arguments: a :data:`NAMED_CONFIGS` name or a JSON file."""
    if config in NAMED_CONFIGS:
        return dict(NAMED_CONFIGS[config])
    if not os.path.isfile(config):
        raise FileNotFoundError(f"--config {config!r}: neither a named config ({', '.join(NAMED_CONFIGS)}) "
                                "nor a JSON file")
    try:
        with open(config, encoding="utf-8") as f:
            values = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"--config {config}: not valid JSON ({error})") from None
    if not isinstance(values, dict):
        raise ValueError(f"--config {config}: expected a JSON object of CLIP arguments")
    expected = set(NAMED_CONFIGS["vit-tiny"])
    unknown, missing = set(values) - expected, expected - set(values)
    if unknown or missing:
        raise ValueError(f"--config {config}: unknown CLIP arguments {sorted(unknown)}, missing {sorted(missing)}")
    if isinstance(values["vision_layers"], list):
        values["vision_layers"] = tuple(values["vision_layers"])
    return values


def latest_checkpoint(output: str) -> str:
    """The newest checkpoint folder of the run in ``output`` (``checkpoints/LATEST``)."""
    marker = os.path.join(output, "checkpoints", "LATEST")
    if not os.path.isfile(marker):
        raise FileNotFoundError(f"--resume latest: no checkpoint in {output} (no checkpoints/LATEST)")
    with open(marker, encoding="utf-8") as f:
        return os.path.join(output, "checkpoints", f.read().strip())


def _build_model(cfg: TrainConfig):
    """``(model, fresh)``: a loaded model made trainable, or a new one from a config."""
    if (cfg.model is None) == (cfg.config is None):
        raise ValueError("give exactly one of --model (fine-tune) and --config (train from scratch)")
    if cfg.model is not None:
        model, _ = load(cfg.model, device=cfg.device, eager=True, download_root=cfg.download_root)
        make_trainable(model, freeze_batch_norm_stats=True)
        return model, False
    config = model_config(cfg.config)
    target, device_id = _resolve_device(cfg.device)
    _select_device(target, device_id)
    model = init_parameters(CLIP(**config), seed=cfg.seed)
    make_trainable(model, freeze_batch_norm_stats=False)
    return model, True


def _templates(cfg):
    if cfg.zeroshot_prompt_set:
        return list(get_prompt_set(cfg.zeroshot_prompt_set).templates)
    return ["a photo of a {}."]


def _read(cfg, path, split):
    return read_data(path, cfg.data_format, cfg.csv_separator, cfg.csv_img_key, cfg.csv_caption_key,
                     split_file=split, image_root=cfg.images_root, templates=_templates(cfg))


class _MetricsLog:
    """Appends JSON lines to ``metrics.jsonl`` (flushed at once, so a killed run keeps its lines)."""

    def __init__(self, path, truncate_after_step=None):
        self.path = path
        if truncate_after_step is not None and os.path.isfile(path):  # resuming: drop lines of lost steps
            with open(path, encoding="utf-8") as f:
                kept = [line for line in f if line.strip() and json.loads(line)["step"] <= truncate_after_step]
            write_atomically(path, lambda f: f.writelines(kept))

    def write(self, record):
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def _save(cfg, trainer, epoch, batch, skipped):
    folder = os.path.join(cfg.output, "checkpoints")
    name = f"step_{trainer.step:08d}"
    save_checkpoint(os.path.join(folder, name), trainer, extra={"epoch": epoch, "batch": batch,
                                                                 "skipped": dict(skipped)})
    write_atomically(os.path.join(folder, "LATEST"), lambda f: f.write(name + "\n"))


def _write_final(cfg, model):
    path = os.path.join(cfg.output, "final.ckpt")
    save_state_dict(OrderedDict((n, p.asnumpy().astype(np.float32)) for n, p in model.parameters_and_names()), path,
                    architecture=model.architecture)
    return path


def per_process_batch_size(cfg: TrainConfig, world_size: int) -> int:
    """Pairs per step and process: ``batch_size`` (default 64), or ``global_batch_size`` divided by
    the number of processes (which must divide it)."""
    if cfg.batch_size is not None and cfg.global_batch_size is not None:
        raise ValueError("give --batch-size (per process) or --global-batch-size, not both")
    if cfg.global_batch_size is None:
        return 64 if cfg.batch_size is None else cfg.batch_size
    if cfg.global_batch_size < 1 or cfg.global_batch_size % world_size:
        raise ValueError(f"--global-batch-size {cfg.global_batch_size} does not split into {world_size} equal "
                         "per-process batches")
    return cfg.global_batch_size // world_size


def _check_processes(cfg: TrainConfig):
    """``workers`` against how this process was started; the batch size for that many processes."""
    if cfg.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {cfg.workers}")
    distributed.check_workers(cfg.workers)
    if not distributed.launched_by_msrun() and cfg.workers > 1:
        raise ValueError(f"train() runs in this one process; for {cfg.workers} processes use "
                         f"'python -m clip train --workers {cfg.workers} ...' or start it under msrun")
    return per_process_batch_size(cfg, distributed.msrun_world_size())


def _weights_digest(model) -> str:
    """SHA-256 of every parameter's bytes: the ranks must start from the same weights."""
    digest = hashlib.sha256()
    for name, p in model.parameters_and_names():
        digest.update(name.encode("utf-8"))
        digest.update(np.ascontiguousarray(p.asnumpy()).tobytes())
    return digest.hexdigest()


def train(cfg: TrainConfig) -> dict:
    """Run the training described by ``cfg``; returns ``{"final", "steps", "last_metrics", "eval",
    "skipped", "rank", "world_size"}``. Errors in the inputs raise ``ValueError`` /
    ``FileNotFoundError`` with one line. Under ``msrun`` this process trains as one of the job's
    ranks (see the module docstring); only rank 0 writes files."""
    for name in ("epochs", "accum_freq"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    batch_size = _check_processes(cfg)
    if batch_size % cfg.accum_freq:
        what = f"--batch-size {batch_size}" if cfg.global_batch_size is None else \
            f"the batch size per process {batch_size} (--global-batch-size {cfg.global_batch_size})"
        raise ValueError(f"{what} is not divisible by --accum-freq {cfg.accum_freq}")
    if batch_size < 2:
        raise ValueError("--batch-size must be >= 2 (the contrastive loss needs negatives)")
    if cfg.schedule not in ("cosine", "const", "constant"):
        raise ValueError(f"unknown --schedule {cfg.schedule!r}; use cosine or const")
    if cfg.mode not in ("graph", "pynative"):
        raise ValueError(f"unknown --mode {cfg.mode!r}; use graph or pynative")
    if not os.path.exists(cfg.train_data):
        raise FileNotFoundError(f"--train-data {cfg.train_data!r} not found")
    if cfg.val_data is not None and not os.path.exists(cfg.val_data):
        raise FileNotFoundError(f"--val-data {cfg.val_data!r} not found")
    parse_every(cfg.eval_every, 1), parse_every(cfg.save_every, 1)  # malformed intervals fail now
    target, device_id = _resolve_device(cfg.device)
    check_precision(cfg.precision, target)
    resume_from = None
    if cfg.resume:
        resume_from = latest_checkpoint(cfg.output) if cfg.resume == "latest" else cfg.resume
        if not os.path.isdir(resume_from):
            raise FileNotFoundError(f"--resume {cfg.resume!r}: no such checkpoint folder")
    # under msrun: join the job now (the scheduler process ends in here), before anything is read
    # or written; every rank must have been started with the same settings
    ctx = distributed.init(target, device_id)
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "progress"}
    ctx.check_same(settings, "settings")
    main = ctx.is_main
    global_batch = batch_size * ctx.world_size

    train_pairs = _read(cfg, cfg.train_data, cfg.train_split)
    if len(train_pairs) < global_batch:
        raise ValueError(f"--train-data has {len(train_pairs)} usable pairs, fewer than one batch of {global_batch}")
    val_pairs = _read(cfg, cfg.val_data, cfg.val_split) if cfg.val_data and main else None

    model, fresh = _build_model(cfg)
    check_precision(cfg.precision)
    if ctx.distributed:
        ctx.check_same({"weights": _weights_digest(model)}, "initial weights (--model files or --seed)")
    resolution = model.visual.input_resolution
    data = CaptionDataset(train_pairs, resolution, model.context_length, train=True, seed=cfg.seed,
                          num_workers=cfg.num_workers)
    steps_per_epoch = data.steps_per_epoch(batch_size, ctx.world_size)
    if steps_per_epoch == 0:
        raise ValueError(f"--train-data has {len(data)} usable pairs, fewer than one batch of {global_batch}")
    total_steps = steps_per_epoch * cfg.epochs
    eval_every = parse_every(cfg.eval_every, steps_per_epoch)
    save_every = parse_every(cfg.save_every, steps_per_epoch)

    if cfg.lock_image:
        lock_image(model, cfg.lock_image_unlocked_groups)
    if cfg.lock_text:
        lock_text(model, cfg.lock_text_unlocked_layers)
    if cfg.grad_checkpointing:
        enable_grad_checkpointing(model)
    if cfg.patch_dropout:
        if not 0 < cfg.patch_dropout < 1:
            raise ValueError(f"--patch-dropout must be in [0, 1), got {cfg.patch_dropout}")
        if not hasattr(model.visual, "patch_dropout"):
            raise ValueError("--patch-dropout applies to ViT models only")
        model.visual.patch_dropout = float(cfg.patch_dropout)
    betas = None
    if cfg.beta1 is not None or cfg.beta2 is not None:
        from .optim import optimizer_defaults
        default = optimizer_defaults(model)["betas"]
        betas = (cfg.beta1 if cfg.beta1 is not None else default[0], cfg.beta2 if cfg.beta2 is not None else default[1])
    optimizer = create_optimizer(model, preset="pretrain" if fresh else "finetune", lr=cfg.lr,
                                 weight_decay=cfg.wd, betas=betas, eps=cfg.eps)
    base_lr = optimizer.param_groups[0]["lr"]
    schedule = make_schedule("cosine", base_lr=base_lr, warmup_steps=cfg.warmup, total_steps=total_steps) \
        if cfg.schedule == "cosine" else make_schedule("constant", base_lr=base_lr, warmup_steps=cfg.warmup)
    kwargs = dict(schedule=schedule, accum_freq=cfg.accum_freq, grad_clip_norm=cfg.grad_clip_norm,
                  jit=cfg.mode == "graph", rank=ctx.rank, world_size=ctx.world_size)
    trainer = (Trainer(model, optimizer, **kwargs) if cfg.precision == "fp32"
               else MixedPrecisionTrainer(model, optimizer, precision=cfg.precision, **kwargs))
    if main and (isinstance(model.visual, VisionTransformer) or cfg.mode == "graph"):
        model.compile_towers(image=isinstance(model.visual, VisionTransformer), text=True)  # evaluation

    if main:
        os.makedirs(cfg.output, exist_ok=True)
    start_epoch, start_batch = 0, 0
    resumed_step = None
    if resume_from is not None:
        state = resume_checkpoint(resume_from, trainer)
        start_epoch, start_batch = int(state["extra"]["epoch"]), int(state["extra"]["batch"])
        data.skipped.update(state["extra"].get("skipped", {}))
        resumed_step = trainer.step
    log, evaluator = None, None
    if main:
        write_atomically(os.path.join(cfg.output, "config.json"),
                         lambda f: json.dump({**settings, "world_size": ctx.world_size, "batch_size_per_process":
                                              batch_size, "global_batch_size": global_batch,
                                              "total_steps": total_steps, "steps_per_epoch": steps_per_epoch,
                                              "train_pairs": len(data), "skipped_rows": dict(train_pairs.skipped)},
                                             f, indent=1))
        log = _MetricsLog(os.path.join(cfg.output, "metrics.jsonl"),
                          truncate_after_step=resumed_step if cfg.resume else -1)
        if val_pairs is not None and eval_every is not None:
            evaluator = Evaluator(val_pairs, resolution, model.context_length, templates=_templates(cfg),
                                  retrieval=cfg.data_format != "imagefolder", num_workers=cfg.num_workers)

    last, last_eval, finished = {}, {}, False
    stop_at = total_steps if cfg.max_steps is None else min(total_steps, cfg.max_steps)
    bar = tqdm(total=stop_at, initial=trainer.step, unit="step", desc="train", disable=not (cfg.progress and main),
               dynamic_ncols=True)

    def evaluate(epoch):
        nonlocal last_eval
        metrics = evaluator(model)
        last_eval = {"kind": "eval", "step": trainer.step, "epoch": epoch, **metrics}
        log.write(last_eval)
        if cfg.progress:
            bar.write("eval step {}: {}".format(trainer.step, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())),
                      file=sys.stderr)

    try:
        for epoch in range(start_epoch, cfg.epochs):
            trainer.epoch = epoch
            first = start_batch if epoch == start_epoch else 0
            tick = time.perf_counter()
            batches = data.batches(epoch, batch_size, num_shards=ctx.world_size, shard_id=ctx.rank, start=first)
            for batch, (images, tokens) in enumerate(batches, start=first):
                if trainer.step >= stop_at:
                    break
                # unreadable images made the batch smaller: every rank keeps as many rows as the
                # smallest share (the gathered features must line up), a multiple of accum_freq
                rows = ctx.min(len(images)) if ctx.distributed else len(images)
                keep = rows - rows % cfg.accum_freq
                if keep < 2:
                    continue
                images, tokens = images[:keep], tokens[:keep]
                metrics = trainer.train_step(Tensor(images), Tensor(tokens))
                now = time.perf_counter()
                last = {"kind": "train", "step": trainer.step, "epoch": epoch, **metrics,
                        "samples_per_s": len(images) * ctx.world_size / max(now - tick, 1e-9)}
                tick = now
                bar.update(1)
                bar.set_postfix(loss=f"{last['loss']:.4f}", lr=f"{last['lr']:.2e}",
                                scale=f"{last['logit_scale']:.1f}", sps=f"{last['samples_per_s']:.1f}")
                done_epoch = batch + 1 == steps_per_epoch
                position = (epoch + 1, 0) if done_epoch else (epoch, batch + 1)
                if not main:
                    continue
                log.write(last)
                if evaluator is not None and trainer.step % eval_every == 0:
                    evaluate(epoch)
                if (save_every is not None and trainer.step % save_every == 0) or trainer.step == stop_at:
                    _save(cfg, trainer, *position, data.skipped)
            if trainer.step >= stop_at:
                break
        finished = cfg.max_steps is None or trainer.step < cfg.max_steps
    finally:
        bar.close()
    finished = finished or trainer.step >= total_steps
    if evaluator is not None and last_eval.get("step") != trainer.step and finished:
        evaluate(cfg.epochs - 1)
    final = _write_final(cfg, model) if finished and main else None
    return {"final": final, "steps": trainer.step, "last_metrics": last, "eval": last_eval,
            "skipped": {**dict(train_pairs.skipped), **dict(data.skipped)}, "finished": finished,
            "rank": ctx.rank, "world_size": ctx.world_size}
