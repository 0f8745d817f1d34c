"""AdamW with decoupled weight decay, CLIP's parameter groups and hyper-parameter presets.

:class:`AdamW` computes what ``torch.optim.AdamW`` computes (the update of Loshchilov & Hutter:
the weights shrink by ``lr * weight_decay`` and take the bias-corrected Adam step). MindSpore
has two AdamW classes, but ``mindspore.mint.optim.AdamW`` has no CPU kernel ("The kernel
AdamW unregistered") and ``mindspore.experimental.optim.AdamW`` keeps an AMSGrad buffer for
every parameter and takes its learning rate from its own scheduler classes; this one is small,
runs anywhere, takes the learning rate of every step from a plain function
(:mod:`clip.training.schedule`) and names its state after the parameters, for checkpoints.

Weight decay applies to matrices only. :func:`exclude_from_weight_decay` is the one rule, that
of open_clip's training script: parameters with fewer than two dimensions (biases, LayerNorm
and BatchNorm gains and biases, ``logit_scale``, the ViT class embedding) and the positional
embeddings of the text tower and of the ViT are not decayed; the token embedding and every
weight matrix are.
"""
import math
from collections import OrderedDict

import numpy as np
import mindspore as ms
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops

from ..model import _MATMUL_NT, VisionTransformer
from ._inplace import assign

__all__ = [
    "AdamW", "NO_WEIGHT_DECAY", "exclude_from_weight_decay", "param_groups", "model_family",
    "optimizer_defaults", "create_optimizer", "PRESETS", "FAMILY_DEFAULTS",
    "clip_by_global_norm", "clamp_logit_scale", "MAX_LOGIT_SCALE", "moment_scales",
]

#: Parameters with two or more dimensions that are not decayed (open_clip's ``no_weight_decay``
#: of CLIP and of its ViT): the learned positional embeddings. ``visual.class_embedding`` is
#: 1-D and excluded by the dimension rule anyway; the ResNet's attention-pool positional
#: embedding is decayed, as in open_clip.
NO_WEIGHT_DECAY = ("positional_embedding", "visual.positional_embedding", "visual.class_embedding")

_NO_DECAY_LEAVES = ("gamma", "beta", "bias", "in_proj_bias", "moving_mean", "moving_variance")

#: Learning rate and weight decay of the two uses: CLIP's pre-training (the paper's and
#: open_clip's defaults) and fine-tuning a pre-trained model (a learning rate 50x lower and a
#: lighter decay, the usual range for full fine-tuning such as WiSE-FT's).
PRESETS = {
    "pretrain": dict(lr=5e-4, weight_decay=0.2),
    "finetune": dict(lr=1e-5, weight_decay=0.1),
}

#: Adam's betas and epsilon by image tower, as in the CLIP paper and open_clip: the ViTs
#: were trained with beta2 = 0.98, eps = 1e-6 and the ResNets with PyTorch's defaults.
FAMILY_DEFAULTS = {
    "vit": dict(betas=(0.9, 0.98), eps=1e-6),
    "resnet": dict(betas=(0.9, 0.999), eps=1e-8),
}

#: ``logit_scale`` is kept in ``[0, ln 100]``: the temperature never goes below 1/100.
MAX_LOGIT_SCALE = math.log(100.0)


def exclude_from_weight_decay(name: str, param) -> bool:
    """Whether the parameter ``name`` skips weight decay: fewer than two dimensions, a
    normalisation gain/bias, a bias, ``logit_scale``, or one of :data:`NO_WEIGHT_DECAY`."""
    leaf = name.rsplit(".", 1)[-1]
    return (len(param.shape) < 2 or leaf in _NO_DECAY_LEAVES or name == "logit_scale"
            or name in NO_WEIGHT_DECAY)


def param_groups(model: nn.Cell, weight_decay: float, exclude=exclude_from_weight_decay):
    """The trainable parameters of ``model`` (``requires_grad``) in two groups:
    ``[{"name": "no_decay", "params": [...], "weight_decay": 0.0},
    {"name": "decay", "params": [...], "weight_decay": weight_decay}]``, each in the model's order.
    ``exclude(name, param)`` decides (default :func:`exclude_from_weight_decay`)."""
    no_decay, decay = [], []
    for name, param in model.parameters_and_names():
        if param.requires_grad:
            (no_decay if exclude(name, param) else decay).append(param)
    return [{"name": "no_decay", "params": no_decay, "weight_decay": 0.0},
            {"name": "decay", "params": decay, "weight_decay": weight_decay}]


