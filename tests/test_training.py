"""Training (``clip.training``): loss, gradients and AdamW steps against PyTorch, exact gradient
accumulation, locks, schedules, weight-decay groups, checkpoints, WiSE-FT.

The PyTorch side is OpenAI's ``model.py`` (loaded by path, see ``reference.py``) in training mode
with the loss, ``torch.optim.AdamW``, ``LambdaLR`` and ``clip_grad_norm_`` written here in
PyTorch; the MindSpore side is the same weights converted with ``convert_torch_state_dict`` and
trained by ``clip.training``. Models are tiny (two blocks, 64 wide, 32-64 px, 16 tokens).
"""
import math
import os
import shutil

import numpy as np
import pytest
import torch
import mindspore as ms
from mindspore import Tensor, ops

import clip
import make_reference
import reference
import report
from clip import training
from clip.training import optim
from clip.model import CLIP, build_model, convert_torch_state_dict, torch_name_map

_TEXT = dict(context_length=16, vocab_size=1000, transformer_width=64, transformer_heads=1, transformer_layers=2)
VIT = dict(embed_dim=32, image_resolution=32, vision_layers=2, vision_width=64, vision_patch_size=16, **_TEXT)
# a ModifiedResNet with one bottleneck per stage; width 16 gives 8 attention-pool heads of 64
RESNET = dict(embed_dim=32, image_resolution=64, vision_layers=(1, 1, 1, 1), vision_width=16,
              vision_patch_size=None, **_TEXT)
EOT = VIT["vocab_size"] - 1

# Key biases have no effect on attention (softmax is invariant to adding the same q.b_k to every
# score of a query), so their exact gradient is zero and both frameworks give float32 noise, which
# Adam then turns into steps of noise: the attention pool's k_proj.bias, and the middle third of
# every packed in_proj_bias. Those values have no reference to compare with.
ZERO_GRADIENT = {"visual.attnpool.k_proj.bias"}


def with_reference(name, value):
    """``value`` without its zero-gradient part (see ZERO_GRADIENT)."""
    if name.endswith("attn.in_proj_bias"):
        width = value.shape[0] // 3
        return np.concatenate([value[:width], value[2 * width:]])
    return value


def make_batch(config, n, seed):
    """``(images [n, 3, R, R] float32, tokens [n, 16] int32)``: random pixels, random token ids of
    random lengths, each row ending with the end-of-text token (the largest id)."""
    rng = np.random.default_rng(seed)
    res, ctx = config["image_resolution"], config["context_length"]
    images = rng.standard_normal((n, 3, res, res)).astype(np.float32)
    tokens = np.zeros((n, ctx), np.int32)
    for i in range(n):
        length = int(rng.integers(1, ctx - 1))
        tokens[i, :length] = rng.integers(1, EOT - 1, length)
        tokens[i, length] = EOT
    return images, tokens


def torch_pair(config, seed=0, train_batch_norm=False):
    """OpenAI's CLIP with random weights (every tensor randomised) in training mode, and our model
    with the same weights made trainable. With ``train_batch_norm=False`` PyTorch's BatchNorms are
    put in eval mode and their parameters frozen, which is what ``make_trainable`` does by default."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    torch_model = reference.model_module().CLIP(**config)
    make_reference.randomise(torch_model, seed)
    torch_model.train()
    if not train_batch_norm:
        for module in torch_model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eval()
                module.weight.requires_grad_(False)
                module.bias.requires_grad_(False)
    state_dict = {k: v.detach().numpy().copy() for k, v in torch_model.state_dict().items()}
    model = build_model(convert_torch_state_dict(state_dict))
    training.make_trainable(model, freeze_batch_norm_stats=not train_batch_norm)
    return torch_model, model


def torch_clip_loss(torch_model, images, tokens):
    """CLIP's symmetric loss in PyTorch, on one process."""
    image_features = torch_model.encode_image(torch.from_numpy(images))
    text_features = torch_model.encode_text(torch.from_numpy(tokens).long())
    image_features = image_features / image_features.norm(dim=-1, keepdim=True)
    text_features = text_features / text_features.norm(dim=-1, keepdim=True)
    logits_per_image = torch_model.logit_scale.exp() * image_features @ text_features.t()
    labels = torch.arange(len(images))
    return (torch.nn.functional.cross_entropy(logits_per_image, labels) +
            torch.nn.functional.cross_entropy(logits_per_image.t(), labels)) / 2


def rel(ours, ref):
    """Normwise relative difference."""
    return float(np.linalg.norm(np.asarray(ours, np.float64) - ref) / np.linalg.norm(ref))


def weights(model):
    return {name: p.asnumpy().copy() for name, p in model.parameters_and_names()}


