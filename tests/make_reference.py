"""Make a random-weight OpenAI CLIP with PyTorch and write what the parity tests need.

    python tests/make_reference.py ARCH OUTDIR [--no-state-dict]

writes, for one of OpenAI's nine architectures built with OpenAI's own ``model.py``
(loaded by path, see ``reference.py``):

- ``OUTDIR/<file>.pt``: a TorchScript archive in float16 like OpenAI's release files
  (``convert_weights``, traced, with ``input_resolution``/``context_length``/``vocab_size``);
- ``OUTDIR/<file>_fp32.pth``: the same weights as a plain float32 ``torch.save`` state dict
  (not with ``--no-state-dict``);
- ``OUTDIR/expected.npz``: inputs (images, token ids) and the reference outputs computed in
  float32 from those weights: ``image_features``, ``text_features``, ``probs``; for
  :data:`FP16_ARCHS` also in float16 as OpenAI runs on GPU (``*_fp16``).

Every tensor is randomised so that a wrongly converted one changes the outputs: LayerNorm and
BatchNorm affine parameters and running statistics, biases and ``logit_scale`` included.
It runs in its own process so that PyTorch's memory and threads are gone before MindSpore runs.
"""
import copy
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402

# OpenAI's published hyper-parameters for its nine releases:
# embed_dim, image_resolution, vision_layers, vision_width, vision_patch_size, text width, text layers
ARCHS = {
    "RN50": (1024, 224, (3, 4, 6, 3), 64, None, 512, 12),
    "RN101": (512, 224, (3, 4, 23, 3), 64, None, 512, 12),
    "RN50x4": (640, 288, (4, 6, 10, 6), 80, None, 640, 12),
    "RN50x16": (768, 384, (6, 8, 18, 8), 96, None, 768, 12),
    "RN50x64": (1024, 448, (3, 15, 36, 10), 128, None, 1024, 12),
    "ViT-B/32": (512, 224, 12, 768, 32, 512, 12),
    "ViT-B/16": (512, 224, 12, 768, 16, 512, 12),
    "ViT-L/14": (768, 224, 24, 1024, 14, 768, 12),
    "ViT-L/14@336px": (768, 336, 24, 1024, 14, 768, 12),
}
# Two images per architecture. The seeds' mean relative difference is dominated by the few
# feature values that land near zero: with this seed, adding images 3-4 to RN50 moves its image
# statistic from 7e-6 to 1.1e-5 while the per-layer errors stay those of float32 (see the note in
# test_parity.py). Larger samples do not converge below the limit for every architecture either.
N_IMAGES = {}
DEFAULT_N_IMAGES = 2
# architectures whose float16 outputs are computed too (PyTorch's fp16 kernels on CPU are slow)
FP16_ARCHS = ("RN50", "ViT-B/32")
FILES = {name: name.replace("/", "-").replace("@", "-") for name in ARCHS}  # OpenAI's file stems

# Sixteen texts: the mean relative difference of the seeds' formula is dominated by the few
# feature values that happen to lie near zero, so more values make it a steadier statistic.
TEXTS = [
    "a diagram",
    "a dog",
    "a cat",
    "a photo of a dog, playing in the snow!",
    "CLIP 🙂 zero-shot &amp; linear-probe",
    "a page of text about segmentation",
    "a facial photo of a tabby cat",
    "a portrait of an astronaut with the American flag",
    "a rocket standing on a launchpad",
    "a red motorcycle standing in a garage",
    "a person looking at a camera on a tripod",
    "a black-and-white silhouette of a horse",
    "a cup of coffee on a saucer",
    "Ünïcödé, 中文, العربية and numbers 1234567890",
    "itap of a tench.",
    " ".join(["a very long caption that will be truncated"] * 12),
]


