"""Making a CLIP model trainable: float32 weights, which parameters learn, BatchNorm policy.

Order of use::

    model, _ = clip.load("RN50")            # or clip.model.CLIP(**config) + init_parameters(model)
    make_trainable(model)                   # float32, every parameter trainable, BatchNorm frozen
    lock_image(model)                       # optional: LiT, the image tower frozen
    trainer = Trainer(model, ...)           # the optimiser is built over what is trainable now

Layer groups follow open_clip's, so ``unlocked_groups`` / ``unlocked_layers`` count the same
blocks as open_clip's ``--lock-image-unlocked-groups`` / ``--lock-text-unlocked-layers``:

- ViT image tower: ``[conv1, class_embedding, positional_embedding, ln_pre]``, each residual
  block but the last, ``[last block, ln_post]``, ``[proj]``;
- ResNet image tower: the stem (three convolutions and their BatchNorms), ``layer1`` ..
  ``layer4``, ``attnpool``;
- text tower: ``[token_embedding, positional_embedding]``, each block but the last,
  ``[last block, ln_final]``, ``[text_projection]``.

``logit_scale`` belongs to neither tower and stays trainable.

A *frozen* BatchNorm normalises with its moving statistics even when the model is in training
mode, never updates them, and its gain and bias do not learn (open_clip's ``FrozenBatchNorm2d``).
It is implemented from outside the model: :func:`set_train_mode` (which the trainer calls before
every step) keeps the cell in inference mode, and a MindSpore ``nn.BatchNorm2d`` also gets
``use_batch_statistics = False``. BatchNorm cells are recognised by their ``moving_mean`` and
``moving_variance`` parameters, whatever their class.
"""
import math

import numpy as np
from mindspore import Parameter, nn

from ..model import VisionTransformer
from ._inplace import assign

__all__ = [
    "make_trainable", "set_train_mode", "enable_grad_checkpointing", "batch_norm_cells", "freeze_batch_norm",
    "unfreeze_batch_norm", "is_frozen_batch_norm", "image_groups", "text_groups", "lock_image", "lock_text",
    "init_parameters",
]

_FROZEN = "_clip_frozen_batch_norm"  # attribute set on frozen BatchNorm cells


# -- BatchNorm -----------------------------------------------------------------------------------
def batch_norm_cells(cell: nn.Cell):
    """``[(name, cell)]`` of the BatchNorm cells under ``cell``: those owning moving statistics."""
    found = []
    for name, sub in cell.cells_and_names():
        own = {n.rsplit(".", 1)[-1] for n, _ in sub.parameters_and_names(expand=False)}
        if {"moving_mean", "moving_variance"} <= own:
            found.append((name, sub))
    return found


def is_frozen_batch_norm(cell: nn.Cell) -> bool:
    """Whether ``cell`` is a BatchNorm frozen by :func:`freeze_batch_norm`."""
    return bool(getattr(cell, _FROZEN, False))


def _bn_params(cell):
    return [p for _, p in cell.parameters_and_names(expand=False)]


def freeze_batch_norm(cell: nn.Cell):
    """Freeze every BatchNorm under ``cell``: moving statistics used and never updated, in training
    mode too; gain and bias not trained. Returns the number of cells frozen."""
    cells = batch_norm_cells(cell)
    for _, bn in cells:
        object.__setattr__(bn, _FROZEN, True)
        if hasattr(bn, "use_batch_statistics"):
            bn.use_batch_statistics = False
        bn.set_train(False)
        for param in _bn_params(bn):
            param.requires_grad = False
    return len(cells)


def unfreeze_batch_norm(cell: nn.Cell):
    """Undo :func:`freeze_batch_norm`: in training mode the BatchNorms under ``cell`` normalise with
    batch statistics and update their moving averages; gain and bias become trainable."""
    cells = batch_norm_cells(cell)
    for _, bn in cells:
        object.__setattr__(bn, _FROZEN, False)
        if hasattr(bn, "use_batch_statistics"):
            bn.use_batch_statistics = None
        for name, param in bn.parameters_and_names(expand=False):
            param.requires_grad = not name.startswith("moving_")
    return len(cells)


def set_train_mode(model: nn.Cell, mode: bool = True):
    """``model.set_train(mode)``, except that frozen BatchNorms stay in inference mode."""
    model.set_train(mode)
    if mode:
        for _, bn in batch_norm_cells(model):
            if is_frozen_batch_norm(bn):
                bn.set_train(False)
    return model