def hand_lr(step, base_lr=5e-4, warmup=2, total=5):
    """Warm-up then cosine, written out: 0.5, 1, 1, 0.75 x base_lr for steps 0-3."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup))) * base_lr


# -- exactness against PyTorch --------------------------------------------------------------------
PARITY_CASES = {
    "vit": (VIT, False),
    "resnet-frozen-bn": (RESNET, False),
    "resnet-train-bn": (RESNET, True),
}


@pytest.mark.parametrize("case", list(PARITY_CASES))
def test_gradients_and_adamw_steps_match_pytorch(case):
    """The loss and the gradient of every trainable parameter equal PyTorch's (rel. <= 1e-5 per
    parameter); then four AdamW steps with weight-decay groups, a warm-up + cosine schedule and
    gradient clipping give the weights of ``torch.optim.AdamW`` + ``LambdaLR`` within 1e-5."""
    config, train_bn = PARITY_CASES[case]
    torch_model, model = torch_pair(config, seed=0, train_batch_norm=train_bn)
    names = torch_name_map(model)
    torch_params = dict(torch_model.named_parameters())

    # the pre-training preset: lr 5e-4, weight decay 0.2, the family's betas and eps
    base_lr, max_norm = 5e-4, 20.0
    optimizer = training.create_optimizer(model)
    schedule = training.make_schedule("cosine", base_lr=base_lr, warmup_steps=2, total_steps=5)
    trainer = training.Trainer(model, optimizer, schedule=schedule, grad_clip_norm=max_norm)
    trained = trainer.param_names
    # the same parameters are trained on both sides
    assert sorted(names[n] for n in trained) == sorted(n for n, p in torch_params.items() if p.requires_grad)
    if train_bn:
        assert any(n.endswith("bn1.gamma") for n in trained)
    elif config is RESNET:
        assert not any(".bn" in n or "downsample.1" in n for n in trained)

    # 1. loss and gradients
    images, tokens = make_batch(config, 8, seed=1)
    torch_loss = torch_clip_loss(torch_model, images, tokens)
    torch_loss.backward()
    loss, grads = trainer.loss_and_grads(Tensor(images), Tensor(tokens))
    loss_diff = abs(float(loss.asnumpy()) - torch_loss.item()) / torch_loss.item()
    worst = (0.0, None)
    for name, grad in zip(trained, grads):
        ref = torch_params[names[name]].grad.numpy().reshape(grad.shape)
        if name in ZERO_GRADIENT:
            assert np.abs(grad.asnumpy()).max() < 1e-5 and np.abs(ref).max() < 1e-5, name
            continue
        diff = rel(grad.asnumpy(), ref)
        worst = max(worst, (diff, name))
    report.record("training", f"{case}: loss rel. diff {loss_diff:.1e}, worst gradient rel. diff {worst[0]:.2e} "
                           f"({worst[1]}), {len(trained)} parameters")
    print(f"{case}: loss {loss_diff:.2e}; worst gradient {worst[0]:.2e} ({worst[1]})")
    assert loss_diff <= 1e-5
    assert worst[0] <= 1e-5, f"gradient of {worst[1]} differs by {worst[0]:.2e}"

    # 2. AdamW steps; the BatchNorm statistics of the gradient pass above moved on both sides
    torch_model.zero_grad()
    initial = weights(model)
    decayed = {names[n] for n, p in model.parameters_and_names()
               if p.requires_grad and not training.exclude_from_weight_decay(n, p)}
    trainable = [(n, p) for n, p in torch_model.named_parameters() if p.requires_grad]
    betas, eps = training.FAMILY_DEFAULTS[training.model_family(model)].values()
    torch_optimizer = torch.optim.AdamW(
        [{"params": [p for n, p in trainable if n not in decayed], "weight_decay": 0.0},
         {"params": [p for n, p in trainable if n in decayed], "weight_decay": 0.2}],
        lr=base_lr, betas=betas, eps=eps)
    torch_schedule = torch.optim.lr_scheduler.LambdaLR(torch_optimizer, lambda step: hand_lr(step) / base_lr)
    clipped = 0
    for step in range(4):
        images, tokens = make_batch(config, 8, seed=10 + step)
        torch_optimizer.zero_grad()
        torch_loss = torch_clip_loss(torch_model, images, tokens)
        torch_loss.backward()
        torch_norm = torch.nn.utils.clip_grad_norm_([p for _, p in trainable], max_norm).item()
        torch_optimizer.step()
        torch_schedule.step()
        with torch.no_grad():
            torch_model.logit_scale.clamp_(0, math.log(100))
        metrics = trainer.train_step(Tensor(images), Tensor(tokens))
        assert metrics["lr"] == pytest.approx(hand_lr(step), rel=1e-12)
        assert metrics["step"] == step + 1
        assert metrics["loss"] == pytest.approx(torch_loss.item(), rel=1e-5)
        assert metrics["grad_norm"] == pytest.approx(torch_norm, rel=1e-5)
        clipped += torch_norm > max_norm
    assert clipped >= 1  # the clipping was exercised

    torch_state = torch_model.state_dict()
    worst_w, worst_u = (0.0, None), (0.0, None)
    for name, value in weights(model).items():
        ref = torch_state[names[name]].numpy().reshape(value.shape)
        if name.endswith("moving_variance") or name.endswith("moving_mean"):
            if train_bn:  # momentum 0.1 with the unbiased batch variance on both sides
                worst_w = max(worst_w, (rel(value, ref), name))
            else:
                assert np.array_equal(value, initial[name]), f"frozen statistics {name} moved"
            continue
        if name not in trained:
            assert np.array_equal(value, initial[name]), f"{name} is not trained but changed"
            continue
        if name in ZERO_GRADIENT:  # Adam's step on float32 noise has no reference value
            continue
        value, ref, start = (with_reference(name, x) for x in (value, ref, initial[name]))
        worst_w = max(worst_w, (rel(value, ref), name))
        worst_u = max(worst_u, (rel(value - start, ref - start), name))
    report.record("training", f"{case}: 4 AdamW steps, worst weight rel. diff {worst_w[0]:.2e} ({worst_w[1]}), "
                           f"worst update rel. diff {worst_u[0]:.2e} ({worst_u[1]})")
    print(f"{case}: weights {worst_w}; updates {worst_u}")
    assert worst_w[0] <= 1e-5, f"{worst_w[1]} differs from PyTorch's AdamW by {worst_w[0]:.2e}"
    assert worst_u[0] <= 1e-3, f"the update of {worst_u[1]} differs from PyTorch's by {worst_u[0]:.2e}"


# -- exact gradient accumulation ------------------------------------------------------------------
def test_gradient_accumulation_is_exact():
    """``accum_freq=4`` with micro-batches of 8 gives the gradients of one batch of 32 (rel. 1e-5
    per parameter, ``logit_scale`` included, counted once); averaging the gradients of four
    separate micro-batches does not (each sees 8 negatives instead of 32)."""
    _, model = torch_pair(VIT, seed=2)
    optimizer = training.create_optimizer(model)
    whole = training.Trainer(model, optimizer)
    accumulated = training.Trainer(model, optimizer, accum_freq=4)
    images, tokens = make_batch(VIT, 32, seed=3)
    loss, reference_grads = whole.loss_and_grads(Tensor(images), Tensor(tokens))
    accum_loss, accum_grads = accumulated.loss_and_grads(Tensor(images), Tensor(tokens))
    assert float(accum_loss.asnumpy()) == pytest.approx(float(loss.asnumpy()), rel=1e-6)

    averaged = None
    for j in range(4):
        _, grads = whole.loss_and_grads(Tensor(images[8 * j:8 * j + 8]), Tensor(tokens[8 * j:8 * j + 8]))
        grads = [g.asnumpy() / 4 for g in grads]
        averaged = grads if averaged is None else [a + g for a, g in zip(averaged, grads)]

    exact = {n: rel(a.asnumpy(), r.asnumpy()) for n, a, r in zip(whole.param_names, accum_grads, reference_grads)}
    naive = {n: rel(a, r.asnumpy()) for n, a, r in zip(whole.param_names, averaged, reference_grads)}
    worst = max(exact, key=exact.get)
    report.record("training", f"accumulation 4 x 8 vs 32: worst gradient rel. diff {exact[worst]:.2e} ({worst}); "
                           f"plain averaging: median {np.median(list(naive.values())):.2e}")
    print("accumulation", exact[worst], worst, "logit_scale", exact["logit_scale"], "naive", min(naive.values()))
    assert exact[worst] <= 1e-5, f"accumulated gradient of {worst} differs by {exact[worst]:.2e}"
    assert min(naive.values()) > 1e-2  # the test can tell the two apart, for every parameter


def test_pynative_and_gradient_checkpointing_give_the_same_gradients():
    """The eager path (``jit=False``, where ``GatherFeatures``'s custom backward runs in PyNative)
    gives the compiled path's gradients; recomputing the transformer blocks changes nothing."""
    _, model = torch_pair(VIT, seed=2)
    images, tokens = make_batch(VIT, 4, seed=3)
    optimizer = training.create_optimizer(model)
    _, compiled = training.Trainer(model, optimizer).loss_and_grads(Tensor(images), Tensor(tokens))
    _, eager = training.Trainer(model, optimizer, jit=False).loss_and_grads(Tensor(images), Tensor(tokens))
    worst = max(rel(e.asnumpy(), c.asnumpy()) for e, c in zip(eager, compiled))
    print("pynative vs graph", worst)
    assert worst <= 1e-6
    training.enable_grad_checkpointing(model)
    _, recomputed = training.Trainer(model, optimizer).loss_and_grads(Tensor(images), Tensor(tokens))
    assert all(np.array_equal(r.asnumpy(), c.asnumpy()) for r, c in zip(recomputed, compiled))


# -- locks and BatchNorm --------------------------------------------------------------------------
def _train_two_steps(model, config, lr=1e-2):
    trainer = training.Trainer(model, training.create_optimizer(model, lr=lr))
    for step in range(2):
        images, tokens = make_batch(config, 4, seed=20 + step)
        trainer.train_step(Tensor(images), Tensor(tokens))
    return trainer


def test_locks_vit():
    """LiT-style locks on a ViT: locked parameters are bit-identical after two steps, every unlocked
    one moved; the groups are open_clip's (embeddings, blocks, [last block + ln_post], proj)."""
    _, model = torch_pair(VIT, seed=4)
    assert [g for g, _ in training.image_groups(model)] == ["embeddings", "block0", "block1", "proj"]
    assert [g for g, _ in training.text_groups(model)] == ["embeddings", "block0", "block1", "proj"]
    training.lock_image(model, unlocked_groups=2)  # [block1 + ln_post] and proj stay trainable
    training.lock_text(model, unlocked_layers=1)  # text_projection only
    expected = {n for n, _ in model.parameters_and_names()
                if n.startswith(("visual.transformer.resblocks.1.", "visual.ln_post.")) or
                n in ("visual.proj", "text_projection", "logit_scale")}
    assert {n for n, p in model.parameters_and_names() if p.requires_grad} == expected
    before = weights(model)
    trainer = _train_two_steps(model, VIT)
    assert sorted(trainer.param_names) == sorted(expected)
    after = weights(model)
    for name in before:
        if name in expected:
            assert not np.array_equal(after[name], before[name]), f"unlocked {name} did not move"
        else:
            assert np.array_equal(after[name], before[name]), f"locked {name} changed"
    # a second call with another count re-opens groups (progressive unfreezing)
    training.lock_image(model, unlocked_groups=4)
    assert all(p.requires_grad for n, p in model.parameters_and_names() if n.startswith("visual."))


def test_locks_resnet_and_batch_norm():
    """ResNet: BatchNorms trained in training mode (``freeze_batch_norm_stats=False``), image tower
    locked except ``attnpool``; the frozen BatchNorms' statistics and parameters do not move
    although the model is in training mode, and the attention pool and text tower learn.
    Then a BatchNorm that is not frozen does update its statistics (so the check can fail)."""
    _, model = torch_pair(RESNET, seed=5, train_batch_norm=True)
    assert [g for g, _ in training.image_groups(model)] == ["stem", "layer1", "layer2", "layer3", "layer4",
                                                            "attnpool"]
    training.lock_image(model, unlocked_groups=1, freeze_bn_stats=True)
    bn_cells = training.batch_norm_cells(model.visual)
    assert len(bn_cells) == 3 + 4 * 4  # stem, 3 per bottleneck + the downsampling BatchNorm
    assert all(training.is_frozen_batch_norm(bn) for _, bn in bn_cells)
    before = weights(model)
    trainer = _train_two_steps(model, RESNET)
    assert model.visual.training and not model.visual.bn1.training  # frozen BatchNorm stays in eval mode
    after = weights(model)
    trained = set(trainer.param_names)
    assert trained == {n for n in before if n.startswith("visual.attnpool.") or not n.startswith("visual.")}
    for name in before:
        moved = not np.array_equal(after[name], before[name])
        assert moved == (name in trained), f"{name}: moved={moved}, trained={name in trained}"

    # unfrozen BatchNorms in training mode: statistics move at every step (with gradient
    # accumulation too, whose feature-cache pass puts them back), gains learn
    training.unfreeze_batch_norm(model.visual.layer4)
    training.lock_image(model, unlocked_groups=2, freeze_bn_stats=True)  # layer4 + attnpool
    trainer = training.Trainer(model, training.create_optimizer(model, lr=1e-2), accum_freq=2)
    layer4_stats = [n for n in before if n.startswith("visual.layer4.") and "moving_" in n]
    assert len(layer4_stats) == 8
    history = [weights(model)]
    for step in range(2):
        images, tokens = make_batch(RESNET, 4, seed=20 + step)
        trainer.train_step(Tensor(images), Tensor(tokens))
        history.append(weights(model))
    for before, after in zip(history, history[1:]):
        assert all(not np.array_equal(after[n], before[n]) for n in layer4_stats)
        assert not np.array_equal(after["visual.layer4.0.bn1.gamma"], before["visual.layer4.0.bn1.gamma"])
        assert np.array_equal(after["visual.layer3.0.bn1.moving_mean"], before["visual.layer3.0.bn1.moving_mean"])


# -- optimiser pieces on hand-computed values -----------------------------------------------------
def test_schedules():
    lr = training.make_schedule("cosine", base_lr=1.0, warmup_steps=4, total_steps=12, final_lr=0.1)
    assert [lr(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr(4) == 1.0 and lr(8) == pytest.approx(0.55) and lr(12) == 0.1 and lr(20) == 0.1
    assert lr(10) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.75)))
    constant = training.make_schedule("constant", base_lr=3e-4, warmup_steps=3)
    assert [constant(s) for s in range(5)] == pytest.approx([1e-4, 2e-4, 3e-4, 3e-4, 3e-4])
    assert training.constant_lr(0, base_lr=2.0) == 2.0
    assert training.describe_schedule(lr) == {"name": "cosine", "base_lr": 1.0, "warmup_steps": 4,
                                              "total_steps": 12, "final_lr": 0.1}
    with pytest.raises(ValueError):
        training.make_schedule("linear", base_lr=1.0)
    with pytest.raises(TypeError):
        training.make_schedule("cosine", base_lr=1.0)  # total_steps missing


