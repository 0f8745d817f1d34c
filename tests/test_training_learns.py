"""CLIP trained in MindSpore learns as well as the same recipe in PyTorch.

A tiny model (ViT 32 px / 8 px patches, two blocks of width 64; text one block of width 64)
is trained from random weights on coloured shapes captioned "a red circle" (9 classes, chance
11 %), then classifies held-out pictures zero-shot with the prompt "a {}.". The PyTorch side is
OpenAI's ``model.py`` with the same initial weights, the same batches (the same arrays), the same
loss, ``torch.optim.AdamW`` with the same groups and hyper-parameters, the same schedule
(``LambdaLR``) and the same ``logit_scale`` clamp. MindSpore must reach at least 0.8x PyTorch's
accuracy and far above chance. A second test overfits 64 image-caption pairs to retrieval R@1 = 1.
"""
import math

import numpy as np
import torch
from mindspore import Tensor
from PIL import Image

import clip
import reference
from clip import training
from clip.model import CLIP, torch_name_map
from clip.training.data import CaptionDataset, CaptionedImages, epoch_batches, eval_transform
from clip.training.evaluate import Evaluator
from synthetic_captions import CLASSES, shape_samples, write_csv

# the vocabulary is cut to the ids the captions use (see compact_vocabulary): the 49408-row token
# embedding and its AdamW update would otherwise dominate the step on both sides
VOCAB = 64
CONFIG = dict(embed_dim=64, image_resolution=32, vision_layers=2, vision_width=64, vision_patch_size=8,
              context_length=8, vocab_size=VOCAB, transformer_width=64, transformer_heads=1, transformer_layers=1)
RECIPE = dict(batch_size=32, epochs=4, lr=3e-3, weight_decay=0.1, warmup=10)
OVERFIT_LR, OVERFIT_STEPS = 1e-3, 120


def compact_vocabulary(*token_arrays):
    """``clip.tokenize`` ids renumbered into ``[0, VOCAB)``, order kept (padding 0 stays 0, the
    end-of-text id stays the largest, so ``argmax`` still finds it): a small embedding table."""
    ids = np.unique(np.concatenate([t.ravel() for t in token_arrays]))
    ids = ids[ids > 0]
    assert len(ids) < VOCAB
    table = np.zeros(int(ids.max()) + 1, np.int32)
    table[ids] = np.arange(VOCAB - len(ids), VOCAB)
    return [table[t] for t in token_arrays]


def _pairs(tmp_path, n, seed, name):
    return clip.training.data.read_csv_data(write_csv(str(tmp_path), shape_samples(n, seed=seed, size=32), name=name))


def _torch_model(model):
    """OpenAI's CLIP with the MindSpore model's (initial) weights, in training mode."""
    torch.manual_seed(0)
    torch_model = reference.model_module().CLIP(**CONFIG)
    names = torch_name_map(model)
    state = {names[n]: torch.from_numpy(p.asnumpy().copy()) for n, p in model.parameters_and_names()}
    missing, unexpected = torch_model.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith("attn_mask") or "num_batches" in k for k in missing), missing
    return torch_model.train()


def _torch_optimizer(torch_model, schedule):
    no_decay = {"positional_embedding", "visual.positional_embedding", "visual.class_embedding", "logit_scale"}
    decay, other = [], []
    for name, p in torch_model.named_parameters():
        (other if p.ndim < 2 or name in no_decay or name.endswith("bias") else decay).append(p)
    optimizer = torch.optim.AdamW([{"params": other, "weight_decay": 0.0},
                                   {"params": decay, "weight_decay": RECIPE["weight_decay"]}],
                                  lr=RECIPE["lr"], betas=(0.9, 0.98), eps=1e-6)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule(step) / RECIPE["lr"])


def _pad(tokens):
    out = np.zeros((len(tokens), CONFIG["context_length"]), np.int64)
    out[:, :tokens.shape[1]] = tokens
    return torch.from_numpy(out)


def _torch_zero_shot(torch_model, pixels, labels, prompts):
    torch_model.eval()
    with torch.no_grad():
        image = torch_model.encode_image(torch.from_numpy(pixels))
        text = torch_model.encode_text(_pad(prompts))
    image = image / image.norm(dim=-1, keepdim=True)
    text = text / text.norm(dim=-1, keepdim=True)
    return float(((image @ text.T).argmax(-1).numpy() == labels).mean())


def _torch_step(torch_model, optimizer, scheduler, images, tokens):
    image = torch_model.encode_image(torch.from_numpy(images))
    text = torch_model.encode_text(_pad(tokens))
    image = image / image.norm(dim=-1, keepdim=True)
    text = text / text.norm(dim=-1, keepdim=True)
    logits = torch_model.logit_scale.exp() * image @ text.T
    labels = torch.arange(len(images))
    loss = (torch.nn.functional.cross_entropy(logits, labels) + torch.nn.functional.cross_entropy(logits.T, labels)) / 2
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()
    with torch.no_grad():
        torch_model.logit_scale.clamp_(0, math.log(100))
    return float(loss.detach())


