"""open_clip's entry points: ``create_model``, ``create_model_and_transforms``, ``get_tokenizer``."""
import logging
import os

import mindspore as ms
import numpy as np
from mindspore import Tensor

from .. import clip as _clip
from ..model import Conv2d, VisionTransformer, build_model, load_weights
from .config import architecture_of, get_model_config
from .model import OpenCLIP
from .pos_embed import resize_pos_embed
from .pretrained import download_pretrained, get_pretrained_cfg, list_pretrained
from .tokenizer import Tokenizer
from .transform import image_transform
from .weights import read_weights, torch_to_mindspore

__all__ = ["create_model", "create_model_and_transforms", "get_tokenizer"]

_PRECISIONS = {"fp32": ms.float32, "fp16": ms.float16}
_LOGGER = logging.getLogger(__name__)


def _initialise(model, seed=None):
    """open_clip's initialisation of a model built without weights (normal draws with its scales)."""
    rng = np.random.default_rng(seed)

    def draw(param, std):
        param.set_data(Tensor((rng.standard_normal(param.shape) * std).astype(np.float32)))

    arch = model.architecture
    width, layers = arch["transformer_width"], arch["transformer_layers"]
    draw(model.token_embedding.embedding_table, 0.02)
    draw(model.positional_embedding, 0.01)
    draw(model.text_projection, width ** -0.5)
    for tower, w, n in ((model.transformer, width, layers),) + (
            ((model.visual.transformer, arch["vision_width"], arch["vision_layers"]),)
            if isinstance(model.visual, VisionTransformer) else ()):
        for block in tower.resblocks:
            draw(block.attn.in_proj_weight, w ** -0.5)
            draw(block.attn.out_proj.weight, w ** -0.5 * (2 * n) ** -0.5)
            draw(block.mlp.c_fc.weight, (2 * w) ** -0.5)
            draw(block.mlp.c_proj.weight, w ** -0.5 * (2 * n) ** -0.5)
    visual = model.visual
    if isinstance(visual, VisionTransformer):
        scale = arch["vision_width"] ** -0.5
        for param in (visual.class_embedding, visual.positional_embedding, visual.proj):
            draw(param, scale)
        draw(visual.conv1.weight, (3 * arch["vision_patch_size"] ** 2) ** -0.5)
    else:
        pool = visual.attnpool
        std = pool.c_proj.weight.shape[1] ** -0.5
        for dense in (pool.q_proj, pool.k_proj, pool.v_proj, pool.c_proj):
            draw(dense.weight, std)
        draw(pool.positional_embedding, pool.positional_embedding.shape[1] ** -0.5)
        for name, cell in visual.cells_and_names():
            if isinstance(cell, Conv2d):
                draw(cell.weight, (2.0 / np.prod(cell.weight.shape[1:])) ** 0.5)
            if name.endswith("bn3") and "layer" in name:
                cell.gamma.set_data(Tensor(np.zeros(cell.gamma.shape, np.float32)))
    return model


def _fit_image_size(state, architecture, source):
    """``state`` (MindSpore names) for a model of ``architecture`` whose image size was forced:
    a ViT's ``visual.positional_embedding`` is resized to the model's patch grid as open_clip's
    ``load_checkpoint`` does (class token kept, grid resized with antialiased bicubic); a
    ResNet's attention-pool positional embedding is not resized (nor by open_clip), so a
    different grid raises ``ValueError``."""
    resolution = architecture["image_resolution"]
    patch = architecture["vision_patch_size"]
    name = "visual.positional_embedding" if patch else "visual.attnpool.positional_embedding"
    if name not in state:
        return state  # the strict loading names the missing parameter
    value = state[name]
    grid = resolution // (patch or 32)
    rows = int(value.shape[0]) if len(value.shape) == 2 else -1
    if rows == grid * grid + 1:
        return state
    old = int(round(max(rows - 1, 0) ** 0.5))
    if rows < 2 or old * old != rows - 1:
        raise ValueError(f"{name} in {source} has shape {tuple(value.shape)}, not [1 + grid * grid, width]; "
                         "it cannot be resized to force_image_size")
    if not patch:
        raise ValueError(f"force_image_size={resolution} needs {name} of a {grid}x{grid} grid, but the weights in "
                         f"{source} have a {old}x{old} grid (image size {old * 32}); a ResNet's attention-pool "
                         "positional embedding is not resized (nor by open_clip): use the weights' image size")
    _LOGGER.info("Resizing %s of %s from a %dx%d to a %dx%d grid (force_image_size=%d)",
                 name, source, old, old, grid, grid, resolution)
    state = type(state)(state)
    state[name] = resize_pos_embed(value, grid)
    return state