def test_weight_decay_groups_and_presets():
    """One rule: matrices are decayed except the positional embeddings; vectors and scalars never.
    Presets and per-family betas/eps, overridable; the optimiser keeps the model's names."""
    model = CLIP(**VIT)
    training.make_trainable(model)
    groups = {g["name"]: g["param_names"] for g in training.create_optimizer(model).param_groups}
    expected_decay = {"token_embedding.embedding_table", "text_projection", "visual.conv1.weight", "visual.proj"}
    for tower in ("transformer", "visual.transformer"):
        for i in range(2):
            block = f"{tower}.resblocks.{i}"
            expected_decay |= {f"{block}.attn.in_proj_weight", f"{block}.attn.out_proj.weight",
                               f"{block}.mlp.c_fc.weight", f"{block}.mlp.c_proj.weight"}
    assert set(groups["decay"]) == expected_decay
    no_decay = set(groups["no_decay"])
    assert {"logit_scale", "positional_embedding", "visual.positional_embedding", "visual.class_embedding",
            "ln_final.gamma", "ln_final.beta", "visual.transformer.resblocks.0.attn.in_proj_bias",
            "transformer.resblocks.1.mlp.c_fc.bias"} <= no_decay
    assert len(no_decay) + len(expected_decay) == len(list(model.get_parameters()))
    assert {n for n, _ in model.parameters_and_names()} == no_decay | expected_decay  # names unchanged

    vit = training.create_optimizer(model).param_groups[1]
    assert (vit["lr"], vit["weight_decay"], vit["betas"], vit["eps"]) == (5e-4, 0.2, (0.9, 0.98), 1e-6)
    fine = training.create_optimizer(model, preset="finetune", eps=1e-8).param_groups[1]
    assert (fine["lr"], fine["weight_decay"], fine["eps"]) == (1e-5, 0.1, 1e-8)
    assert training.optimizer_defaults(CLIP(**RESNET))["betas"] == (0.9, 0.999)
    assert training.optimizer_defaults(CLIP(**RESNET))["eps"] == 1e-8