# -- the model as a whole ------------------------------------------------------------------------
def make_trainable(model: nn.Cell, freeze_batch_norm_stats: bool = True):
    """Prepare a CLIP model (from :func:`clip.load` or ``clip.model.CLIP(**config)``) for training.

    Every parameter becomes float32 (``model.to_float32()``) and trainable, except BatchNorm
    moving statistics. With ``freeze_batch_norm_stats`` (the default, for fine-tuning a
    pre-trained ResNet) every BatchNorm is frozen (see :func:`freeze_batch_norm`); with ``False``
    (training from scratch) BatchNorms use batch statistics in training mode and learn.
    ViTs have no BatchNorm. Returns the model, in training mode.
    """
    model.to_float32()
    for name, param in model.parameters_and_names():
        param.requires_grad = not name.rsplit(".", 1)[-1].startswith("moving_")
    if freeze_batch_norm_stats:
        freeze_batch_norm(model)
    else:
        unfreeze_batch_norm(model)
    return set_train_mode(model, True)


def enable_grad_checkpointing(model: nn.Cell):
    """Recompute the activations of every transformer block (text tower, and image tower of a ViT)
    in the backward pass instead of keeping them (``Cell.recompute()``): less memory, about one more
    forward pass of compute; the gradients are unchanged. MindSpore allows it once per cell and
    has no way back. Call it before creating the :class:`~clip.training.Trainer`. Returns the model."""
    towers = [model.transformer]
    if isinstance(model.visual, VisionTransformer):
        towers.append(model.visual.transformer)
    for tower in towers:
        for block in tower.resblocks:
            block.recompute()
    return model


# -- layer groups and locks ----------------------------------------------------------------------
def image_groups(model: nn.Cell):
    """The image tower's layer groups, input to output: ``[(name, [cells or Parameters])]``."""
    visual = model.visual
    if isinstance(visual, VisionTransformer):
        blocks = list(visual.transformer.resblocks)
        groups = [("embeddings", [visual.conv1, visual.class_embedding, visual.positional_embedding,
                                  visual.ln_pre])]
        groups += [(f"block{i}", [block]) for i, block in enumerate(blocks[:-1])]
        groups += [(f"block{len(blocks) - 1}", [blocks[-1], visual.ln_post]), ("proj", [visual.proj])]
        return groups
    stem = [visual.conv1, visual.bn1, visual.conv2, visual.bn2, visual.conv3, visual.bn3]
    return [("stem", stem), ("layer1", [visual.layer1]), ("layer2", [visual.layer2]),
            ("layer3", [visual.layer3]), ("layer4", [visual.layer4]), ("attnpool", [visual.attnpool])]


def text_groups(model: nn.Cell):
    """The text tower's layer groups, input to output: ``[(name, [cells or Parameters])]``."""
    blocks = list(model.transformer.resblocks)
    groups = [("embeddings", [model.token_embedding, model.positional_embedding])]
    groups += [(f"block{i}", [block]) for i, block in enumerate(blocks[:-1])]
    groups += [(f"block{len(blocks) - 1}", [blocks[-1], model.ln_final]), ("proj", [model.text_projection])]
    return groups


def _members_params(members):
    for member in members:
        if isinstance(member, Parameter):
            yield member, False
        else:
            frozen = {id(p) for _, bn in batch_norm_cells(member) if is_frozen_batch_norm(bn)
                      for p in _bn_params(bn)}
            for name, param in member.parameters_and_names():
                statistics = name.rsplit(".", 1)[-1].startswith("moving_")
                yield param, statistics or id(param) in frozen


def _lock_groups(groups, unlocked: int, freeze_bn_stats: bool = False):
    if unlocked < 0:
        raise ValueError(f"the number of unlocked groups must be >= 0, got {unlocked}")
    n_locked = max(len(groups) - unlocked, 0)
    for i, (_, members) in enumerate(groups):
        locked = i < n_locked
        if locked and freeze_bn_stats:
            for member in members:
                if isinstance(member, nn.Cell):
                    freeze_batch_norm(member)
        for param, never in _members_params(members):
            param.requires_grad = not locked and not never


def lock_image(model: nn.Cell, unlocked_groups: int = 0, freeze_bn_stats: bool = True):
    """Freeze the image tower except its last ``unlocked_groups`` layer groups (see
    :func:`image_groups`); ``0`` freezes it all (LiT). With ``freeze_bn_stats`` the BatchNorms of
    the frozen groups of a ResNet are frozen too (:func:`freeze_batch_norm`); otherwise they keep
    updating their moving statistics in training mode, as open_clip's lock does. Unlocked groups
    become trainable (frozen BatchNorms excepted), so calling it again with another count works."""
    _lock_groups(image_groups(model), unlocked_groups, freeze_bn_stats)
    return model