def _resolve_pretrained(model_name, pretrained, cache_dir, sha256):
    """``(path or None, table entry)`` for a tag or a local file."""
    if pretrained is None or pretrained == "":
        return None, {}
    if not isinstance(pretrained, (str, os.PathLike)):
        raise TypeError(f"pretrained must be a tag or a file path, got {type(pretrained).__name__}")
    pretrained = os.fspath(pretrained)
    cfg = get_pretrained_cfg(model_name, pretrained)
    if cfg:
        return download_pretrained(cfg, cache_dir, sha256), cfg
    if os.path.isdir(pretrained):
        raise IsADirectoryError(f"pretrained={pretrained} is a directory; pass a weights file")
    if os.path.isfile(pretrained):
        if sha256 is not None:
            actual = _clip._download._sha256_file(pretrained).hexdigest()
            if actual != sha256.lower():
                raise _clip.pt_reader.CheckpointError(f"{pretrained}: SHA-256 is {actual}, expected {sha256}")
        return pretrained, {}
    tags = [t for m, t in list_pretrained() if m == model_name.replace("/", "-")]
    raise RuntimeError(f"pretrained={pretrained!r} is neither a known tag of {model_name} (tags: {tags}) "
                       "nor an existing file")


def create_model(model_name: str, pretrained: str = None, precision: str = "fp32", device: str = None,
                 jit: bool = False, force_quick_gelu: bool = False, force_custom_text: bool = False,
                 force_patch_dropout: float = None, force_image_size: int = None, cache_dir: str = None,
                 mode: int = ms.PYNATIVE_MODE, eager: bool = False, sha256: str = None, seed: int = None,
                 **kwargs):
    """Build an open_clip architecture as an :class:`OpenCLIP` model in inference mode.

    ``model_name``: a name of :func:`list_models` (``ViT-B/32`` spelling accepted). ``pretrained``:
    a tag of :func:`list_pretrained` (downloaded into the verified cache of :mod:`clip._download`),
    or a local ``open_clip_pytorch_model.bin``, ``open_clip_model.safetensors``, OpenAI ``.pt``,
    or this library's ``.ckpt`` / ``.safetensors``; ``None`` gives open_clip's random
    initialisation (``seed``). ``force_quick_gelu`` uses QuickGELU (needed for weights trained
    with it; tags that were are marked so in the table and get it automatically).
    ``force_custom_text`` is accepted: these models compute the same with open_clip's custom text
    tower, whose ``text.*`` names are read too. ``force_image_size`` changes the image size;
    pretrained ViT weights of another size get their positional embedding resized to the new
    patch grid as open_clip does (class token kept, grid resized with antialiased bicubic;
    logged at INFO); a ResNet's weights must have that size (``ValueError`` otherwise; open_clip
    cannot load them either). ``force_patch_dropout``: the fraction of patch tokens a ViT drops
    in training mode (``model.visual.patch_dropout``; no effect in inference). ``device``/``mode``/``eager``/``jit`` as in :func:`clip.load`;
    ``precision`` "fp32" or "fp16".
    """
    unknown = sorted(k for k in kwargs if k not in ("pretrained_image", "pretrained_hf", "output_dict",
                                                    "require_pretrained", "weights_only"))
    if unknown:
        raise TypeError(f"create_model got unexpected arguments {unknown}")
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {list(_PRECISIONS)}, got {precision!r}")
    if force_patch_dropout is not None and not 0 <= force_patch_dropout < 1:
        raise ValueError(f"force_patch_dropout must be in [0, 1), got {force_patch_dropout}")
    target, device_id = _clip._resolve_device(device)
    _clip._resolve_mode(mode, jit, eager)
    config = get_model_config(model_name)
    path, tag_cfg = _resolve_pretrained(model_name, pretrained, cache_dir, sha256)
    architecture = architecture_of(config, quick_gelu=force_quick_gelu or tag_cfg.get("quick_gelu", False),
                                   image_size=force_image_size)
    _clip._select_device(target, device_id)
    dtype = ms.float16 if precision == "fp16" or target != "CPU" else ms.float32
    if path is None:
        model = _initialise(OpenCLIP(**architecture), seed)
        load_weights(model, {n: p.asnumpy() for n, p in model.parameters_and_names()}, dtype=dtype)
        model.set_train(False)
    else:
        state, recorded, torch_names = read_weights(path)
        # with force_image_size the weights' own image size may differ: their grid is resized
        free = ("image_resolution",) if force_image_size is not None else ()
        differing = [] if recorded is None else sorted(
            k for k in set(recorded) | set(architecture) if k not in free and recorded.get(k) != architecture.get(k))
        if differing:
            raise ValueError(f"{path} records another architecture than {model_name}'s (differing: {differing})")
        if torch_names:
            state = torch_to_mindspore(state, OpenCLIP(**architecture), source=path)
        if force_image_size is not None:
            state = _fit_image_size(state, architecture, path)
        model = build_model(state, dtype=dtype, source=path, architecture=architecture, model_class=OpenCLIP)
    model.pretrained_cfg = dict(tag_cfg)
    if force_patch_dropout and isinstance(model.visual, VisionTransformer):
        model.visual.patch_dropout = float(force_patch_dropout)
    if not eager:
        _clip._compile_towers(model)
    return model