def test_adamw_and_clamp_by_hand():
    """One AdamW step computed by hand; the no-decay group does not shrink; clipping and the
    ``logit_scale`` clamp."""
    decayed = ms.Parameter(Tensor(np.array([1.0, -2.0], np.float32)), name="w")
    kept = ms.Parameter(Tensor(np.array([1.0], np.float32)), name="b")
    optimizer = training.AdamW([{"params": [decayed], "weight_decay": 0.5}, {"params": [kept], "weight_decay": 0.0}],
                               lr=0.1, betas=(0.9, 0.999), eps=1e-8)
    optimizer((Tensor(np.array([0.5, 0.0], np.float32)), Tensor(np.array([0.0], np.float32))))
    # w * (1 - 0.1 * 0.5); m = 0.05, v = 2.5e-4 -> step 0.1 * 0.5 / (0.5 + 1e-8); zero gradient: no step
    np.testing.assert_allclose(decayed.asnumpy(), [0.95 - 0.1 * 0.5 / (0.5 + 1e-8), -1.9], rtol=1e-6)
    assert kept.asnumpy()[0] == 1.0
    s1, s2 = optimizer.moment_scale[0]  # the held moments are PyTorch's times these factors
    np.testing.assert_allclose(optimizer.exp_avg[0].asnumpy() / s1, [0.05, 0.0], rtol=1e-6)
    np.testing.assert_allclose(optimizer.exp_avg_sq[0].asnumpy() / s2, [2.5e-4, 0.0], rtol=1e-6)
    assert optimizer.step_count == 1 and optimizer.exp_avg[0].name == "exp_avg.w" and decayed.name == "w"

    grads = (Tensor(np.array([3.0, 0.0], np.float32)), Tensor(np.array([4.0], np.float32)))
    clipped, norm = training.clip_by_global_norm(grads, 1.0)
    assert float(norm.asnumpy()) == pytest.approx(5.0)
    np.testing.assert_allclose(clipped[0].asnumpy(), [0.6, 0.0], rtol=1e-5)
    same, _ = training.clip_by_global_norm(grads, 10.0)
    np.testing.assert_array_equal(same[1].asnumpy(), [4.0])

    model = CLIP(**VIT)
    for value, expected in ((5.0, math.log(100)), (-0.5, 0.0), (2.0, 2.0)):
        model.logit_scale.set_data(Tensor(np.float32(value)))
        training.clamp_logit_scale(model)
        assert float(model.logit_scale.asnumpy()) == pytest.approx(expected, abs=1e-7)


