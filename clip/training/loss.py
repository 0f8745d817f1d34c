"""CLIP's contrastive loss, written for data-parallel training.

Each process holds a local batch of ``B`` image-text pairs. The loss compares the local
features with the features of every process (``world_size * B`` candidates) and averages
cross-entropy over both directions, image to text and text to image. The local pair ``i``
sits at row ``rank * B + i`` of the gathered features, which gives the labels.

With the gradient of the gather defined as below and the parameter gradients averaged over
processes (what :class:`clip.training.Trainer` does when ``world_size > 1``), the gradients
equal those of one process computing the loss on the whole global batch.
"""
import mindspore as ms
from mindspore import nn, ops

__all__ = ["GatherFeatures", "AllGatherFeatures", "ClipLoss", "gather_features", "GATHER_BACKWARDS"]

#: how the gradient flows back through the gather: ``"custom"`` (:class:`GatherFeatures`: AllReduce
#: and this rank's rows; works on every backend, needed on CPU) or ``"builtin"``
#: (:class:`AllGatherFeatures`: MindSpore's own backward of AllGather, a ReduceScatter, half the
#: traffic; GPU and Ascend). ``None`` picks by device: builtin on GPU/Ascend, custom on CPU.
GATHER_BACKWARDS = ("custom", "builtin")


class GatherFeatures(nn.Cell):
    """All-gather along the batch axis whose gradient flows back to every process.

    Forward: ``[B, D]`` on each of ``world_size`` processes -> ``[world_size * B, D]``, the
    blocks in rank order (``ops.AllGather``). Backward: the gradients that all processes computed
    for the gathered tensor are summed (``ops.AllReduce``) and this process keeps its own
    ``B`` rows — a reduce-scatter, written out because the built-in backward of ``AllGather``
    needs ``ReduceScatter``, which MindSpore's CPU backend lacks.

    With ``world_size == 1`` it is the identity and needs no communication. ``group`` is the
    communication group (default: the world group).
    """

    def __init__(self, rank: int = 0, world_size: int = 1, group: str = None, all_gather=None, all_reduce=None):
        super().__init__()
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.rank = rank
        self.world_size = world_size
        # the two collectives; replaceable (``all_gather(x)``, ``all_reduce(x)``: sum over processes)
        # for other communication back-ends or to simulate processes in tests
        self.all_gather = all_gather
        self.all_reduce = all_reduce
        if world_size > 1 and (all_gather is None or all_reduce is None):
            from mindspore.communication import GlobalComm

            group = group or GlobalComm.WORLD_COMM_GROUP
            self.all_gather = all_gather or ops.AllGather(group)
            self.all_reduce = all_reduce or ops.AllReduce(ops.ReduceOp.SUM, group)

    def construct(self, x):
        if self.world_size == 1:
            return x
        return self.all_gather(x)  # [world_size * B, D]

    def bprop(self, x, out, dout):
        if self.world_size == 1:
            return (dout,)
        total = self.all_reduce(dout)  # [world_size * B, D]: every process's gradient, summed
        rows = x.shape[0]
        return (total[self.rank * rows:(self.rank + 1) * rows],)  # [B, D]


class AllGatherFeatures(nn.Cell):
    """All-gather along the batch axis with MindSpore's built-in backward (a ReduceScatter of the
    gradients, summed): the same gradients as :class:`GatherFeatures` with half its traffic, on
    backends that have ReduceScatter (GPU, Ascend; not MindSpore 2.10's CPU backend)."""

    def __init__(self, rank: int = 0, world_size: int = 1, group: str = None):
        super().__init__()
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.rank, self.world_size = rank, world_size
        self.all_gather = None
        if world_size > 1:
            from mindspore.communication import GlobalComm

            self.all_gather = ops.AllGather(group or GlobalComm.WORLD_COMM_GROUP)

    def construct(self, x):
        if self.world_size == 1:
            return x
        return self.all_gather(x)  # [world_size * B, D]


def gather_features(rank: int = 0, world_size: int = 1, backward: str = None, device_target: str = None) -> nn.Cell:
    """The gather cell for ``backward`` (see :data:`GATHER_BACKWARDS`; ``None``: by
    ``device_target``, default MindSpore's current one)."""
    if backward is None:
        target = device_target or ms.get_context("device_target")
        backward = "builtin" if target in ("GPU", "Ascend") else "custom"
    if backward not in GATHER_BACKWARDS:
        raise ValueError(f"unknown gather backward {backward!r}; use one of {GATHER_BACKWARDS}")
    return GatherFeatures(rank, world_size) if backward == "custom" else AllGatherFeatures(rank, world_size)


class ClipLoss(nn.Cell):
    """Symmetric InfoNCE loss of CLIP.

    ``loss = (CE(logits_per_image, labels) + CE(logits_per_text, labels)) / 2`` with
    ``logits_per_image = exp(logit_scale) * image_features @ all_text_features.T`` (``[B, W*B]``),
    ``logits_per_text = exp(logit_scale) * text_features @ all_image_features.T`` and
    ``labels = arange(B) + B * rank``; ``W`` is ``world_size``. With ``W == 1`` this is the
    loss of the CLIP paper on the ``B x B`` similarity matrix.

    Args:
        rank: this process's index in the data-parallel group.
        world_size: number of data-parallel processes.
        gather: the cell that gathers features across processes; default
            :func:`gather_features` ``(rank, world_size)`` (the backward suited to the device).

    Inputs:
        - **image_features** ``[B, D]``, L2-normalised.
        - **text_features** ``[B, D]``, L2-normalised.
        - **logit_scale** ``[]``: the model's ``logit_scale`` parameter (the log of the inverse
          temperature, as stored in CLIP); it is exponentiated here.

    Output: the scalar loss (float32).
    """

    def __init__(self, rank: int = 0, world_size: int = 1, gather: nn.Cell = None):
        super().__init__()
        self.rank = rank
        self.world_size = world_size
        if gather is not None and (getattr(gather, "rank", rank), getattr(gather, "world_size", world_size)) != \
                (rank, world_size):
            raise ValueError(f"the gather cell is for rank {gather.rank} of {gather.world_size}, the loss for "
                             f"rank {rank} of {world_size}")
        self.gather = gather if gather is not None else gather_features(rank, world_size)

    def construct(self, image_features, text_features, logit_scale):
        batch = image_features.shape[0]
        all_image_features = self.gather(image_features)  # [W * B, D]
        all_text_features = self.gather(text_features)  # [W * B, D]
        scale = logit_scale.exp().astype(image_features.dtype)
        logits_per_image = scale * ops.matmul(image_features, all_text_features.T)  # [B, W * B]
        logits_per_text = scale * ops.matmul(text_features, all_image_features.T)  # [B, W * B]
        labels = ops.arange(batch, dtype=ms.int32) + batch * self.rank  # [B]
        return (ops.cross_entropy(logits_per_image.astype(ms.float32), labels) +
                ops.cross_entropy(logits_per_text.astype(ms.float32), labels)) / 2
