"""One optimisation step of CLIP: forward in training mode, gradients, clipping, AdamW, clamp.

A data loop drives it::

    trainer = Trainer(model, create_optimizer(model), schedule=make_schedule("cosine", ...))
    for epoch in range(epochs):
        trainer.epoch = epoch
        for images, texts in batches:          # [N, 3, R, R] float32, [N, n_ctx] int32
            metrics = trainer.train_step(images, texts)

Gradient accumulation (``accum_freq = k``) is exact, as open_clip's ``--accum-freq``: the batch
of ``N = k * m`` pairs is split into ``k`` micro-batches; a first pass computes the features of
every micro-batch without gradients; then, for each micro-batch, its features are computed again
with gradients and put in place of its cached rows, the loss of the whole batch is computed and
its gradient added up. Every parameter of the towers gets the gradient of the loss of the full
batch of ``N``; only ``m`` images and texts are held with activations at a time. Unlike
open_clip, the gradient of ``logit_scale`` (which the loss uses directly, not through the
features) is taken in the first micro-step only, so it is not counted ``k`` times.
With BatchNorm in training mode (a ResNet trained with ``freeze_batch_norm_stats=False``), each
micro-batch is normalised with its own statistics, so accumulation matches ``k`` separate
micro-batches there; the moving statistics are updated once per micro-batch (the cache pass
leaves them as they were).
"""
import math
import os
from collections import OrderedDict

import numpy as np
import mindspore as ms
from mindspore import Tensor, ops

from ..model import infer_config
from ._inplace import assign
from .loss import ClipLoss
from .optim import clamp_logit_scale, clip_by_global_norm, create_optimizer
from .schedule import describe_schedule
from .trainable import batch_norm_cells, is_frozen_batch_norm, set_train_mode

__all__ = ["Trainer", "normalize", "HOST_BLOCKING_RUN", "prefer_host_blocking_run"]

# MindSpore 2.10 runs a compiled graph on its own threads while the calling thread busy-waits for the
# result (runtime::AsyncRQueue::Wait spins): on a CPU the waiting thread takes a core from the
# kernels (perf: 40 % of the process's samples in that wait on 2 cores). With this variable set before
# the first graph runs, the graph runs on the calling thread instead (RN50 training step at batch 16,
# 2 cores: 7.7-8.5 s -> 6.6-7.5 s). It is read once, when the runtime starts.
HOST_BLOCKING_RUN = "MS_DEV_HOST_BLOCKING_RUN"


def prefer_host_blocking_run(target: str) -> bool:
    """Set :data:`HOST_BLOCKING_RUN` to ``1`` in this process's environment when training on the CPU
    (``target == "CPU"``) and the user has not set it; returns whether it is set now. It takes effect
    only if no MindSpore graph has run in the process yet. ``python -m clip train`` calls this at
    start; :class:`Trainer` never changes the environment itself (a program using the library
    calls this, or exports the variable, before its first MindSpore computation)."""
    if target == "CPU":
        os.environ.setdefault(HOST_BLOCKING_RUN, "1")
    return os.environ.get(HOST_BLOCKING_RUN, "") not in ("", "0")

STATE_FORMAT = "clip-mindspore-training/1"


def normalize(x):
    """Rows scaled to unit L2 norm, as ``CLIP.construct`` does. ``[N, D] -> [N, D]``"""
    return x / x.norm(dim=-1, keepdim=True)


