"""open_clip's pretrained tags for the architectures of :mod:`clip.open_clip` (data in
``pretrained.json``) and their download through the project's verified cache."""
import json
import os

from .. import _download

__all__ = ["list_pretrained", "get_pretrained_cfg", "download_pretrained", "HF_WEIGHTS_FILE"]

_HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(_HERE, "pretrained.json"), encoding="utf-8") as _f:
    _TABLE = json.load(_f)["pretrained"]

#: the file of a Hugging Face hub repository that open_clip reads (PyTorch zip state dict)
HF_WEIGHTS_FILE = "open_clip_pytorch_model.bin"
HF_BASE_URL = "https://huggingface.co"


def list_pretrained(as_str: bool = False):
    """``[(model_name, tag), ...]`` of every known pretrained tag, or ``"name:tag"`` strings."""
    pairs = [(model, tag) for model, tags in _TABLE.items() for tag in tags]
    return [f"{m}:{t}" for m, t in pairs] if as_str else pairs


def get_pretrained_cfg(model_name: str, tag: str) -> dict:
    """The table entry of ``model_name:tag`` (``{}`` when the tag is unknown)."""
    tags = _TABLE.get(model_name.replace("/", "-"), {})
    return dict(tags.get(tag.lower(), tags.get(tag, {})))


def source_url(cfg: dict) -> str:
    """Where a tag's weights come from: OpenAI's release URL (its SHA-256 is part of it) for
    OpenAI's tags, else the Hugging Face hub file open_clip reads."""
    if cfg.get("sha256") and cfg.get("url"):
        return cfg["url"]
    return f"{HF_BASE_URL}/{cfg['hf_hub']}/resolve/main/{HF_WEIGHTS_FILE}"


def download_pretrained(cfg: dict, cache_dir: str = None, sha256: str = None, progress: bool = True) -> str:
    """Download (or find in the cache) the file of a pretrained tag and return its path.

    Goes through :func:`clip._download.download`: streamed to ``<file>.partial``, verified against
    the SHA-256, renamed once verified, resumable, locked. The SHA-256 is the table's (OpenAI's
    files) or ``sha256``; Hugging Face files, whose hash open_clip does not publish, need ``sha256``
    (or a local path as ``pretrained=``), so nothing unverified is ever loaded.
    """
    expected = cfg.get("sha256") or sha256
    url = source_url(cfg)
    if not expected:
        raise RuntimeError(f"no SHA-256 is known for {url}; download it yourself and pass its path as "
                           "pretrained=..., or pass sha256=... to have it downloaded and verified")
    root = _download.default_cache_dir(cache_dir)
    if not cfg.get("sha256"):  # every hub repository names its file the same: one folder per repository
        root = os.path.join(root, "open_clip", cfg.get("hf_hub", "files").replace("/", "--"))
    return _download.download(url, root, expected, progress=progress)