def lock_text(model: nn.Cell, unlocked_layers: int = 0):
    """Freeze the text tower except its last ``unlocked_layers`` layer groups (see
    :func:`text_groups`); ``0`` freezes it all."""
    _lock_groups(text_groups(model), unlocked_layers)
    return model


# -- initialisation for training from scratch ----------------------------------------------------
def init_parameters(model: nn.Cell, seed: int = 0):
    """Give a freshly built ``clip.model.CLIP(**config)`` (whose matrices start at zero) the random
    initialisation of OpenAI's ``CLIP``: its ``initialize_parameters`` scheme for the embeddings,
    the attention pool and the text transformer, the ViT's ``width ** -0.5`` normal embeddings and
    projection, PyTorch's default initialisation elsewhere (uniform in ``±1/sqrt(fan_in)`` for
    convolutions and dense layers, Xavier for packed attention projections, zero attention biases),
    zero-initialised last BatchNorm gain of every residual branch, and ``logit_scale = ln(1/0.07)``.
    Returns the model."""
    rng = np.random.default_rng(seed)
    params = dict(model.parameters_and_names())

    def put(name, value):
        assign(params[name], np.asarray(value, np.float32))

    def normal(name, std):
        put(name, rng.standard_normal(params[name].shape) * std)

    def fan_in_uniform(name, fan_in):
        bound = 1.0 / math.sqrt(fan_in)
        put(name, rng.uniform(-bound, bound, params[name].shape))

    # PyTorch's defaults for every layer first
    for name, param in params.items():
        leaf, shape = name.rsplit(".", 1)[-1], tuple(param.shape)
        owner = name[:-len(leaf) - 1]
        if leaf in ("gamma", "moving_variance"):
            put(name, np.ones(shape))
        elif leaf in ("beta", "moving_mean", "in_proj_bias"):
            put(name, np.zeros(shape))
        elif leaf == "in_proj_weight":  # Xavier uniform over [3 * width, width]
            bound = math.sqrt(6.0 / (shape[0] + shape[1]))
            put(name, rng.uniform(-bound, bound, shape))
        elif leaf == "weight" and len(shape) >= 2:  # Conv2d [out, in, k, k] and Dense [out, in]
            fan_in_uniform(name, int(np.prod(shape[1:])))
        elif leaf == "bias":
            weight = params[f"{owner}.weight"]
            fan_in_uniform(name, int(np.prod(weight.shape[1:])))
            if owner.endswith("attn.out_proj"):  # nn.MultiheadAttention zeroes its output bias
                put(name, np.zeros(shape))
    # then the parameters OpenAI initialises itself
    normal("token_embedding.embedding_table", 0.02)
    normal("positional_embedding", 0.01)
    visual = model.visual
    if isinstance(visual, VisionTransformer):
        scale = visual.transformer.width ** -0.5
        for name in ("visual.class_embedding", "visual.positional_embedding", "visual.proj"):
            normal(name, scale)
    else:
        embed_dim = params["visual.attnpool.positional_embedding"].shape[1]
        normal("visual.attnpool.positional_embedding", embed_dim ** -0.5)
        for proj in ("q_proj", "k_proj", "v_proj", "c_proj"):
            weight = f"visual.attnpool.{proj}.weight"
            normal(weight, params["visual.attnpool.c_proj.weight"].shape[1] ** -0.5)
        for name in params:
            if name.startswith("visual.layer") and name.endswith("bn3.gamma"):
                put(name, np.zeros(params[name].shape))
    width, layers = model.transformer.width, model.transformer.layers
    proj_std, attn_std, fc_std = width ** -0.5 * (2 * layers) ** -0.5, width ** -0.5, (2 * width) ** -0.5
    for i in range(layers):
        block = f"transformer.resblocks.{i}"
        normal(f"{block}.attn.in_proj_weight", attn_std)
        normal(f"{block}.attn.out_proj.weight", proj_std)
        normal(f"{block}.mlp.c_fc.weight", fc_std)
        normal(f"{block}.mlp.c_proj.weight", proj_std)
    normal("text_projection", width ** -0.5)
    put("logit_scale", np.log(1 / 0.07))
    return model