def model_family(model: nn.Cell) -> str:
    """``"vit"`` or ``"resnet"``: the kind of image tower of a CLIP model."""
    return "vit" if isinstance(model.visual, VisionTransformer) else "resnet"


def optimizer_defaults(model: nn.Cell, preset: str = "pretrain") -> dict:
    """``lr``, ``weight_decay``, ``betas`` and ``eps`` for ``model`` and a preset of :data:`PRESETS`."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
    return {**PRESETS[preset], **FAMILY_DEFAULTS[model_family(model)]}


def create_optimizer(model: nn.Cell, preset: str = "pretrain", lr: float = None, weight_decay: float = None,
                     betas=None, eps: float = None, exclude=exclude_from_weight_decay, fused: bool = None) -> "AdamW":
    """AdamW over the trainable parameters of ``model``, grouped by :func:`param_groups`.

    Defaults come from :func:`optimizer_defaults`: with ``preset="pretrain"`` lr 5e-4 and weight
    decay 0.2; with ``"finetune"`` lr 1e-5 and weight decay 0.1; betas (0.9, 0.98) and eps 1e-6
    for a ViT, (0.9, 0.999) and 1e-8 for a ResNet. Every value can be overridden. ``fused``: see
    :class:`AdamW`.
    Apply the locks (:func:`clip.training.lock_image`, ...) before creating the optimiser.
    """
    defaults = optimizer_defaults(model, preset)
    lr = defaults["lr"] if lr is None else lr
    weight_decay = defaults["weight_decay"] if weight_decay is None else weight_decay
    betas = defaults["betas"] if betas is None else tuple(betas)
    eps = defaults["eps"] if eps is None else eps
    names = {id(param): name for name, param in model.parameters_and_names()}
    groups = [dict(group, param_names=[names[id(p)] for p in group["params"]])
              for group in param_groups(model, weight_decay, exclude) if group["params"]]
    if not groups:
        raise ValueError("the model has no trainable parameters (every parameter is locked)")
    return AdamW(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, fused=fused)


def moment_scales(betas):
    """``(s1, s2)``: how much larger than PyTorch's the fused kernel's moments are for ``betas``.

    ``torch.optim.AdamW`` weighs the new gradient by ``1 - beta`` rounded to float32 once;
    MindSpore's ``AdamWeightDecay`` kernel computes ``1 - beta`` from the float32 ``beta``
    (0.999 -> 0.9999871e-3 where PyTorch uses 1.0000000e-3). Both moments are linear in that
    weight and start at zero, so the kernel's moments are PyTorch's times
    ``s = (1 - fl32(beta)) / fl32(1 - beta)``; the step's scalars absorb ``s`` exactly
    (:meth:`AdamW.update`). The written-out update keeps PyTorch's moments (scales 1)."""
    scales = []
    for beta in betas:
        kernel = np.float32(1.0) - np.float32(beta)  # what the kernel computes, in float32
        scales.append(float(kernel) / float(np.float32(1.0 - beta)))
    return tuple(scales)


class _AdamWGroup(nn.Cell):
    """The parameters of one group with their two moments, and the update applied to them."""

    def __init__(self, params, names, fused: bool):
        super().__init__(auto_prefix=False)
        self.params = ParameterTuple(params)
        self.exp_avg = ParameterTuple([Parameter(Tensor(np.zeros(p.shape, np.float32)), name=f"exp_avg.{n}",
                                                 requires_grad=False) for p, n in zip(params, names)])
        self.exp_avg_sq = ParameterTuple([Parameter(Tensor(np.zeros(p.shape, np.float32)), name=f"exp_avg_sq.{n}",
                                                    requires_grad=False) for p, n in zip(params, names)])
        self.update = self._fused if fused else self._written
        self._adam = ops.AdamWeightDecay()

    def _fused(self, grads, lr, beta1, beta2, eps, decay):
        # one pass over each tensor: m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2,
        # p <- p - lr (m / (sqrt(v) + eps) + decay p), in place; the scalars come from AdamW.update
        for i in range(len(self.params)):
            param = self.params[i]
            self._adam(param, self.exp_avg[i], self.exp_avg_sq[i], lr, beta1, beta2, eps, decay,
                       grads[i].astype(param.dtype))
        return True

    def _written(self, grads, decay, step_size, bias_correction2_sqrt, beta1, one_minus_beta1, beta2,
                 one_minus_beta2, eps):
        # decay = 1 - lr * weight_decay, step_size = lr / (1 - beta1 ** t),
        # bias_correction2_sqrt = sqrt(1 - beta2 ** t): float32 scalars computed on the host
        for i in range(len(self.params)):
            param, exp_avg, exp_avg_sq = self.params[i], self.exp_avg[i], self.exp_avg_sq[i]
            grad = grads[i].astype(param.dtype)
            exp_avg_new = exp_avg * beta1 + grad * one_minus_beta1
            exp_avg_sq_new = exp_avg_sq * beta2 + grad * grad * one_minus_beta2
            denom = ops.sqrt(exp_avg_sq_new) / bias_correction2_sqrt + eps
            ops.assign(exp_avg, exp_avg_new)
            ops.assign(exp_avg_sq, exp_avg_sq_new)
            ops.assign(param, param * decay - (exp_avg_new / denom) * step_size)
        return True