def _float64_adamw(p, grads, lrs, beta1, beta2, eps, weight_decay):
    """torch.optim.AdamW's update in float64: the weights and the two moments after the steps."""
    p, m, v = p.astype(np.float64), np.zeros(p.shape), np.zeros(p.shape)
    for t, (g, lr) in enumerate(zip(grads, lrs), 1):
        g = g.astype(np.float64)
        p = p * (1 - lr * weight_decay)
        m, v = beta1 * m + (1 - beta1) * g, beta2 * v + (1 - beta2) * g * g
        p = p - lr / (1 - beta1 ** t) * m / (np.sqrt(v) / math.sqrt(1 - beta2 ** t) + eps)
    return p, m, v


@pytest.mark.parametrize("betas, eps", [((0.9, 0.999), 1e-8), ((0.9, 0.98), 1e-6)])
def test_fused_and_written_adamw_match_a_float64_adamw(betas, eps, monkeypatch):
    """Five steps of both updates against AdamW in float64, gradients over four decades: the
    updates agree to float32 rounding (seen: ~1e-7), the moments to PyTorch's times
    ``moment_scale``. The fused kernel without its moment factors is shown to be caught (6.6e-6 for
    beta2 = 0.999: the kernel's float32 ``1 - beta2``)."""
    rng = np.random.default_rng(5)
    start = (rng.standard_normal(20000) * 1e-3).astype(np.float32)  # small: the update is not lost to p's rounding
    grads = [(rng.standard_normal(20000) * 10.0 ** rng.uniform(-4, 0, 20000)).astype(np.float32) for _ in range(5)]
    lrs = [1e-3, 2e-3, 3e-3, 2e-3, 1e-3]
    ref, ref_m, ref_v = _float64_adamw(start, grads, lrs, *betas, eps, 0.2)

    def run(fused):
        w = ms.Parameter(Tensor(start.copy()), name="w")
        optimizer = training.AdamW([w], betas=betas, eps=eps, weight_decay=0.2, fused=fused)
        for g, lr in zip(grads, lrs):
            optimizer.set_lr(lr)
            optimizer((Tensor(g),))
        s1, s2 = optimizer.moment_scale[0]
        return (rel(w.asnumpy() - start, ref - start), rel(optimizer.exp_avg[0].asnumpy() / s1, ref_m),
                rel(optimizer.exp_avg_sq[0].asnumpy() / s2, ref_v))

    for fused in (True, False):
        update, m, v = run(fused)
        report.record("training", f"AdamW {'fused' if fused else 'written-out'} betas {betas}: update rel. diff "
                                  f"{update:.1e}, moments {m:.1e} {v:.1e} (float64 reference)")
        assert max(update, m, v) <= 1e-6, (fused, update, m, v)
    if betas[1] == 0.999:
        monkeypatch.setattr(optim, "moment_scales", lambda betas: (1.0, 1.0))
        update, _, v = run(True)
        assert update > 3e-6 and v > 1e-5, (update, v)