def config(arch):
    embed, res, vlayers, vwidth, patch, twidth, tlayers = ARCHS[arch]
    return dict(embed_dim=embed, image_resolution=res, vision_layers=vlayers, vision_width=vwidth,
                vision_patch_size=patch, context_length=77, vocab_size=49408,
                transformer_width=twidth, transformer_heads=twidth // 64, transformer_layers=tlayers)


@torch.no_grad()
def randomise(model, seed):
    """Give every tensor a random value.

    Weights keep the random values of OpenAI's own initialisation (``CLIP.initialize_parameters``
    and PyTorch's defaults), redrawn from ``seed``; what that initialisation leaves constant is
    randomised too (:func:`randomise_constants`).
    """
    torch.manual_seed(seed)
    model.initialize_parameters()
    randomise_constants(model, seed + 1)


@torch.no_grad()
def randomise_constants(model, seed):
    """Randomise what CLIP's initialisation leaves constant, so that a wrongly converted tensor
    changes the outputs: LayerNorm and BatchNorm affine parameters and running statistics (the
    last BatchNorm of a residual branch stays small, as OpenAI's zero init intends), all biases,
    and ``logit_scale`` (ln 60). Works on any PyTorch CLIP (OpenAI's or open_clip's modules)."""
    gen = torch.Generator().manual_seed(seed)

    def normal(t, std):
        t.copy_(torch.randn(t.shape, generator=gen) * std)

    def uniform(t, low, high):
        t.copy_(low + (high - low) * torch.rand(t.shape, generator=gen))

    for prefix, module in model.named_modules():
        if isinstance(module, (torch.nn.LayerNorm, torch.nn.BatchNorm2d)):
            if prefix.endswith("bn3") and ".layer" in prefix:
                uniform(module.weight, 0.05, 0.3)
            else:
                uniform(module.weight, 0.5, 1.5)
            normal(module.bias, 0.1)
            if isinstance(module, torch.nn.BatchNorm2d):
                normal(module.running_mean, 0.1)
                uniform(module.running_var, 0.5, 2.0)
        elif isinstance(module, torch.nn.MultiheadAttention):
            normal(module.in_proj_bias, 0.02)
            normal(module.out_proj.bias, 0.02)
        elif isinstance(module, torch.nn.Linear) and module.bias is not None:
            normal(module.bias, 0.02)
    model.logit_scale.fill_(float(np.log(60.0)))


def tokenize(texts, context_length=77):
    """OpenAI's ``clip.tokenize`` semantics with the reference tokenizer (truncating)."""
    tok = reference.tokenizer_module().SimpleTokenizer()
    sot, eot = tok.encoder["<|startoftext|>"], tok.encoder["<|endoftext|>"]
    out = np.zeros((len(texts), context_length), np.int32)
    for i, text in enumerate(texts):
        ids = ([sot] + tok.encode(text) + [eot])[:context_length]
        ids[-1] = eot
        out[i, :len(ids)] = ids
    return out


@torch.no_grad()
def outputs(model, image, text):
    """``(image_features, text_features, probs)`` of OpenAI's model, each tower run once: the
    forward (``CLIP.forward``, OpenAI's own code) is given the features just computed, so it only
    does its normalisation, scaling and products (the same values as running the towers again)."""
    image_features, text_features = model.encode_image(image), model.encode_text(text)
    model.encode_image = lambda x: image_features if x is image else None
    model.encode_text = lambda t: text_features if t is text else None
    try:
        logits_per_image, _ = model(image, text)
    finally:
        del model.encode_image, model.encode_text
    # the softmax in float32 at least (OpenAI's fp16 logits are cast up, as before)
    return image_features, text_features, logits_per_image.to(torch.promote_types(logits_per_image.dtype,
                                                                                   torch.float32)).softmax(dim=-1)


@torch.no_grad()
def float64_outputs(model, images, tokens):
    """The same model and inputs computed in float64 (``*_f64``): the yardstick for float32
    rounding. OpenAI's ``LayerNorm`` casts its input to float32 (for its fp16 models), which would
    round every block of a float64 run, so for this run only it normalises in the input's dtype;
    the causal mask is cast to float64 as well. The model is left in float32."""
    ref = reference.model_module()
    original = ref.LayerNorm.forward
    ref.LayerNorm.forward = torch.nn.LayerNorm.forward
    masks = {}
    try:
        model.double()
        for name, module in model.named_modules():
            if getattr(module, "attn_mask", None) is not None:
                masks[name] = module.attn_mask
                module.attn_mask = module.attn_mask.double()
        image = torch.from_numpy(images).double()
        text = torch.from_numpy(tokens).long()
        image_features, text_features, probs = outputs(model, image, text)
        out = {"image_features_f64": image_features.numpy(), "text_features_f64": text_features.numpy(),
               "probs_f64": probs.numpy()}
    finally:
        ref.LayerNorm.forward = original
        for name, module in model.named_modules():
            if name in masks:
                module.attn_mask = masks[name]
        model.float()
    return out


def make(arch, outdir, seed=0, n_images=None, state_dict=True):
    ref = reference.model_module()
    torch.manual_seed(seed)
    model = ref.CLIP(**config(arch)).eval()
    randomise(model, seed)
    ref.convert_weights(model)  # OpenAI's float16 release layout
    res = model.visual.input_resolution
    for key, value in (("input_resolution", res), ("context_length", 77), ("vocab_size", 49408)):
        if hasattr(model, key):  # a plain int in OpenAI's model.py, a 0-d tensor in its releases
            delattr(model, key)
        model.register_buffer(key, torch.tensor(value))

    rng = np.random.RandomState(seed)
    n_images = n_images or N_IMAGES.get(arch, DEFAULT_N_IMAGES)
    images = rng.randn(n_images, 3, res, res).astype(np.float32)
    tokens = tokenize(TEXTS)
    os.makedirs(outdir, exist_ok=True)
    stem = FILES[arch]
    dtypes = {name: p.dtype for name, p in model.named_parameters()}

    results = {}
    image, text = torch.from_numpy(images), torch.from_numpy(tokens).long()
    if arch in FP16_ARCHS:  # OpenAI's GPU setting: fp16 weights and activations, LayerNorm in fp32
        fp16 = outputs(model, image, text)
        for key, value in zip(("image_features_fp16", "text_features_fp16", "probs_fp16"), fp16):
            results[key] = value.float().numpy()

    model.float()  # float32 copies of the fp16 values: the reference computes in float32
    image_features, text_features, probs = outputs(model, image, text)
    results.update(float64_outputs(model, images, tokens))
    np.savez(os.path.join(outdir, "expected.npz"), images=images, tokens=tokens,
             image_features=image_features.numpy(), text_features=text_features.numpy(), probs=probs.numpy(),
             **results)

    if state_dict:
        state = model.state_dict()
        torch.save({k: v for k, v in state.items() if k not in ("input_resolution", "context_length", "vocab_size")},
                   os.path.join(outdir, f"{stem}_fp32.pth"))

    # the float16 TorchScript archive: trace a copy (a traced module shares its parameters),
    # then give the traced parameters OpenAI's dtypes back
    traced = torch.jit.trace_module(copy.deepcopy(model), {"encode_text": torch.from_numpy(tokens[:1]).long()})
    with torch.no_grad():
        for name, p in traced.named_parameters():
            p.data = p.data.to(dtypes[name])
    torch.jit.save(traced, os.path.join(outdir, f"{stem}.pt"))


if __name__ == "__main__":
    make(sys.argv[1], sys.argv[2], state_dict="--no-state-dict" not in sys.argv[3:])
