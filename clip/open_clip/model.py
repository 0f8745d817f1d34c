"""The open_clip flavour of :class:`clip.model.CLIP`: the same network, open_clip's call semantics."""
from mindspore import ops

from ..model import CLIP

__all__ = ["OpenCLIP"]


def _normalize(x):
    return x / x.norm(dim=-1, keepdim=True)  # [N, D], unit rows


class OpenCLIP(CLIP):
    """:class:`clip.model.CLIP` with open_clip's semantics: ``encode_image`` / ``encode_text``
    take ``normalize`` (default ``False``), and ``model(image, text)`` returns
    ``(image_features, text_features, logit_scale.exp())`` with normalised features (either
    input may be ``None``; its features are then ``None``)."""

    def encode_image(self, image, normalize: bool = False):
        """Image features ``[N, embed_dim]`` of ``[N, 3, R, R]`` (or one ``[3, R, R]``) images."""
        features = super().encode_image(image)
        return _normalize(features) if normalize else features

    def encode_text(self, text, normalize: bool = False):
        """Text features ``[N, embed_dim]`` of token ids ``[N, n_ctx]``."""
        features = super().encode_text(text)
        return _normalize(features) if normalize else features

    def construct(self, image=None, text=None):
        image_features = self.encode_image(image, normalize=True) if image is not None else None
        text_features = self.encode_text(text, normalize=True) if text is not None else None
        return image_features, text_features, ops.exp(self.logit_scale)