def test_optimizer_state_with_other_moment_factors():
    """Moments saved by the written-out update (PyTorch's) load into the fused one rescaled, and
    the fused update then continues as the written-out one does; a wrong ``moment_scale`` shape is refused."""
    rng = np.random.default_rng(2)
    start = (rng.standard_normal(64) * 1e-3).astype(np.float32)
    grads = [rng.standard_normal(64).astype(np.float32) for _ in range(4)]
    made = {}
    for fused in (False, True):
        w = ms.Parameter(Tensor(start.copy()), name="w")
        made[fused] = (w, training.AdamW([w], lr=1e-3, fused=fused))
    (w_written, written), (w_fused, fused) = made[False], made[True]
    for g in grads[:2]:
        written((Tensor(g),))
    state = written.state_dict()
    assert state["moment_scale"].tolist() == [[1.0, 1.0]]
    fused.load_state_dict(state)
    ops.assign(w_fused, Tensor(w_written.asnumpy()))
    s1, s2 = fused.moment_scale[0]
    assert s2 != 1.0
    np.testing.assert_allclose(fused.exp_avg_sq[0].asnumpy(), state["exp_avg_sq.w"] * s2, rtol=3e-7)  # 1-2 ulp
    for g in grads[2:]:
        written((Tensor(g),))
        fused((Tensor(g),))
    assert fused.step_count == written.step_count == 4
    assert rel(w_fused.asnumpy() - start, w_written.asnumpy().astype(np.float64) - start) < 1e-6
    with pytest.raises(ValueError, match="moment_scale"):
        fused.load_state_dict({**state, "moment_scale": np.ones(2)})


