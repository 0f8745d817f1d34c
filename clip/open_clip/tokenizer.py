"""open_clip's tokenizer for the CLIP architectures: OpenAI's BPE, always truncating."""
import numpy as np
from mindspore import Tensor

from ..clip import _tokenizer

__all__ = ["Tokenizer"]


class Tokenizer:
    """``tokenizer(texts, context_length=None)`` -> int32 ``[N, context_length]`` token ids, as
    open_clip's ``SimpleTokenizer``: start token, BPE ids, end token, zeros; texts that do not fit
    are cut and end with the end token (open_clip never raises for long texts)."""

    def __init__(self, context_length: int = 77):
        self.context_length = int(context_length)
        self.tokenizer = _tokenizer

    def __call__(self, texts, context_length: int = None) -> Tensor:
        """Token ids of a string or a list of strings."""
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
            raise TypeError("texts must be a string or a list of strings")
        length = int(context_length or self.context_length)
        if length < 2:
            raise ValueError(f"context_length must be at least 2, got {length}")
        return Tensor(np.asarray(_tokenizer.token_array(list(texts), length, True), np.int32))

    def encode(self, text: str):
        """BPE ids of ``text`` without start/end tokens."""
        return self.tokenizer.encode(text)

    def decode(self, ids):
        """The text of BPE ids."""
        return self.tokenizer.decode(ids)
