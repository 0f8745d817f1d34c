"""Download and cache CLIP checkpoints safely.

The checkpoints are hundreds of megabytes, so this module is careful with the
user's time and disk:

* a cached file is used only when its SHA256 matches the expected hash, and
  then no network access happens at all;
* data is streamed to ``<file>.partial`` while being hashed, flushed to disk
  and moved onto the final name only once verified, so the final name never
  holds a partial or unverified file, even if the process is killed;
* an interrupted transfer is resumed with an HTTP ``Range`` request (falling
  back to a full download when the server ignores it), automatically within a
  call and across calls;
* ``<file>.lock`` serialises processes downloading the same file: the second
  one waits and then uses the verified file;
* every network failure becomes one :class:`DownloadError` that names the URL
  and says what to do.

Environment variables:

``CLIP_CACHE_DIR``
    cache folder used when no ``download_root`` is given
    (default ``~/.cache/clip``).
``CLIP_BASE_URL``
    mirror replacing ``https://openaipublic.azureedge.net/clip/models``; it
    must serve the same ``<sha256>/<file>`` paths, and hashes are still checked.
``CLIP_OFFLINE``
    ``1``/``true``/``yes``/``on``: never use the network, only the cache.

Only the standard library and ``tqdm`` are used.
"""
import hashlib
import http.client
import ipaddress
import os
import re
import socket
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
import warnings

from tqdm import tqdm

__all__ = ["DownloadError", "default_cache_dir", "resolve_url", "download"]

OPENAI_BASE_URL = "https://openaipublic.azureedge.net/clip/models"
CACHE_DIR_ENV = "CLIP_CACHE_DIR"
BASE_URL_ENV = "CLIP_BASE_URL"
OFFLINE_ENV = "CLIP_OFFLINE"

_CHUNK = 1 << 18          # bytes per read/write
_MAX_RESUMES = 3          # automatic resumes after a broken transfer, per call
_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")
_CONTENT_RANGE_RE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


class DownloadError(RuntimeError):
    """A checkpoint could not be downloaded or failed its SHA256 check."""


# ---------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------

def default_cache_dir(download_root=None):
    """Return the cache folder: ``download_root``, else ``$CLIP_CACHE_DIR``,
    else ``~/.cache/clip`` (``~`` is expanded in all three)."""
    if download_root is None or download_root == "":
        download_root = os.environ.get(CACHE_DIR_ENV) or "~/.cache/clip"
    if not isinstance(download_root, (str, os.PathLike)):
        raise TypeError(f"download_root must be a path (str or os.PathLike), "
                        f"got {type(download_root).__name__}")
    return os.path.expanduser(os.fspath(download_root))