class AdamW(nn.Cell):
    """Adam with decoupled weight decay, the update of ``torch.optim.AdamW`` (no AMSGrad).

    For each parameter ``p`` with gradient ``g`` at update ``t = 1, 2, ...``::

        p <- p * (1 - lr * weight_decay)
        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g^2
        p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    Args:
        params: a list of Parameters, or of groups ``{"params": [...], ...}`` whose optional keys
            ``lr``, ``lr_scale`` (multiplies the scheduled rate; default 1), ``betas``, ``eps``,
            ``weight_decay``, ``name`` and ``param_names`` override the defaults below.
        lr, betas, eps, weight_decay: defaults for the groups.
        jit: run the update of each group as a compiled graph (``mindspore.jit``).
        fused: update each tensor with MindSpore's fused ``AdamWeightDecay`` kernel (one pass over
            the weights and moments instead of about ten; 2.6x faster for RN50's 100 M parameters on
            a CPU). ``None`` (default): on the CPU, where its formula was checked against PyTorch's;
            ``False`` everywhere else (the update written out in elementwise operations).

    The fused kernel has no bias correction and computes ``1 - beta`` from the float32 ``beta``;
    the step's learning rate, epsilon and decay are chosen so that the result is PyTorch's step
    (tested against a float64 AdamW to float32 rounding), and its moments are PyTorch's times the
    factors :attr:`moment_scale` ``[group] = (s1, s2)`` (:func:`moment_scales`; 1.0000002 and
    0.9999871 for betas (0.9, 0.999), 1 for the written-out update). Checkpoints store the moments
    as held, with these factors, so resuming is bit-exact.

    ``optimizer(grads)`` applies one update with the gradients ordered as ``optimizer.parameters``
    (the groups' parameters, concatenated). ``set_lr(lr)`` sets every group's rate to
    ``lr * lr_scale`` (what :class:`clip.training.Trainer` does with the schedule before each
    update). The moments are Parameters named ``exp_avg.<name>`` and ``exp_avg_sq.<name>``.
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, jit: bool = True, fused: bool = None):
        super().__init__(auto_prefix=False)
        params = list(params)
        if not params:
            raise ValueError("AdamW got no parameters")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups = []
        for i, group in enumerate(groups):
            group = dict(group)
            group["params"] = list(group["params"])
            group.setdefault("name", f"group{i}")
            group.setdefault("param_names", [p.name for p in group["params"]])
            group.setdefault("lr_scale", 1.0)
            group.setdefault("lr", lr * group["lr_scale"])
            group["betas"] = tuple(float(b) for b in group.get("betas", betas))
            group.setdefault("eps", eps)
            group.setdefault("weight_decay", weight_decay)
            if not 0.0 <= group["betas"][0] < 1.0 or not 0.0 <= group["betas"][1] < 1.0:
                raise ValueError(f"betas must be in [0, 1), got {group['betas']}")
            if group["eps"] < 0 or group["weight_decay"] < 0 or group["lr"] < 0:
                raise ValueError(f"lr, eps and weight_decay must be >= 0 (group {group['name']})")
            self.param_groups.append(group)
        all_params = [p for group in self.param_groups for p in group["params"]]
        if len({id(p) for p in all_params}) != len(all_params):
            raise ValueError("a parameter appears in more than one group")
        if fused is None:
            fused = ms.get_context("device_target") == "CPU"
        if fused and any(p.dtype != ms.float32 for p in all_params):
            raise ValueError("the fused AdamW update takes float32 parameters (train float32 master weights "
                             "with clip.training.make_trainable, or pass fused=False)")
        self.fused = bool(fused)
        self.param_names = [name for group in self.param_groups for name in group["param_names"]]
        # a plain list, not a CellList: a CellList would prefix the names of the model's parameters
        object.__setattr__(self, "groups", [_AdamWGroup(g["params"], g["param_names"], self.fused)
                                            for g in self.param_groups])
        self._updates = [ms.jit(cell.update) if jit else cell.update for cell in self.groups]
        self.step_count = 0  # updates applied so far

    @property
    def parameters(self):
        """The optimised Parameters, group after group (the order of the gradients)."""
        return tuple(p for cell in self.groups for p in cell.params)

    @property
    def exp_avg(self):
        """First moments as held, in the order of :attr:`parameters` (PyTorch's times ``moment_scale[g][0]``)."""
        return tuple(p for cell in self.groups for p in cell.exp_avg)

    @property
    def exp_avg_sq(self):
        """Second moments as held, in the order of :attr:`parameters` (PyTorch's times ``moment_scale[g][1]``)."""
        return tuple(p for cell in self.groups for p in cell.exp_avg_sq)

    @property
    def moment_scale(self):
        """Per group, ``(s1, s2)``: the held moments are PyTorch's times these factors."""
        return [moment_scales(g["betas"]) if self.fused else (1.0, 1.0) for g in self.param_groups]

    def set_lr(self, lr: float):
        """Set the learning rate of every group to ``lr * group["lr_scale"]``."""
        for group in self.param_groups:
            group["lr"] = float(lr) * group["lr_scale"]

    def construct(self, gradients):
        return self.update(gradients)

    def _step_scalars(self, group, t):
        """The float32 scalars of update ``t`` of ``group``, computed in double precision on the host."""
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        bias_correction1, bias_correction2_sqrt = 1.0 - beta1 ** t, math.sqrt(1.0 - beta2 ** t)
        if not self.fused:
            return (1.0 - lr * group["weight_decay"], lr / bias_correction1, bias_correction2_sqrt,
                    beta1, 1.0 - beta1, beta2, 1.0 - beta2, eps)
        # the kernel's step is  p - lr' * (m' / (sqrt(v') + eps') + decay' * p)  with m' = s1 m and
        # v' = s2 v (PyTorch's moments m, v); PyTorch's is
        # p (1 - lr wd) - lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps), which these scalars make it
        s1, s2 = moment_scales(group["betas"])
        root_s2 = math.sqrt(s2)
        kernel_lr = lr * root_s2 * bias_correction2_sqrt / (bias_correction1 * s1)
        kernel_eps = eps * root_s2 * bias_correction2_sqrt
        kernel_decay = lr * group["weight_decay"] / kernel_lr if kernel_lr > 0 else 0.0
        return kernel_lr, beta1, beta2, kernel_eps, kernel_decay

    def update(self, gradients):
        """Apply one update (what calling the optimiser does; a plain method, so it also runs when
        MindSpore's global mode is GRAPH_MODE, where calling a Cell compiles its ``construct``)."""
        gradients = tuple(gradients)
        if len(gradients) != len(self.param_names):
            raise ValueError(f"AdamW got {len(gradients)} gradients for {len(self.param_names)} parameters")
        self.step_count += 1
        start = 0
        for group, update in zip(self.param_groups, self._updates):
            end = start + len(group["params"])
            scalars = tuple(Tensor(x, ms.float32) for x in self._step_scalars(group, self.step_count))
            # mutable: the gradients are inputs of the compiled update, not constants baked into it
            update(ms.mutable(gradients[start:end]), *scalars)
            start = end
        return True

    # -- state, for checkpoints ------------------------------------------------------------------
    def hyper_parameters(self):
        """The groups without their Parameters: JSON-able dicts."""
        return [{k: (list(v) if isinstance(v, tuple) else v) for k, v in group.items() if k != "params"}
                for group in self.param_groups]

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """``exp_avg.<name>`` and ``exp_avg_sq.<name>`` for every parameter (as held), ``step``, and
        ``moment_scale``: ``[groups, 2]`` float64, the factors of the held moments over PyTorch's."""
        state = OrderedDict()
        for moments in (self.exp_avg, self.exp_avg_sq):
            for p in moments:
                state[p.name] = p.asnumpy()
        state["step"] = np.array(self.step_count, np.int64)
        state["moment_scale"] = np.array(self.moment_scale, np.float64)
        return state

    def load_state_dict(self, state, hyper_parameters=None):
        """Restore what :meth:`state_dict` returned (strictly: the same parameter names).
        ``hyper_parameters`` (from :meth:`hyper_parameters`) restores the groups' rates too.
        Moments saved with other factors (the other kind of update, or a state without
        ``moment_scale``, which holds PyTorch's moments) are rescaled to this optimiser's."""
        expected = [p.name for p in self.exp_avg] + [p.name for p in self.exp_avg_sq] + ["step"]
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in set(expected) | {"moment_scale"}]
        if missing or unexpected:
            raise ValueError(f"optimiser state does not fit these parameters: missing {missing[:10]}, "
                             f"unexpected {unexpected[:10]}")
        saved_scale = np.asarray(state.get("moment_scale", np.ones((len(self.param_groups), 2))), np.float64)
        if saved_scale.shape != (len(self.param_groups), 2):
            raise ValueError(f"optimiser state: moment_scale has shape {saved_scale.shape}, expected "
                             f"({len(self.param_groups)}, 2)")
        if hyper_parameters is not None:
            if [g["param_names"] for g in hyper_parameters] != [g["param_names"] for g in self.param_groups]:
                raise ValueError("optimiser groups do not hold the same parameters as the saved ones")
            for group, saved in zip(self.param_groups, hyper_parameters):
                for key in ("lr", "lr_scale", "eps", "weight_decay", "name"):
                    group[key] = saved[key]
                group["betas"] = tuple(saved["betas"])
        for g, (cell, scale) in enumerate(zip(self.groups, self.moment_scale)):
            for k, moments in enumerate((cell.exp_avg, cell.exp_avg_sq)):
                factor = scale[k] / saved_scale[g, k]
                for p in moments:
                    value = np.asarray(state[p.name], np.float32)
                    if value.size == int(np.prod(p.shape)):  # checkpoints store 0-d tensors as [1]
                        value = value.reshape(p.shape)
                    if value.shape != tuple(p.shape):
                        raise ValueError(f"optimiser state {p.name}: shape {value.shape}, expected {tuple(p.shape)}")
                    if factor != 1.0:
                        value = (value.astype(np.float64) * factor).astype(np.float32)
                    assign(p, value)  # in place: the compiled update keeps seeing it
        self.step_count = int(np.asarray(state["step"]).reshape(()))