class Trainer:
    """Holds a CLIP model, its loss and optimiser, and performs training steps.

    Args:
        model: a CLIP prepared by :func:`clip.training.make_trainable` (and locked if wanted).
        optimizer: an :class:`clip.training.AdamW` over the model's trainable parameters; default
            :func:`clip.training.create_optimizer` ``(model)`` (the pre-training preset).
        loss: default :class:`clip.training.ClipLoss` ``(rank, world_size)``.
        schedule: ``lr(step)`` (:mod:`clip.training.schedule`), applied before every update; ``None``
            keeps the optimiser's rates.
        accum_freq: micro-batches per step (exact accumulation, see the module docstring).
        grad_clip_norm: clip the global gradient norm to this value; ``None`` does not clip.
        rank, world_size: data parallelism. With ``world_size > 1`` the gradients and the loss are
            averaged over processes (one ``AllReduce``) after accumulation, so every process holds
            the gradient and the loss of the global batch; MindSpore's communication must be
            initialised (:func:`clip.distributed.init` under ``msrun``). Each process passes its
            share of every global batch (rows ``rank * B`` to ``(rank + 1) * B``).
        jit: compile the gradient computations with ``mindspore.jit`` (much faster than PyNative).
            Configure the model (locks, BatchNorm) before creating the trainer: the compiled graphs
            keep the configuration they were built with.

    ``trainer.step`` is the number of updates done, ``trainer.epoch`` is set by the data loop
    (saved in checkpoints).
    """

    def __init__(self, model, optimizer=None, loss=None, schedule=None, accum_freq: int = 1,
                 grad_clip_norm: float = None, rank: int = 0, world_size: int = 1, jit: bool = True):
        if accum_freq < 1:
            raise ValueError(f"accum_freq must be >= 1, got {accum_freq}")
        self.model = model
        self.optimizer = optimizer if optimizer is not None else create_optimizer(model)
        self.loss = loss if loss is not None else ClipLoss(rank, world_size)
        self.schedule = schedule
        self.accum_freq = accum_freq
        self.grad_clip_norm = grad_clip_norm
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self._check_parameters()
        params = self.optimizer.parameters
        # BatchNorm statistics that training mode updates; the feature cache pass must not move them
        self._moving_statistics = [p for _, bn in batch_norm_cells(model) if not is_frozen_batch_norm(bn)
                                   for name, p in bn.parameters_and_names(expand=False)
                                   if name.rsplit(".", 1)[-1].startswith("moving_")]
        self._all_reduce = ops.AllReduce(ops.ReduceOp.SUM) if world_size > 1 else None

        # the towers themselves: encode_image / encode_text add what serves inference (input checks
        # that read values back, batch padding, text trimming), which has no place in a training graph
        # (padding rows would also enter BatchNorm's batch statistics); inputs are checked in
        # loss_and_grads instead
        image_tower, text_tower = model._compute_image_features, model._compute_text_features

        def features(images, texts):  # -> 2 x [n, D], L2-normalised
            return normalize(image_tower(images)), normalize(text_tower(texts))

        loss_fn = self.loss

        def batch_loss(images, texts):
            image_features, text_features = features(images, texts)
            return loss_fn(image_features, text_features, model.logit_scale)

        def micro_batch_loss(images, texts, cached_images, cached_texts, live_rows, first):
            # the loss of the whole batch, with this micro-batch's rows ([m, D]) computed live and
            # the others ([k * m, D], cached) constant; live_rows: [k * m, 1] bool, first: [] bool
            image_features, text_features = features(images, texts)  # [m, D]
            k = cached_images.shape[0] // image_features.shape[0]
            all_images = ops.where(live_rows, ops.tile(image_features, (k, 1)), cached_images)
            all_texts = ops.where(live_rows, ops.tile(text_features, (k, 1)), cached_texts)
            # logit_scale's own gradient is taken once per step, in the first micro-step
            scale = ops.where(first, model.logit_scale, ops.stop_gradient(model.logit_scale))
            return loss_fn(all_images, all_texts, scale)

        compile_ = ms.jit if jit else (lambda f: f)
        self._features = compile_(features)
        self._batch_grad = compile_(ms.value_and_grad(batch_loss, None, params))
        self._micro_batch_grad = compile_(ms.value_and_grad(micro_batch_loss, None, params))

    def _check_parameters(self):
        names = {id(p): n for n, p in self.model.parameters_and_names()}
        for param, name in zip(self.optimizer.parameters, self.optimizer.param_names):
            if id(param) not in names:
                raise ValueError(f"the optimiser's parameter {name} is not a parameter of the model")
            if not param.requires_grad:
                raise ValueError(f"the optimiser's parameter {names[id(param)]} is locked (requires_grad=False)")
        in_optimizer = {id(p) for p in self.optimizer.parameters}
        left_out = [n for n, p in self.model.parameters_and_names() if p.requires_grad and id(p) not in in_optimizer]
        if left_out:
            raise ValueError(f"trainable parameters missing from the optimiser: {left_out[:10]}; create the "
                             "optimiser after locking, or set requires_grad=False on them")

    @property
    def step(self) -> int:
        """Optimiser updates done so far."""
        return self.optimizer.step_count

    @property
    def param_names(self):
        """Names of the trained parameters, in the order of the gradients."""
        return list(self.optimizer.param_names)

    # -- gradients -------------------------------------------------------------------------------
    def loss_and_grads(self, images, texts):
        """``(loss, grads)`` of one batch in training mode, accumulated over ``accum_freq``
        micro-batches and averaged over processes; ``grads`` follows :attr:`param_names`.
        Nothing is updated (BatchNorm moving statistics in training mode excepted)."""
        _check_batch(self.model, images, texts)
        set_train_mode(self.model, True)
        if self.accum_freq == 1:
            loss, grads = self._batch_grad(images, texts)
        else:
            loss, grads = self._accumulated(images, texts)
        if self._all_reduce is not None:
            loss, grads = self._average_over_processes(loss, grads)
        return loss, tuple(grads)

    def _average_over_processes(self, loss, grads):
        """``loss`` and ``grads`` averaged over the processes, in one AllReduce of them all (one
        flat vector): the loss of the global batch and its gradient."""
        parts = [loss.reshape(1)] + [g.reshape(-1) for g in grads]
        sizes = [int(p.shape[0]) for p in parts]
        total = self._all_reduce(ops.cat([p.astype(ms.float32) for p in parts])) / self.world_size
        pieces = ops.split(total, sizes)
        loss = pieces[0].reshape(()).astype(loss.dtype)
        return loss, tuple(p.reshape(g.shape).astype(g.dtype) for p, g in zip(pieces[1:], grads))

    def _accumulated(self, images, texts):
        k, n = self.accum_freq, images.shape[0]
        if n % k or texts.shape[0] != n:
            raise ValueError(f"a batch of {n} images and {texts.shape[0]} texts does not split into "
                             f"accum_freq={k} equal micro-batches")
        m = n // k
        micro = [(images[j * m:(j + 1) * m], texts[j * m:(j + 1) * m]) for j in range(k)]
        saved = [p.asnumpy() for p in self._moving_statistics]
        cached = [self._features(i, t) for i, t in micro]  # k x ([m, D], [m, D]), no gradients
        for param, value in zip(self._moving_statistics, saved):
            assign(param, value)
        cached_images = ops.stop_gradient(ops.cat([c[0] for c in cached]))  # [k * m, D]
        cached_texts = ops.stop_gradient(ops.cat([c[1] for c in cached]))
        loss, total = None, None
        for j, (micro_images, micro_texts) in enumerate(micro):
            live = np.zeros((n, 1), np.bool_)
            live[j * m:(j + 1) * m] = True
            value, grads = self._micro_batch_grad(micro_images, micro_texts, cached_images, cached_texts,
                                                  Tensor(live), Tensor(j == 0))
            loss = value if loss is None else loss
            total = grads if total is None else tuple(a + b for a, b in zip(total, grads))
        return loss, total

    # -- the step --------------------------------------------------------------------------------
    def train_step(self, images, texts) -> dict:
        """One optimiser update on a batch: ``images`` ``[N, 3, R, R]`` float, ``texts``
        ``[N, n_ctx]`` int token ids (``N`` divisible by ``accum_freq``).

        Returns ``{"loss", "lr", "grad_norm" (before clipping), "logit_scale" (exp, after the
        clamp), "step" (updates done, this one included)}`` as Python numbers."""
        lr = None
        if self.schedule is not None:
            lr = float(self.schedule(self.step))
            self.optimizer.set_lr(lr)
        loss, grads = self.loss_and_grads(images, texts)
        grads, grad_norm = clip_by_global_norm(grads, self.grad_clip_norm)
        self.optimizer.update(grads)
        clamp_logit_scale(self.model)
        return {"loss": float(loss.asnumpy()),
                "lr": lr if lr is not None else self.optimizer.param_groups[0]["lr"],
                "grad_norm": float(grad_norm.asnumpy()),
                "logit_scale": math.exp(float(self.model.logit_scale.asnumpy())),
                "step": self.step}

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue exactly: ``model`` (MindSpore names -> arrays, BatchNorm
        statistics included), ``optimizer`` (moments and step), ``optimizer_groups``, ``step``,
        ``epoch``, ``schedule`` (its description), ``config`` (the ``CLIP(...)`` arguments),
        ``trainable`` (trained parameter names), ``frozen_batch_norm``, ``accum_freq``,
        ``grad_clip_norm``."""
        return {
            "format": STATE_FORMAT,
            **self.state_dict_header(),
            "model": OrderedDict((name, p.asnumpy()) for name, p in self.model.parameters_and_names()),
            "optimizer": self.optimizer.state_dict(),
            "optimizer_groups": self.optimizer.hyper_parameters(),
            "step": self.step,
            "epoch": self.epoch,
        }

    def load_state_dict(self, state: dict, strict: bool = True):
        """Restore :meth:`state_dict`'s output into this trainer's model and optimiser, in place.
        The architecture, the trained parameters and the frozen BatchNorms must be the same; with
        ``strict`` the schedule, ``accum_freq`` and ``grad_clip_norm`` must be too (they decide
        the steps to come)."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a training state of this library (format {state.get('format')!r})")
        mine = self.state_dict_header()
        saved = dict(state)
        if set(saved["config"]) < set(mine["config"]):  # saved before the whole architecture was
            saved["config"] = {**mine["config"], **saved["config"]}  # recorded: the inferred part
        for key in ("config", "trainable", "frozen_batch_norm") + (
                ("schedule", "accum_freq", "grad_clip_norm") if strict else ()):
            if _jsonable(saved[key]) != _jsonable(mine[key]):
                raise ValueError(f"the saved training state has another {key}:\n  saved: {state[key]}\n"
                                 f"  this trainer: {mine[key]}")
        _load_weights_in_place(self.model, state["model"])
        self.optimizer.load_state_dict(state["optimizer"], state["optimizer_groups"])
        self.epoch = int(state["epoch"])
        if self.step != int(state["step"]):
            raise ValueError(f"inconsistent state: step {state['step']}, optimiser step {self.step}")

    def state_dict_header(self) -> dict:
        """:meth:`state_dict` without the arrays (cheap). ``config`` is the model's architecture
        (``model.architecture``: activation and head counts included), else inferred from the weights."""
        config = getattr(self.model, "architecture", None)
        if config is None:
            config = infer_config(OrderedDict((name, p) for name, p in self.model.parameters_and_names()))
        return {"config": _jsonable(config), "trainable": self.param_names,
                "frozen_batch_norm": [name for name, bn in batch_norm_cells(self.model) if is_frozen_batch_norm(bn)],
                "schedule": describe_schedule(self.schedule), "accum_freq": self.accum_freq,
                "grad_clip_norm": self.grad_clip_norm}