def _is_loopback(host):
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(url, what="URL"):
    """Allow https anywhere, http only for loopback hosts; raise ValueError."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if not host:
        raise ValueError(f"{what} {url!r} has no host name")
    scheme = parts.scheme.lower()
    if scheme == "https":
        return
    if scheme == "http" and _is_loopback(host):
        return
    if scheme == "http":
        raise ValueError(f"{what} {url!r} uses plain http, which is only allowed for "
                         f"loopback hosts (127.0.0.0/8, localhost, ::1); use https")
    raise ValueError(f"{what} {url!r} has unsupported scheme {parts.scheme!r}; "
                     f"only https (or http to a loopback host) is allowed")


def resolve_url(url):
    """Return the URL to fetch for ``url``.

    If ``$CLIP_BASE_URL`` is set, OpenAI's prefix
    ``https://openaipublic.azureedge.net/clip/models`` is replaced by it,
    keeping the ``<sha256>/<file>`` tail. The result must be https, or http to
    a loopback host; anything else raises ``ValueError``.
    """
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, got {type(url).__name__}")
    base = os.environ.get(BASE_URL_ENV, "").strip()
    if base and url.startswith(OPENAI_BASE_URL + "/"):
        _check_url(base, f"${BASE_URL_ENV}")
        url = base.rstrip("/") + url[len(OPENAI_BASE_URL):]
    _check_url(url)
    return url


def _offline():
    value = os.environ.get(OFFLINE_ENV, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"${OFFLINE_ENV}={os.environ[OFFLINE_ENV]!r} is not understood; "
                     f"use 1/true/yes/on or 0/false/no/off")


def _parse_url(url, expected_sha256):
    """Return (file name, lower-case expected sha256) for a model URL."""
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, got {type(url).__name__}")
    segments = urllib.parse.urlsplit(url).path.split("/")
    name = urllib.parse.unquote(segments[-1])
    if name in ("", ".", "..") or any(c in name for c in "/\\\0"):
        raise ValueError(f"cannot take a file name from the last part of URL {url!r}")
    if expected_sha256 is None:
        expected_sha256 = segments[-2] if len(segments) >= 2 else ""
        if not _SHA256_RE.fullmatch(expected_sha256):
            raise ValueError(f"URL {url!r} has no SHA256 (64 hex characters) as its "
                             f"second-to-last path part; pass expected_sha256")
    elif not isinstance(expected_sha256, str) or not _SHA256_RE.fullmatch(expected_sha256):
        raise ValueError(f"expected_sha256 must be 64 hex characters, got {expected_sha256!r}")
    return name, expected_sha256.lower()


# ---------------------------------------------------------------------------
# local files
# ---------------------------------------------------------------------------

def _sha256_file(path):
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            hasher.update(chunk)
    return hasher


def _stat_key(path):
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _cache_state(target, expected, known=None):
    """Return ("ok" | "missing" | "corrupt", stat key) for the cached file.

    ``known`` is an earlier result; it is reused if the file did not change.
    """
    if not os.path.lexists(target):
        return "missing", None
    if not os.path.isfile(target):
        raise DownloadError(f"{target} exists and is not a regular file; "
                            f"remove it or choose another download_root")
    key = _stat_key(target)
    if known is not None and known[1] == key:
        return known
    ok = _sha256_file(target).hexdigest() == expected
    return ("ok" if ok else "corrupt"), key


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _fsync_dir(folder):
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd):
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _wait_lock(fd):
        while True:
            os.lseek(fd, 0, os.SEEK_SET)
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # gives up after ~10 s
                return
            except OSError:
                continue

    def _unlock(fd):
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _try_lock(fd):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _wait_lock(fd):
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock(fd):
        fcntl.flock(fd, fcntl.LOCK_UN)


class _FileLock:
    """Exclusive inter-process lock on ``path``, released by the OS if the
    holder dies. On POSIX the lock file is removed on release; a waiter that
    locked a file which was meanwhile removed retries on the new one."""

    def __init__(self, path, announce):
        self.path = path
        self.announce = announce
        self.fd = None

    def __enter__(self):
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise DownloadError(f"cannot create lock file {self.path} ({e}); make the "
                                    f"cache folder writable or set ${CACHE_DIR_ENV} / "
                                    f"download_root to another folder") from e
            try:
                if not _try_lock(fd):
                    if self.announce:
                        print(f"Waiting for another process downloading to the same file "
                              f"(lock {self.path})", file=sys.stderr, flush=True)
                    _wait_lock(fd)
                if os.name != "posix":
                    break
                try:
                    same = os.path.samestat(os.fstat(fd), os.stat(self.path))
                except FileNotFoundError:
                    same = False
                if same:
                    break
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        self.fd = fd
        return self

    def __exit__(self, *exc):
        try:
            if os.name == "posix":
                _remove(self.path)
            _unlock(self.fd)
        finally:
            os.close(self.fd)
            self.fd = None


# ---------------------------------------------------------------------------
# network
# ---------------------------------------------------------------------------

class _SafeRedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to URLs allowed by the scheme policy."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        try:
            _check_url(newurl, "redirect target")
        except ValueError as e:
            raise urllib.error.HTTPError(newurl, code, f"refused redirect: {e}", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(url):
    handlers = [_SafeRedirectHandler(),
                urllib.request.HTTPSHandler(context=ssl.create_default_context())]
    if _is_loopback(urllib.parse.urlsplit(url).hostname or ""):
        handlers.append(urllib.request.ProxyHandler({}))  # a proxy cannot reach our loopback
    return urllib.request.build_opener(*handlers)


def _describe(exc, timeout):
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP error {exc.code} {exc.reason}"
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"timed out after {timeout:g} s"
    return f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__


def _local_error(path, exc):
    return DownloadError(f"cannot write {path} ({exc}); free some disk space or set "
                         f"${CACHE_DIR_ENV} / download_root to another folder")


class _Interrupted(Exception):
    """The transfer broke after ``received`` new bytes."""

    def __init__(self, reason, received):
        super().__init__(reason)
        self.reason = reason
        self.received = received


class _RangeRejected(Exception):
    """The server refused or garbled our Range request."""


def _fetch(opener, url, partial, offset, hasher, name, timeout, progress):
    """Make one request and write the body to ``partial``, appending to its
    first ``offset`` bytes (hashed in ``hasher``) if the server honours Range.
    Return (hasher of the whole file, resumed?)."""
    headers = {"User-Agent": "clip-mindspore", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    response = opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    with response:
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.strip().isdigit() else None
        if response.status == 206:
            match = _CONTENT_RANGE_RE.match(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                raise _RangeRejected()
            total = int(match.group(2)) + 1
        else:  # the whole file: the server ignored (or was not sent) Range
            offset, hasher = 0, hashlib.sha256()
            total = length
        read = getattr(response, "read1", response.read)  # read1: whatever has arrived
        received = 0
        try:
            f = open(partial, "ab" if offset else "wb")
        except OSError as e:
            raise _local_error(partial, e) from e
        with f, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                     unit_divisor=1024, desc=name, disable=not progress) as bar:
            while True:
                try:
                    chunk = read(_CHUNK)
                except (OSError, http.client.HTTPException) as e:
                    raise _Interrupted(e, received) from e
                if not chunk:
                    break
                try:
                    f.write(chunk)
                except OSError as e:
                    raise _local_error(partial, e) from e
                hasher.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
            try:
                f.flush()
                os.fsync(f.fileno())
            except OSError as e:
                raise _local_error(partial, e) from e
    if total is not None and offset + received != total:
        raise _Interrupted(ConnectionError(f"connection closed after {offset + received} "
                                           f"of {total} bytes"), received)
    return hasher, offset > 0


def _advice(target, source, original):
    mirror = f" (mirror of {original} set by ${BASE_URL_ENV})" if source != original else ""
    return (f"{mirror}. Check your network connection, proxy settings (https_proxy) and "
            f"${BASE_URL_ENV}; or download the file elsewhere and pass its path to "
            f"clip.load(), or place it at {target}")


def _download_locked(source, original, target, expected, name, timeout, progress):
    """Download into ``<target>.partial``, verify, then move onto ``target``.
    Must be called with the lock held."""
    partial = target + ".partial"
    opener = _opener(source)
    resumes_left = _MAX_RESUMES
    restarted = False
    while True:
        offset = os.path.getsize(partial) if os.path.isfile(partial) else 0
        hasher = _sha256_file(partial) if offset else hashlib.sha256()
        if offset and hasher.hexdigest() == expected:
            break  # a previous run was killed between download and rename
        try:
            hasher, resumed = _fetch(opener, source, partial, offset, hasher, name,
                                     timeout, progress)
        except _RangeRejected:
            if restarted:
                raise DownloadError(f"Failed to download {source}: the server answered the "
                                    f"Range request incorrectly" + _advice(target, source, original))
            _remove(partial)
            restarted = True
            continue
        except urllib.error.HTTPError as e:
            if e.code == 416 and os.path.isfile(partial) and not restarted:
                _remove(partial)  # the partial file is longer than the file served
                restarted = True
                continue
            raise DownloadError(f"Failed to download {source}: {_describe(e, timeout)}"
                                + _advice(target, source, original)) from e
        except _Interrupted as e:
            have = os.path.getsize(partial) if os.path.isfile(partial) else 0
            if e.received > 0 and resumes_left > 0:
                resumes_left -= 1
                continue
            raise DownloadError(f"Download of {source} was interrupted after {have} bytes "
                                f"({_describe(e.reason, timeout)}); run again to resume from "
                                f"{partial}" + _advice(target, source, original)) from e.reason
        except (OSError, http.client.HTTPException) as e:  # includes URLError
            raise DownloadError(f"Failed to download {source}: {_describe(e, timeout)}"
                                + _advice(target, source, original)) from e
        actual = hasher.hexdigest()
        if actual == expected:
            break
        _remove(partial)
        if resumed and not restarted:
            restarted = True  # resumed bytes may come from another file: start over once
            continue
        raise DownloadError(f"SHA256 mismatch for {source}: expected {expected}, got {actual}; "
                            f"the download was discarded. The server or a proxy served a "
                            f"different file" + _advice(target, source, original))
    os.replace(partial, target)
    _fsync_dir(os.path.dirname(os.path.abspath(target)))


def download(url, root=None, expected_sha256=None, *, progress=True, timeout=60):
    """Return the path of the verified file for ``url`` in ``root``, downloading
    it if needed.

    ``url`` is an OpenAI model URL ``.../<sha256>/<file>``; the file is stored
    as ``root/<file>`` (``root`` defaults to :func:`default_cache_dir`). The
    expected SHA256 defaults to the URL's second-to-last path part. ``timeout``
    is in seconds, for connecting and for each read. Raises
    :class:`DownloadError` on network failure or hash mismatch and
    ``ValueError`` on a bad URL or hash.
    """
    name, expected = _parse_url(url, expected_sha256)
    source = resolve_url(url)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    offline = _offline()
    root = default_cache_dir(root)
    target = os.path.join(root, name)

    state = _cache_state(target, expected)
    if state[0] == "ok":
        return target
    if offline:
        found = ("is not in the cache" if state[0] == "missing"
                 else "is in the cache but its SHA256 does not match")
        raise DownloadError(f"${OFFLINE_ENV} is set and {name} {found} (looked for {target}). "
                            f"Unset ${OFFLINE_ENV} to download it from {source}, or download "
                            f"it elsewhere, check its SHA256 is {expected} and put it at "
                            f"{target} or pass its path to clip.load()")
    os.makedirs(root, exist_ok=True)
    with _FileLock(target + ".lock", announce=progress):
        state = _cache_state(target, expected, known=state)
        if state[0] == "ok":  # another process finished it while we waited
            _remove(target + ".partial")
            return target
        if state[0] == "corrupt":
            warnings.warn(f"{target} exists, but its SHA256 does not match {expected}; "
                          f"downloading it again", RuntimeWarning, stacklevel=2)
        _download_locked(source, url, target, expected, name, timeout, progress)
    return target