def create_model_and_transforms(model_name: str, pretrained: str = None, precision: str = "fp32",
                                device: str = None, jit: bool = False, force_quick_gelu: bool = False,
                                force_custom_text: bool = False, force_patch_dropout: float = None,
                                force_image_size: int = None, image_mean=None, image_std=None,
                                image_interpolation: str = None, image_resize_mode: str = None,
                                aug_cfg=None, cache_dir: str = None, **kwargs):
    """``(model, preprocess_train, preprocess_val)``, as open_clip's function: the model of
    :func:`create_model` and its transforms, with the tag's (or OpenAI's) mean and std unless
    ``image_mean`` / ``image_std`` are given; ``aug_cfg`` is open_clip's augmentation config
    (a dict; ``scale`` and ``ratio`` are implemented). Other arguments go to :func:`create_model`."""
    if image_interpolation not in (None, "bicubic"):
        raise NotImplementedError(f"image_interpolation={image_interpolation!r}: only bicubic is implemented")
    model = create_model(model_name, pretrained, precision=precision, device=device, jit=jit,
                         force_quick_gelu=force_quick_gelu, force_custom_text=force_custom_text,
                         force_patch_dropout=force_patch_dropout, force_image_size=force_image_size,
                         cache_dir=cache_dir, **kwargs)
    cfg = model.pretrained_cfg
    mean, std = image_mean or cfg.get("mean"), image_std or cfg.get("std")
    size = model.visual.input_resolution
    resize_mode = image_resize_mode or cfg.get("resize_mode")
    preprocess_train = image_transform(size, True, mean, std, aug_cfg=aug_cfg)
    preprocess_val = image_transform(size, False, mean, std, resize_mode=resize_mode)
    return model, preprocess_train, preprocess_val


def get_tokenizer(model_name: str, context_length: int = None, **kwargs):
    """The tokenizer of ``model_name``: OpenAI's BPE with the config's context length, cutting
    texts that do not fit (open_clip's behaviour)."""
    config = get_model_config(model_name)
    return Tokenizer(context_length or config["text_cfg"].get("context_length", 77))