def _load_weights_in_place(model, weights):
    """Copy ``{name: array}`` into the model's parameters, strictly (every parameter, no other entry,
    same sizes), in place: graphs the trainer compiled before keep seeing the parameters."""
    params = dict(model.parameters_and_names())
    missing = [n for n in params if n not in weights]
    unexpected = [n for n in weights if n not in params]
    if missing or unexpected:
        raise ValueError(f"the saved weights do not fit the model: missing {missing[:10]}, "
                         f"unexpected {unexpected[:10]}")
    for name, param in params.items():
        assign(param, weights[name])


def _check_batch(model, images, texts):
    """Refuse a batch the model cannot take, with the expected shapes in the message."""
    res = model.visual.input_resolution
    if images.ndim != 4 or tuple(images.shape[1:]) != (3, res, res) or not ops.is_floating_point(images):
        raise ValueError(f"images must be a float tensor [N, 3, {res}, {res}], got {images.dtype} "
                         f"{tuple(images.shape)}")
    if texts.ndim != 2 or not 2 <= texts.shape[1] <= model.context_length or ops.is_floating_point(texts) \
            or texts.dtype == ms.bool_:
        raise ValueError(f"texts must be integer token ids [N, n_ctx] with 2 <= n_ctx <= {model.context_length}, "
                         f"got {texts.dtype} {tuple(texts.shape)}")
    if images.shape[0] != texts.shape[0] or images.shape[0] < 2:
        raise ValueError(f"need as many images as texts, at least 2; got {images.shape[0]} and {texts.shape[0]}")
    low, high = int(texts.min()), int(texts.max())
    if low < 0 or high >= model.vocab_size:
        raise ValueError(f"token ids must be in [0, {model.vocab_size}), got [{low}, {high}]")


def _jsonable(value):
    """Tuples as lists, NumPy scalars as Python numbers (what a JSON round trip gives)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
