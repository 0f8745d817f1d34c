"""Run by ``tests/test_distributed.py`` under msrun (2 processes): the gradient of the data-parallel
contrastive loss against one process computing the whole batch, and two naive variants.

    msrun ... python tests/distributed_worker.py OUT.json

Every rank holds the same random tiny ViT and the same global batch of ``2 * B`` pairs, computes
the one-process loss and gradient of the whole batch itself (world size 1: no communication),
then the distributed ones from its own ``B`` rows:

- ``correct``: :class:`clip.training.ClipLoss` with the gather whose gradient flows back to every
  rank (what training uses);
- ``no_grad_through_gather``: the other ranks' features enter the loss as constants (the gather's
  gradient keeps only this rank's own part);
- ``local_logits``: each rank contrasts its own pairs only (MindFormers' multi-card behaviour).

Gradients are averaged over the ranks by the trainer in every case. Rank 0 writes the relative
differences from the one-process gradient (and the losses) to OUT.json.
"""
import json
import sys

import numpy as np
from mindspore import Tensor

from clip import distributed
from clip.model import CLIP
from clip.training import ClipLoss, GatherFeatures, Trainer, create_optimizer, init_parameters, make_trainable

CONFIG = dict(embed_dim=32, image_resolution=32, vision_layers=1, vision_width=64, vision_patch_size=16,
              context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1, transformer_layers=1)
B = 3  # pairs per rank


class OwnRowsOnly(GatherFeatures):
    """The gather of :class:`GatherFeatures` whose gradient keeps only this rank's own loss terms:
    no sum over the ranks (the other ranks' features are constants to this rank's loss)."""

    def bprop(self, x, out, dout):
        rows = x.shape[0]
        return (dout[self.rank * rows:(self.rank + 1) * rows],)


def loss_and_grads(model, loss, world_size, rank, images, texts):
    trainer = Trainer(model, create_optimizer(model), loss=loss, rank=rank, world_size=world_size)
    value, grads = trainer.loss_and_grads(Tensor(images), Tensor(texts))
    return float(value.asnumpy()), np.concatenate([g.asnumpy().ravel() for g in grads])


def main(out):
    ctx = distributed.init("CPU")
    rank, world = ctx.rank, ctx.world_size
    model = init_parameters(CLIP(**CONFIG), seed=0)
    make_trainable(model)
    rng = np.random.default_rng(1)
    images = rng.standard_normal((world * B, 3, 32, 32)).astype(np.float32)
    texts = np.zeros((world * B, 8), np.int32)
    texts[:, 0], texts[:, 7] = 49406, 49407
    texts[:, 1:7] = rng.integers(1, 49000, (world * B, 6))
    mine = slice(rank * B, (rank + 1) * B)

    full_loss, full = loss_and_grads(model, ClipLoss(0, 1), 1, 0, images, texts)
    variants = {
        "correct": ClipLoss(rank, world),
        "no_grad_through_gather": ClipLoss(rank, world, gather=OwnRowsOnly(rank, world)),
        "local_logits": ClipLoss(0, 1),
    }
    result = {"world_size": world, "full_loss": full_loss}
    for name, loss in variants.items():
        value, grads = loss_and_grads(model, loss, world, rank, images[mine], texts[mine])
        result[name] = {"loss": value, "grad_rel_diff": float(np.linalg.norm(grads - full) / np.linalg.norm(full))}
    if ctx.is_main:
        with open(out, "w", encoding="utf-8") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1])
