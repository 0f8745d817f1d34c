"""Mixed-precision training (``--precision fp16|bf16``) for GPU and Ascend.

The weights and AdamW's moments stay float32 ("master weights"). The towers are wrapped by
``mindspore.amp.auto_mixed_precision(model, "auto", dtype)``: matrix products and convolutions
(MindSpore's ``auto_whitelist``) run in the low precision, LayerNorm, softmax, exp, norms and the
other operators of its ``auto_blacklist`` in float32; CLIP's own LayerNorm computes in float32 too.
The contrastive loss itself is computed in float32 (``ClipLoss`` casts the logits).

float16 has a narrow range, so its gradients are computed on the loss multiplied by a dynamic
scale (``mindspore.amp.DynamicLossScaler``: start at 2**16, halve on overflow, double after 2000
finite steps): the gradients are divided by the scale before clipping and AdamW, and a step whose
gradients are not finite is skipped (nothing updated, the scale halved). bfloat16 has float32's
range and needs no scaling.

On CPU (MindSpore 2.10) the float16 step runs (its kernels exist; useful to test the mechanism, not
faster), while bfloat16 fails at kernel selection: :func:`check_precision` refuses bf16 on CPU with
a one-line message.
"""
import math

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

from .loss import ClipLoss
from .optim import clamp_logit_scale, clip_by_global_norm
from .trainer import Trainer

__all__ = ["PRECISIONS", "check_precision", "ScaledLoss", "MixedPrecisionTrainer", "mixed_precision"]

#: ``--precision`` names -> compute dtype of the matrix products
AMP_LEVEL = "auto"
PRECISIONS = {"fp32": ms.float32, "fp16": ms.float16, "bf16": ms.bfloat16}


def check_precision(precision: str, device_target: str = None) -> str:
    """``precision`` if it can run on ``device_target`` (default: MindSpore's current target);
    raises ``ValueError`` for unknown names and for bf16 on CPU."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    target = device_target or ms.get_context("device_target")
    if precision == "bf16" and target == "CPU":
        raise ValueError("--precision bf16 needs a GPU or Ascend device: MindSpore's CPU backend has no bfloat16 "
                         "kernels for CLIP's training step; use --precision fp32 (or fp16) on CPU")
    return precision


def mixed_precision(model: nn.Cell, precision: str):
    """Run the matrix products of ``model``'s towers in ``precision`` (``"fp16"`` or ``"bf16"``),
    everything else in float32, in place (see the module docstring). Returns the model."""
    if precision == "fp32":
        return model
    dtype = PRECISIONS[precision]
    ms.amp.auto_mixed_precision(model.visual, AMP_LEVEL, dtype)
    ms.amp.auto_mixed_precision(model.transformer, AMP_LEVEL, dtype)
    return model


class ScaledLoss(nn.Cell):
    """``loss(image_features, text_features, logit_scale) * scale``; ``scale`` is a Parameter, so a
    compiled gradient graph sees every new value written with ``ops.assign``."""

    def __init__(self, loss: nn.Cell, scale: float = 2.0 ** 16):
        super().__init__()
        self.loss = loss
        self.rank, self.world_size = loss.rank, loss.world_size
        self.scale = Parameter(Tensor(scale, ms.float32), name="loss_scale", requires_grad=False)

    def construct(self, image_features, text_features, logit_scale):
        # the towers' outputs may be float16/bfloat16: the loss is computed in float32
        return self.loss(image_features.astype(ms.float32), text_features.astype(ms.float32),
                         logit_scale) * self.scale


class MixedPrecisionTrainer(Trainer):
    """:class:`~clip.training.Trainer` with the towers in ``precision`` and, for fp16, dynamic loss
    scaling (``scale_value``, ``scale_factor``, ``scale_window``: ``DynamicLossScaler``'s). Steps
    with non-finite gradients are skipped; ``train_step`` then reports ``"skipped": True``."""

    def __init__(self, model, optimizer=None, precision: str = "fp16", scale_value: float = 2.0 ** 16,
                 scale_factor: int = 2, scale_window: int = 2000, rank: int = 0, world_size: int = 1, **kwargs):
        if precision not in ("fp16", "bf16"):
            raise ValueError(f"MixedPrecisionTrainer is for fp16 or bf16, got {precision!r}")
        self.precision = precision
        mixed_precision(model, precision)
        self.scaler = ms.amp.DynamicLossScaler(scale_value, scale_factor, scale_window) \
            if precision == "fp16" else None
        loss = ScaledLoss(ClipLoss(rank, world_size), scale_value if self.scaler is not None else 1.0)
        super().__init__(model, optimizer, loss=loss, rank=rank, world_size=world_size, **kwargs)

    @property
    def loss_scale(self) -> float:
        """The current loss scale (1 for bf16)."""
        return float(self.loss.scale.asnumpy())

    def state_dict(self) -> dict:
        """As :meth:`Trainer.state_dict`, plus ``loss_scale``: the dynamic scaler's value and its
        count of finite steps since it last changed (``None`` for bf16), so a resumed fp16 run
        scales its losses as the uninterrupted run would."""
        state = super().state_dict()
        state["loss_scale"] = None if self.scaler is None else {
            "value": float(self.scaler.scale_value.asnumpy()), "counter": int(self.scaler.counter.asnumpy())}
        return state

    def load_state_dict(self, state: dict, strict: bool = True):
        """As :meth:`Trainer.load_state_dict`, and the loss scaler's state when it was saved."""
        super().load_state_dict(state, strict)
        saved = state.get("loss_scale")
        if self.scaler is not None and saved:
            ops.assign(self.scaler.scale_value, Tensor(saved["value"], ms.float32))
            ops.assign(self.scaler.counter, Tensor(saved["counter"], ms.int32))
            ops.assign(self.loss.scale, Tensor(saved["value"], ms.float32))

    def train_step(self, images, texts) -> dict:
        """As :meth:`Trainer.train_step`; gradients unscaled before clipping, the update skipped
        (and the scale reduced) when they are not finite."""
        lr = None
        if self.schedule is not None:
            lr = float(self.schedule(self.step))
            self.optimizer.set_lr(lr)
        scale = self.loss_scale
        loss, grads = self.loss_and_grads(images, texts)
        grads = tuple(g / scale for g in grads)
        finite = bool(ms.amp.all_finite(grads).asnumpy())
        if self.scaler is not None:
            self.scaler.adjust(Tensor(finite))
            ops.assign(self.loss.scale, self.scaler.scale_value.value())
        grads, grad_norm = clip_by_global_norm(grads, self.grad_clip_norm)
        if finite:
            self.optimizer.update(grads)
            clamp_logit_scale(self.model)
        return {"loss": float(loss.asnumpy()) / scale,
                "lr": lr if lr is not None else self.optimizer.param_groups[0]["lr"],
                "grad_norm": float(grad_norm.asnumpy()) if finite else math.inf,
                "logit_scale": math.exp(float(self.model.logit_scale.asnumpy())),
                "step": self.step, "skipped": not finite, "loss_scale": self.loss_scale}
