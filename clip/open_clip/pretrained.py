"""open_clip's pretrained tags for the architectures of :mod:`clip.open_clip` (data in
``pretrained.json``) and their download through the project's verified cache."""
import json
import os
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request

from .. import _download

__all__ = ["list_pretrained", "get_pretrained_cfg", "download_pretrained", "hub_file_sha256", "HF_WEIGHTS_FILE"]

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


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Keep a redirect as the answer: the hub's headers are on the redirect itself."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def hub_file_sha256(url: str, timeout: float = 30) -> str:
    """The SHA-256 that the Hugging Face hub publishes for a file it stores with Git LFS: the
    ``X-Linked-Etag`` header of the file's ``resolve`` URL (a ``HEAD`` request, whose answer is a
    redirect to the storage). Raises ``RuntimeError`` when there is none (a file not in LFS, another
    server); then pass ``sha256=`` or a local path. Same URL policy as the downloads (https, or
    http to loopback)."""
    _download._check_url(url, "URL")
    handlers = [_NoRedirect(), urllib.request.HTTPSHandler(context=ssl.create_default_context())]
    if _download._is_loopback(urllib.parse.urlsplit(url).hostname or ""):
        handlers.append(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "clip-mindspore"})
    try:
        with urllib.request.build_opener(*handlers).open(request, timeout=timeout) as response:
            headers = response.headers
    except urllib.error.HTTPError as error:
        if error.code not in (301, 302, 303, 307, 308):
            raise RuntimeError(f"{url}: HTTP error {error.code} {error.reason} while asking for its SHA-256") from None
        headers = error.headers
    except (urllib.error.URLError, OSError) as error:
        raise RuntimeError(f"{url}: cannot ask for its SHA-256 ({error})") from None
    value = (headers.get("X-Linked-Etag") or "").strip()
    value = value[2:] if value.startswith("W/") else value
    value = value.strip('"').lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise RuntimeError(f"{url}: the server publishes no SHA-256 for this file (no X-Linked-Etag); "
                           "download it yourself and pass its path as pretrained=..., or pass sha256=...")
    return value


def download_pretrained(cfg: dict, cache_dir: str = None, sha256: str = None, progress: bool = True) -> str:
    """Download (or find in the cache) the file of a pretrained tag and return its path.

    Goes through :func:`clip._download.download`: streamed to ``<file>.partial``, verified against
    the SHA-256, renamed once verified, resumable, locked. The SHA-256 is the table's (OpenAI's
    files), ``sha256``, or else the one the hub publishes for the file (:func:`hub_file_sha256`),
    so nothing unverified is ever loaded.
    """
    url = source_url(cfg)
    expected = cfg.get("sha256") or sha256 or hub_file_sha256(url)
    root = _download.default_cache_dir(cache_dir)
    if not cfg.get("sha256"):  # every hub repository names its file the same: one folder per repository
        root = os.path.join(root, "open_clip", cfg.get("hf_hub", "files").replace("/", "--"))
    return _download.download(url, root, expected, progress=progress)