def test_loss_by_hand_and_data_parallel_gradients():
    """``ClipLoss`` on a hand-computed case; and two data-parallel processes simulated in one
    (the collectives replaced by functions): each process's loss uses its rows against all rows
    with labels offset by ``B * rank``, and the process gradients — through ``GatherFeatures``'s
    backward, averaged — equal the gradients of the loss of the whole batch on one process."""
    image = Tensor(np.array([[1.0, 0.0], [0.0, 1.0]], np.float32))
    text = Tensor(np.array([[1.0, 0.0], [0.6, 0.8]], np.float32))
    scale = Tensor(np.float32(math.log(2.0)))
    logits = 2.0 * np.array([[1.0, 0.6], [0.0, 0.8]])
    ce = lambda m: np.mean([np.log(np.exp(m[i]).sum()) - m[i, i] for i in range(2)])  # noqa: E731
    assert float(training.ClipLoss()(image, text, scale).asnumpy()) == pytest.approx((ce(logits) + ce(logits.T)) / 2,
                                                                                 rel=1e-6)

    world, b, dim = 2, 3, 4
    rng = np.random.default_rng(6)
    features = [training.normalize(Tensor(rng.standard_normal((world * b, dim)).astype(np.float32))) for _ in "it"]
    scale = Tensor(np.float32(math.log(10.0)))
    whole = ms.grad(lambda i, t, s: training.ClipLoss()(i, t, s), grad_position=(0, 1, 2))
    expected = whole(features[0], features[1], scale)

    def rank_loss(rank, other_grads, recorded):
        """Process ``rank``'s loss and gradients; ``other_grads[k]`` is what the other process
        computed for the ``k``-th all-reduce (in backward order), ``recorded`` collects ours."""
        local = [f[rank * b:(rank + 1) * b] for f in features]
        calls = []

        def all_gather(x):  # x: this process's image or text rows; the other process's are constants
            kind = 0 if ops.equal(x, local[0]).all() else 1
            blocks = [ops.stop_gradient(features[kind][r * b:(r + 1) * b]) for r in range(world)]
            blocks[rank] = x
            return ops.cat(blocks)

        def all_reduce(dout):
            recorded.append(dout)
            k = len(calls)
            calls.append(k)
            return dout + other_grads[k] if other_grads else dout

        gather = training.GatherFeatures(rank, world, all_gather=all_gather, all_reduce=all_reduce)
        loss = training.ClipLoss(rank, world, gather=gather)
        return ms.value_and_grad(lambda i, t, s: loss(i, t, s), grad_position=(0, 1, 2))(local[0], local[1], scale)

    own = [[], []]
    # first pass: each process's loss, recording the gradients it sends into the all-reduces
    losses = [rank_loss(r, None, own[r])[0] for r in range(world)]
    mean_loss = float(np.mean([l.asnumpy() for l in losses]))
    assert mean_loss == pytest.approx(float(training.ClipLoss()(features[0], features[1], scale).asnumpy()), rel=1e-6)
    for rank in range(world):
        _, (grad_image, grad_text, grad_scale) = rank_loss(rank, own[1 - rank], [])
        rows = slice(rank * b, (rank + 1) * b)
        # parameter gradients are averaged over processes: the local rows' share is grad / world
        np.testing.assert_allclose(grad_image.asnumpy() / world, expected[0].asnumpy()[rows], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(grad_text.asnumpy() / world, expected[1].asnumpy()[rows], rtol=1e-5, atol=1e-7)
    grad_scales = [rank_loss(r, own[1 - r], [])[1][2].asnumpy() for r in range(world)]
    np.testing.assert_allclose(np.mean(grad_scales), expected[2].asnumpy(), rtol=1e-5)
    with pytest.raises(ValueError):
        identity = lambda x: x  # noqa: E731
        training.ClipLoss(rank=1, world_size=2,
                          gather=training.GatherFeatures(0, 2, all_gather=identity, all_reduce=identity))


# -- checkpoints ------------------------------------------------------------------------------------
def test_checkpoint_resume_is_exact(tmp_path):
    """Six uninterrupted steps vs three steps, a checkpoint, new model/optimiser/trainer objects,
    ``resume`` and three more steps: identical losses and weights, bit for bit. The weights file
    loads with ``clip.load``; a checkpoint whose files do not belong together is refused."""
    def fresh_trainer():
        model = build_model(initial)
        training.make_trainable(model)
        optimizer = training.create_optimizer(model, lr=2e-3)
        schedule = training.make_schedule("cosine", base_lr=2e-3, warmup_steps=2, total_steps=6)
        return training.Trainer(model, optimizer, schedule=schedule, grad_clip_norm=5.0)

    _, source = torch_pair(VIT, seed=7)
    initial = weights(source)
    batches = [make_batch(VIT, 8, seed=30 + s) for s in range(6)]
    first = fresh_trainer()
    losses = []
    for step, (images, tokens) in enumerate(batches):
        if step == 3:
            first.epoch = 1
            path = training.save_checkpoint(str(tmp_path / "ckpt"), first, extra={"batch": 3})
        losses.append(first.train_step(Tensor(images), Tensor(tokens))["loss"])

    second = fresh_trainer()
    state = training.resume(path, second)
    assert (second.step, second.epoch, state["extra"]) == (3, 1, {"batch": 3})
    resumed = [second.train_step(Tensor(i), Tensor(t))["loss"] for i, t in batches[3:]]
    print("uninterrupted", losses[3:], "resumed", resumed)
    assert resumed == losses[3:]
    final, final_resumed = weights(first.model), weights(second.model)
    assert all(np.array_equal(final[n], final_resumed[n]) for n in final)
    for a, b in zip(first.optimizer.exp_avg_sq, second.optimizer.exp_avg_sq):
        assert np.array_equal(a.asnumpy(), b.asnumpy())
    # resuming into a trainer whose graphs are compiled already: they see the restored values
    training.resume(path, first)
    again = [first.train_step(Tensor(i), Tensor(t))["loss"] for i, t in batches[3:]]
    assert again == losses[3:]

    loaded, _ = clip.load(os.path.join(path, training.WEIGHTS_FILE), device="CPU")
    saved = training.load_checkpoint(path)["model"]
    assert all(np.array_equal(p.asnumpy(), saved[n].reshape(p.shape)) for n, p in loaded.parameters_and_names())
    assert not np.array_equal(saved["visual.proj"], initial["visual.proj"])  # trained weights were saved

    other = training.save_checkpoint(str(tmp_path / "later"), first)
    shutil.copy(os.path.join(other, training.WEIGHTS_FILE), os.path.join(path, training.WEIGHTS_FILE))
    with pytest.raises(ValueError, match="SHA-256"):
        training.load_checkpoint(path)
    changed = fresh_trainer()
    changed.schedule = training.make_schedule("constant", base_lr=1.0)
    with pytest.raises(ValueError, match="schedule"):
        training.resume(other, changed)
    # states written before the whole architecture was recorded hold the part the weights tell;
    # they resume, and another architecture does not
    state = first.state_dict()
    state["config"] = {k: v for k, v in state["config"].items() if k not in ("vision_heads", "quick_gelu")}
    fresh_trainer().load_state_dict(state)
    state["config"]["transformer_layers"] += 1
    with pytest.raises(ValueError, match="another config"):
        fresh_trainer().load_state_dict(state)


# -- WiSE-FT ----------------------------------------------------------------------------------------
def test_wise_ft():
    """alpha 0 and 1 give the end points bit for bit; 0.3 gives the mix; mismatched models refused."""
    _, zero_shot = torch_pair(VIT, seed=8)
    _, fine_tuned = torch_pair(VIT, seed=9)
    theta_0, theta_1 = weights(zero_shot), weights(fine_tuned)
    for alpha, end in ((0.0, theta_0), (1.0, theta_1)):
        mixed = training.interpolate_weights(zero_shot, fine_tuned, alpha)
        assert all(mixed[n].tobytes() == end[n].tobytes() for n in end)
        model = training.wise_ft(zero_shot, fine_tuned, alpha)
        assert all(p.asnumpy().tobytes() == end[n].tobytes() for n, p in model.parameters_and_names())
    mixed = training.interpolate_weights(theta_0, theta_1, 0.3)
    for name in theta_0:
        np.testing.assert_allclose(mixed[name], 0.7 * theta_0[name] + 0.3 * theta_1[name], rtol=1e-6, atol=1e-7)
        assert mixed[name].dtype == np.float32
    with pytest.raises(ValueError):
        training.interpolate_weights(theta_0, {k: v for k, v in theta_1.items() if k != "visual.proj"}, 0.5)


# -- from scratch ---------------------------------------------------------------------------------
def test_training_from_scratch_reduces_the_loss():
    """``CLIP(**config)`` + ``init_parameters`` (OpenAI's initialisation) + ``make_trainable`` with
    BatchNorm in training mode: a few steps on one batch lower the loss."""
    model = training.init_parameters(CLIP(**VIT), seed=0)
    table = model.token_embedding.embedding_table.asnumpy()
    assert abs(table.std() - 0.02) < 1e-3 and float(model.logit_scale.asnumpy()) == pytest.approx(math.log(1 / 0.07))
    training.make_trainable(model, freeze_batch_norm_stats=False)
    trainer = training.Trainer(model, training.create_optimizer(model, lr=1e-3))
    images, tokens = make_batch(VIT, 8, seed=40)
    losses = [trainer.train_step(Tensor(images), Tensor(tokens))["loss"] for _ in range(5)]
    print("from scratch", losses)
    assert np.isfinite(losses).all() and losses[-1] < losses[0] - 0.1