def _squared_norm(x):
    """``sum(x ** 2)`` as a dot product. ``[...] -> []``"""
    row = x.reshape(1, -1).astype(ms.float32)  # [1, size]
    return _MATMUL_NT(row, row).reshape(())  # not row @ row.T: a Transpose keeps an index table


@ms.jit
def _global_norm(grads):
    # a dot product per tensor and a chain of additions: MindSpore 2.10's CPU ReduceSum over a whole
    # tensor takes ~10x as long as the dot product, and graphs joining hundreds of tensors at once
    # (AddN, Stack, Concat) take 30-40 s to compile where the chain takes 2 s
    total = _squared_norm(grads[0])
    for g in grads[1:]:
        total = total + _squared_norm(g)
    return ops.sqrt(total)


@ms.jit
def _scale_all(grads, coef):
    return tuple(g * coef.astype(g.dtype) for g in grads)


def clip_by_global_norm(grads, max_norm: float = None):
    """``(grads, total_norm)``: the gradients scaled by ``min(1, max_norm / (total_norm + 1e-6))``
    as ``torch.nn.utils.clip_grad_norm_`` does, and their global L2 norm before clipping (a
    float32 scalar Tensor). ``max_norm=None`` only measures."""
    grads = ms.mutable(tuple(grads))
    total_norm = _global_norm(grads)
    if max_norm is None:
        return tuple(grads), total_norm
    coef = ops.clamp(max_norm / (total_norm + 1e-6), max=1.0)
    return _scale_all(grads, coef), total_norm


def clamp_logit_scale(model: nn.Cell, max_value: float = MAX_LOGIT_SCALE):
    """Clamp ``model.logit_scale`` to ``[0, max_value]`` in place (after every optimiser step)."""
    scale = model.logit_scale
    ops.assign(scale, ops.clamp(scale, 0.0, max_value))
