"""Training and fine-tuning CLIP in MindSpore.

The pieces, one module each, after open_clip's training design:

- :mod:`~clip.training.loss`: :class:`ClipLoss`, the symmetric contrastive loss over all processes'
  features (:class:`GatherFeatures` / :class:`AllGatherFeatures`: the gather with its gradient);
- :mod:`~clip.training.optim`: :class:`AdamW` (``torch.optim.AdamW``'s update), the weight-decay
  rule and groups, per-family defaults and the pre-training / fine-tuning presets, gradient
  clipping, the ``logit_scale`` clamp;
- :mod:`~clip.training.schedule`: learning rate as a function of the step (cosine or constant,
  with linear warm-up);
- :mod:`~clip.training.trainable`: :func:`make_trainable`, BatchNorm freezing, LiT-style locks
  (:func:`lock_image`, :func:`lock_text`), :func:`init_parameters` for training from scratch,
  :func:`enable_grad_checkpointing`;
- :mod:`~clip.training.trainer`: :class:`Trainer`, one step at a time, with exact gradient
  accumulation;
- :mod:`~clip.training.checkpoint`: :func:`save_checkpoint` / :func:`resume`; the weights file
  loads with :func:`clip.load`;
- :mod:`~clip.training.wise_ft`: weight-space ensembles (:func:`wise_ft`);
- :mod:`~clip.training.data`: image-caption data (CSV/TSV, Flickr, ImageFolder) through
  ``mindspore.dataset``, seeded per-epoch shuffling, sharding hooks;
- :mod:`~clip.training.evaluate`: zero-shot accuracy and retrieval metrics during training;
- :mod:`~clip.training.precision`: fp16/bf16 mixed precision with dynamic loss scaling;
- :mod:`~clip.training.run` and :mod:`~clip.training.cli`: a complete run (``python -m clip train``).

Fine-tuning in a few lines::

    import clip
    from clip import training

    model, preprocess = clip.load("ViT-B/32")
    training.make_trainable(model)
    optimizer = training.create_optimizer(model, preset="finetune")
    schedule = training.make_schedule("cosine", base_lr=1e-5, warmup_steps=500, total_steps=10000)
    trainer = training.Trainer(model, optimizer, schedule=schedule)
    for images, texts in batches:
        metrics = trainer.train_step(images, texts)
    training.save_checkpoint("checkpoints/last", trainer)
"""
from .checkpoint import OPTIMIZER_FILE, STATE_FILE, WEIGHTS_FILE, load_checkpoint, resume, save_checkpoint
from .loss import GATHER_BACKWARDS, AllGatherFeatures, ClipLoss, GatherFeatures, gather_features
from .optim import (FAMILY_DEFAULTS, MAX_LOGIT_SCALE, NO_WEIGHT_DECAY, PRESETS, AdamW, clamp_logit_scale,
                    clip_by_global_norm, create_optimizer, exclude_from_weight_decay, model_family,
                    optimizer_defaults, param_groups)
from .schedule import constant_lr, cosine_lr, describe_schedule, make_schedule
from .trainable import (batch_norm_cells, enable_grad_checkpointing, freeze_batch_norm, image_groups, init_parameters,
                        is_frozen_batch_norm, lock_image, lock_text, make_trainable, set_train_mode, text_groups,
                        unfreeze_batch_norm)
from .trainer import HOST_BLOCKING_RUN, Trainer, normalize, prefer_host_blocking_run
from .wise_ft import interpolate_weights, wise_ft
from .data import CaptionDataset, CaptionedImages, read_csv_data, read_data, read_flickr_data, read_image_folder_data
from .evaluate import Evaluator
from .precision import MixedPrecisionTrainer
from .run import TrainConfig, train

__all__ = [
    # loss
    "ClipLoss", "GatherFeatures", "AllGatherFeatures", "gather_features", "GATHER_BACKWARDS",
    # optimiser
    "AdamW", "create_optimizer", "optimizer_defaults", "param_groups", "exclude_from_weight_decay",
    "model_family", "clip_by_global_norm", "clamp_logit_scale",
    "PRESETS", "FAMILY_DEFAULTS", "NO_WEIGHT_DECAY", "MAX_LOGIT_SCALE",
    # schedules
    "cosine_lr", "constant_lr", "make_schedule", "describe_schedule",
    # trainable model
    "make_trainable", "set_train_mode", "enable_grad_checkpointing", "init_parameters", "lock_image", "lock_text",
    "image_groups", "text_groups", "batch_norm_cells", "freeze_batch_norm", "unfreeze_batch_norm",
    "is_frozen_batch_norm",
    # the step
    "Trainer", "normalize", "HOST_BLOCKING_RUN", "prefer_host_blocking_run",
    # checkpoints
    "save_checkpoint", "load_checkpoint", "resume", "WEIGHTS_FILE", "OPTIMIZER_FILE", "STATE_FILE",
    # WiSE-FT
    "interpolate_weights", "wise_ft",
    # data, evaluation, mixed precision, complete runs
    "CaptionDataset", "CaptionedImages", "read_csv_data", "read_flickr_data", "read_image_folder_data", "read_data",
    "Evaluator", "MixedPrecisionTrainer", "TrainConfig", "train",
]