def test_learns_shapes_zero_shot_as_well_as_pytorch(tmp_path):
    torch.set_num_threads(2)
    train = _pairs(tmp_path, 576, seed=0, name="train.csv")
    held_out = shape_samples(180, seed=1, size=32)
    labels = np.array([label for _, label, _ in held_out])
    pixels = np.stack([eval_transform(image, 32) for image, _, _ in held_out])  # [180, 3, 32, 32]
    prompts = clip.tokenize([f"a {c}." for c in CLASSES], context_length=8).asnumpy()
    prompts = prompts[:, :int(prompts.argmax(-1).max()) + 1]
    data = CaptionDataset(train, 32, context_length=8, seed=0)
    data.tokens, prompts = compact_vocabulary(data.tokens, prompts)

    model = training.make_trainable(training.init_parameters(CLIP(**CONFIG), seed=0), freeze_batch_norm_stats=False)
    torch_model = _torch_model(model)
    steps = data.steps_per_epoch(RECIPE["batch_size"]) * RECIPE["epochs"]
    schedule = training.make_schedule("cosine", base_lr=RECIPE["lr"], warmup_steps=RECIPE["warmup"], total_steps=steps)
    trainer = training.Trainer(model, training.create_optimizer(model, lr=RECIPE["lr"], weight_decay=RECIPE["weight_decay"]),
                               schedule=schedule)

    def zero_shot_ms():
        model.set_train(False)
        image = model.encode_image(Tensor(pixels)).asnumpy()
        text = model.encode_text(Tensor(prompts)).asnumpy()
        image /= np.linalg.norm(image, axis=1, keepdims=True)
        text /= np.linalg.norm(text, axis=1, keepdims=True)
        return float(((image @ text.T).argmax(-1) == labels).mean())

    before = zero_shot_ms()
    batches, ms_losses = [], []
    for epoch in range(RECIPE["epochs"]):
        for images, tokens in data.batches(epoch, RECIPE["batch_size"]):
            batches.append((images, tokens))
            ms_losses.append(trainer.train_step(Tensor(images), Tensor(tokens))["loss"])
    ms_accuracy = zero_shot_ms()

    torch_optimizer, scheduler = _torch_optimizer(torch_model, schedule)
    torch_losses = [_torch_step(torch_model, torch_optimizer, scheduler, images, tokens) for images, tokens in batches]
    torch_accuracy = _torch_zero_shot(torch_model, pixels, labels, prompts)

    print(f"\nshapes zero-shot top-1 after {steps} steps: MindSpore {ms_accuracy:.3f} (before {before:.3f}), "
          f"PyTorch {torch_accuracy:.3f}; final loss {np.mean(ms_losses[-5:]):.3f} vs {np.mean(torch_losses[-5:]):.3f}")
    assert len(batches) == steps
    assert abs(ms_losses[0] - torch_losses[0]) < 1e-4 * abs(torch_losses[0])  # same start, same first batch
    assert before < 0.3                                   # chance is 1/9
    # a model this small learns the colours first (the loss of a colour-only solution is about
    # ln(32 / 3) = 2.4 here); >= 0.3 is 2.7x chance
    assert ms_accuracy >= 0.3
    assert ms_accuracy >= 0.8 * torch_accuracy
    assert np.mean(ms_losses[-5:]) < 0.75 * ms_losses[0]


def test_overfits_64_pairs_to_retrieval_recall_1(tmp_path):
    rng = np.random.default_rng(0)
    adjectives = ["red", "tiny", "old", "happy", "wooden", "shiny", "dark", "soft"]
    nouns = ["dog", "car", "house", "tree", "boat", "lamp", "chair", "bird"]
    places = ["beach", "forest", "city", "kitchen", "garden", "road", "lake", "field"]
    combos = rng.permutation(len(adjectives) * len(nouns) * len(places))[:64]
    captions = [f"a {adjectives[c // 64]} {nouns[c // 8 % 8]} at the {places[c % 8]}" for c in combos]
    folder = tmp_path / "images"
    folder.mkdir()
    paths = []
    grid = np.stack(np.meshgrid(*[np.linspace(30, 225, 4)] * 3, indexing="ij"), -1).reshape(64, 3)  # 64 colours
    for i in range(64):  # a distinct colour per picture, with a little noise
        noise = rng.normal(0, 6, (32, 32, 3))
        path = str(folder / f"{i}.png")
        Image.fromarray(np.clip(grid[i] + noise, 0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    pairs = CaptionedImages(paths, [[c] for c in captions], source="overfit")

    model = training.make_trainable(training.init_parameters(CLIP(**dict(CONFIG, context_length=16)), seed=1),
                                    freeze_batch_norm_stats=False)
    data = CaptionDataset(pairs, 32, context_length=16, seed=0)
    evaluator = Evaluator(pairs, 32, context_length=16)
    data.tokens, = compact_vocabulary(data.tokens)
    evaluator.dataset.tokens = data.tokens
    trainer = training.Trainer(model, training.create_optimizer(model, lr=OVERFIT_LR, weight_decay=0.0),
                               schedule=training.make_schedule("constant", base_lr=OVERFIT_LR, warmup_steps=5))
    first = evaluator(model)
    for epoch in range(OVERFIT_STEPS):
        # the whole set each step, augmented anew each epoch (item by item: no per-epoch pipeline start-up)
        items = [data.item(int(i), epoch) for i in epoch_batches(64, epoch, 64, seed=0)[0]]
        images, tokens = np.stack([x[0] for x in items]), np.stack([x[1] for x in items])
        loss = trainer.train_step(Tensor(images), Tensor(tokens))["loss"]
    metrics = evaluator(model)
    print(f"\noverfit 64 pairs: R@1 i->t {first['image_to_text_R@1']:.3f} -> {metrics['image_to_text_R@1']:.3f}, "
          f"t->i {first['text_to_image_R@1']:.3f} -> {metrics['text_to_image_R@1']:.3f}, final loss {loss:.4f}")
    assert first["image_to_text_R@1"] < 0.2
    assert metrics["image_to_text_R@1"] == 1.0 and metrics["text_to_image_R@1"] == 1.0
    assert metrics["image_to_text_mean_rank"] == 1.0 and metrics["text_to_image_median_rank"] == 1.0
