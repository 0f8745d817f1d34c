"""Tests for clip._download against a real HTTP server on 127.0.0.1.

The server is a ``ThreadingHTTPServer`` whose behaviour each test sets: serve
bytes with or without Content-Length, honour Range or not, cut the connection
after N bytes, stall until released, delay the headers, redirect; it records
every request (path, Range header, status, body bytes sent).

Worker subprocesses load ``clip/_download.py`` by file path, so they start in
a fraction of a second instead of importing MindSpore through ``clip``.
"""
import hashlib
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from clip import _download as dl
from clip._download import DownloadError, default_cache_dir, download, resolve_url

MiB = 1 << 20
ENV_VARS = ("CLIP_CACHE_DIR", "CLIP_BASE_URL", "CLIP_OFFLINE")


def payload(size, seed=0):
    return random.Random(seed).randbytes(size)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def wait_for(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# ---------------------------------------------------------------------------
# test server
# ---------------------------------------------------------------------------

class ServerState:
    """What the server serves and how; mutated by tests."""

    def __init__(self):
        self.files = {}            # URL path -> bytes
        self.redirects = {}        # URL path -> Location
        self.requests = []         # one dict per request
        self.honour_range = True
        self.content_length = True
        self.cut_after = None      # body bytes sent before dropping the connection ...
        self.cuts_left = 0         # ... for this many requests
        self.header_delay = 0.0    # seconds before answering
        self.gate = None           # threading.Event: stall after gate_after bytes until set
        self.gate_after = 0
        self.chunk = 64 * 1024
        self.chunk_delay = 0.0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.base = None

    def add(self, name, data, served=None):
        """Serve ``served`` (default ``data``) at /<sha256(data)>/<name>; return the URL."""
        path = f"/{sha256(data)}/{name}"
        self.files[path] = data if served is None else served
        return self.base + path

    def requests_for(self, url):
        path = urllib.parse.urlsplit(url).path
        return [r for r in self.requests if r["path"] == path]


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        try:
            self._get(self.server.state)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _get(self, st):
        entry = {"path": self.path, "range": self.headers.get("Range"), "status": None, "sent": 0}
        with st.lock:
            st.requests.append(entry)
            limit = None
            if st.cuts_left > 0:
                st.cuts_left -= 1
                limit = st.cut_after
        gate = st.gate
        if st.header_delay and st.stop.wait(st.header_delay):
            return
        if self.path in st.redirects:
            entry["status"] = 302
            self.send_response(302)
            self.send_header("Location", st.redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = st.files.get(self.path)
        if data is None:
            entry["status"] = 404
            self.send_error(404)
            return
        start, status = 0, 200
        requested = self.headers.get("Range")
        if requested and st.honour_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", requested).group(1))
            if start >= len(data):
                entry["status"] = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        entry["status"] = status
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        if st.content_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        limit = len(body) if limit is None else min(limit, len(body))
        pos = 0
        while pos < limit:
            if gate is not None and pos >= st.gate_after:
                while not gate.is_set():
                    if st.stop.wait(0.02):
                        return
                gate = None
            n = min(st.chunk, limit - pos)
            if gate is not None:
                n = min(n, max(st.gate_after - pos, 1))
            self.wfile.write(body[pos:pos + n])
            self.wfile.flush()
            pos += n
            entry["sent"] = pos
            if st.chunk_delay and st.stop.wait(st.chunk_delay):
                return
        if limit < len(body):
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def server():
    st = ServerState()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.state = st
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    st.base = f"http://127.0.0.1:{httpd.server_port}"
    try:
        yield st
    finally:
        st.stop.set()
        if st.gate is not None:
            st.gate.set()
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------
# worker subprocesses
# ---------------------------------------------------------------------------

WORKER = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("clip_download_worker", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(module.download(sys.argv[2], sys.argv[3], progress=sys.argv[4] == "1", timeout=20))
"""


def start_worker(url, root, progress=False, stderr=subprocess.PIPE):
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, dl.__file__, url, str(root), "1" if progress else "0"],
        stdout=subprocess.PIPE, stderr=stderr, env=env, text=True)


# ---------------------------------------------------------------------------
# normal download and cache
# ---------------------------------------------------------------------------

def test_download_creates_cache_dir_and_verified_file(server, tmp_path):
    data = payload(MiB)
    url = server.add("model.pt", data)
    root = tmp_path / "a" / "b"
    path = download(url, str(root), progress=False)
    assert path == os.path.join(str(root), "model.pt")
    with open(path, "rb") as f:
        assert f.read() == data
    assert os.listdir(root) == ["model.pt"]  # no lock or partial file left
    [request] = server.requests
    assert request["range"] is None and request["sent"] == MiB


def test_default_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == str(tmp_path / "home" / ".cache" / "clip")
    monkeypatch.setenv("CLIP_CACHE_DIR", "~/from-env")
    assert default_cache_dir() == str(tmp_path / "home" / "from-env")
    assert default_cache_dir(tmp_path / "explicit") == str(tmp_path / "explicit")
    assert default_cache_dir("~/explicit") == str(tmp_path / "home" / "explicit")
    with pytest.raises(TypeError, match="download_root"):
        default_cache_dir(42)


def test_download_without_root_uses_clip_cache_dir(server, monkeypatch, tmp_path):
    data = payload(1000)
    url = server.add("env.pt", data)
    monkeypatch.setenv("CLIP_CACHE_DIR", str(tmp_path / "env-cache"))
    path = download(url, progress=False)
    assert path == str(tmp_path / "env-cache" / "env.pt")
    explicit = download(url, str(tmp_path / "explicit"), progress=False)
    assert explicit == str(tmp_path / "explicit" / "env.pt")
    assert len(server.requests) == 2


def test_cached_file_is_reused_without_any_request(server, tmp_path):
    data = payload(300_000)
    url = server.add("cached.pt", data)
    first = download(url, str(tmp_path), progress=False)
    second = download(url, str(tmp_path), progress=False)
    assert first == second
    assert len(server.requests) == 1
    # Nothing listens on this port: a verified cached file needs no network at all.
    dead = f"http://127.0.0.1:{free_port()}/{sha256(data)}/cached.pt"
    assert download(dead, str(tmp_path), progress=False) == first


def test_corrupt_cache_warns_and_is_replaced(server, tmp_path):
    data = payload(200_000)
    url = server.add("corrupt.pt", data)
    (tmp_path / "corrupt.pt").write_bytes(b"not the model")
    with pytest.warns(RuntimeWarning, match="SHA256 does not match"):
        path = download(url, str(tmp_path), progress=False)
    with open(path, "rb") as f:
        assert f.read() == data
    assert len(server.requests) == 1
    assert sorted(os.listdir(tmp_path)) == ["corrupt.pt"]


def test_corrupt_cache_is_only_replaced_by_a_verified_file(server, tmp_path):
    data = payload(200_000)
    url = server.add("keep.pt", data, served=payload(200_000, seed=1))
    (tmp_path / "keep.pt").write_bytes(b"old bytes")
    with pytest.warns(RuntimeWarning), pytest.raises(DownloadError, match="SHA256 mismatch"):
        download(url, str(tmp_path), progress=False)
    assert (tmp_path / "keep.pt").read_bytes() == b"old bytes"
    assert sorted(os.listdir(tmp_path)) == ["keep.pt"]


def test_hash_mismatch_raises_and_leaves_no_file(server, tmp_path):
    data = payload(500_000)
    served = payload(500_000, seed=7)
    url = server.add("bad.pt", data, served=served)
    with pytest.raises(DownloadError) as info:
        download(url, str(tmp_path), progress=False)
    message = str(info.value)
    assert url in message and sha256(data) in message and sha256(served) in message
    assert os.listdir(tmp_path) == []
    assert len(server.requests) == 1  # a fresh (not resumed) download is not retried


def test_download_without_content_length_and_progress_bar(server, tmp_path, capsys):
    server.content_length = False
    data = payload(MiB + 123)
    url = server.add("nolength.pt", data)
    path = download(url, str(tmp_path), progress=True)
    with open(path, "rb") as f:
        assert f.read() == data
    err = capsys.readouterr().err
    assert "nolength.pt" in err and "1.00MB [" in err  # tqdm bar: byte units, no total


def test_progress_bar_shows_total_from_content_length(server, tmp_path, capsys):
    url = server.add("withlength.pt", payload(2 * MiB))
    download(url, str(tmp_path), progress=True)
    assert "2.00M/2.00M" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# resume
# ---------------------------------------------------------------------------

def test_interrupted_transfer_is_resumed_with_range(server, tmp_path):
    data = payload(MiB)
    url = server.add("resume.pt", data)
    server.cut_after, server.cuts_left = 300_000, 1
    path = download(url, str(tmp_path), progress=False)
    with open(path, "rb") as f:
        assert f.read() == data
    first, second = server.requests
    assert first["range"] is None and first["sent"] == 300_000
    assert second["range"] == "bytes=300000-" and second["status"] == 206
    assert second["sent"] == MiB - 300_000
    assert os.listdir(tmp_path) == ["resume.pt"]


def test_persistent_interruption_keeps_partial_and_next_call_resumes(server, tmp_path):
    data = payload(MiB)
    url = server.add("flaky.pt", data)
    server.cut_after, server.cuts_left = 100_000, 100
    with pytest.raises(DownloadError) as info:
        download(url, str(tmp_path), progress=False)
    assert url in str(info.value) and "resume" in str(info.value)
    attempts = len(server.requests)
    assert attempts == 1 + dl._MAX_RESUMES  # bounded automatic resumes
    assert not (tmp_path / "flaky.pt").exists()
    kept = (tmp_path / "flaky.pt.partial").stat().st_size
    assert kept == attempts * 100_000
    server.cuts_left = 0
    path = download(url, str(tmp_path), progress=False)
    with open(path, "rb") as f:
        assert f.read() == data
    last = server.requests[-1]
    assert last["range"] == f"bytes={kept}-" and last["sent"] == MiB - kept
    assert os.listdir(tmp_path) == ["flaky.pt"]


def test_server_ignoring_range_gets_full_download(server, tmp_path):
    data = payload(MiB)
    url = server.add("norange.pt", data)
    server.honour_range = False
    server.cut_after, server.cuts_left = 400_000, 1
    path = download(url, str(tmp_path), progress=False)
    with open(path, "rb") as f:
        assert f.read() == data
    first, second = server.requests
    assert second["range"] == "bytes=400000-"  # asked to resume ...
    assert second["status"] == 200 and second["sent"] == MiB  # ... got (and used) it all


def test_garbage_partial_file_is_discarded_after_mismatch(server, tmp_path):
    data = payload(MiB)
    url = server.add("stale.pt", data)
    (tmp_path / "stale.pt.partial").write_bytes(b"x" * 50_000)  # left by some other file
    path = download(url, str(tmp_path), progress=False)
    with open(path, "rb") as f:
        assert f.read() == data
    first, second = server.requests
    assert first["range"] == "bytes=50000-"
    assert second["range"] is None and second["sent"] == MiB
    assert os.listdir(tmp_path) == ["stale.pt"]


def test_partial_longer_than_file_restarts(server, tmp_path):
    data = payload(100_000)
    url = server.add("long.pt", data)
    (tmp_path / "long.pt.partial").write_bytes(b"y" * 200_000)
    path = download(url, str(tmp_path), progress=False)
    with open(path, "rb") as f:
        assert f.read() == data
    assert [r["status"] for r in server.requests] == [416, 200]


def test_complete_partial_from_killed_run_is_used_without_request(server, tmp_path):
    data = payload(100_000)
    url = server.add("done.pt", data)
    (tmp_path / "done.pt.partial").write_bytes(data)  # killed between fsync and rename
    path = download(url, str(tmp_path), progress=False)
    with open(path, "rb") as f:
        assert f.read() == data
    assert server.requests == []
    assert os.listdir(tmp_path) == ["done.pt"]


# ---------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------

def test_killed_download_never_leaves_final_file_and_is_resumed(server, tmp_path):
    data = payload(2 * MiB)
    url = server.add("killed.pt", data)
    server.gate, server.gate_after = threading.Event(), 700_000
    partial = tmp_path / "killed.pt.partial"
    proc = start_worker(url, tmp_path)
    try:
        wait_for(lambda: partial.exists() and partial.stat().st_size >= 700_000,
                 what="the worker to write 700000 bytes")
        assert not (tmp_path / "killed.pt").exists()
    finally:
        proc.kill()
        proc.communicate(timeout=10)
    server.gate.set()
    server.gate = None
    assert not (tmp_path / "killed.pt").exists()
    kept = partial.stat().st_size
    assert kept == 700_000
    path = download(url, str(tmp_path), progress=False, timeout=10)
    with open(path, "rb") as f:
        assert f.read() == data
    last = server.requests[-1]
    assert last["range"] == f"bytes={kept}-" and last["sent"] == len(data) - kept
    assert os.listdir(tmp_path) == ["killed.pt"]


def test_two_processes_download_once_and_both_succeed(server, tmp_path):
    data = payload(MiB)
    url = server.add("shared.pt", data)
    server.gate, server.gate_after = threading.Event(), 200_000
    root = tmp_path / "cache"
    partial = root / "shared.pt.partial"
    second_err = tmp_path / "second.err"
    first = start_worker(url, root)
    second = None
    try:
        wait_for(lambda: partial.exists() and partial.stat().st_size >= 200_000,
                 what="the first worker to start downloading")
        with open(second_err, "w") as err:
            second = start_worker(url, root, progress=True, stderr=err)
        wait_for(lambda: "Waiting for another process" in second_err.read_text(),
                 what="the second worker to wait for the lock")
        server.gate.set()
        out1, err1 = first.communicate(timeout=20)
        out2, _ = second.communicate(timeout=20)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)
    assert first.returncode == 0, err1
    assert second.returncode == 0, second_err.read_text()
    target = str(root / "shared.pt")
    assert out1.strip() == out2.strip() == target
    with open(target, "rb") as f:
        assert f.read() == data
    assert len(server.requests) == 1  # the waiting process used the verified file
    assert os.listdir(root) == ["shared.pt"]


def test_lock_is_released_and_removed_when_download_fails(server, tmp_path):
    url = f"{server.base}/{'a' * 64}/missing.pt"
    for _ in range(2):  # a stale lock would make the second call hang or fail differently
        with pytest.raises(DownloadError, match="404"):
            download(url, str(tmp_path), progress=False)
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------
# offline
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_offline_missing_file_raises_without_request(server, tmp_path, monkeypatch, value):
    monkeypatch.setenv("CLIP_OFFLINE", value)
    url = server.add("offline.pt", payload(1000))
    root = tmp_path / "cache"
    with pytest.raises(DownloadError) as info:
        download(url, str(root), progress=False)
    message = str(info.value)
    assert "CLIP_OFFLINE" in message and "not in the cache" in message
    assert str(root / "offline.pt") in message and url in message
    assert server.requests == []
    assert not root.exists()


def test_offline_uses_verified_cache_and_rejects_corrupt_one(server, tmp_path, monkeypatch):
    data = payload(1000)
    url = server.add("offline.pt", data)
    path = download(url, str(tmp_path), progress=False)
    monkeypatch.setenv("CLIP_OFFLINE", "1")
    assert download(url, str(tmp_path), progress=False) == path
    (tmp_path / "offline.pt").write_bytes(b"corrupt")
    with pytest.raises(DownloadError, match="SHA256 does not match"):
        download(url, str(tmp_path), progress=False)
    assert (tmp_path / "offline.pt").read_bytes() == b"corrupt"
    assert len(server.requests) == 1


def test_offline_value_must_be_understood(server, tmp_path, monkeypatch):
    monkeypatch.setenv("CLIP_OFFLINE", "maybe")
    with pytest.raises(ValueError, match="CLIP_OFFLINE"):
        download(server.add("x.pt", b"x"), str(tmp_path), progress=False)
    monkeypatch.setenv("CLIP_OFFLINE", "0")
    assert os.path.isfile(download(server.add("x.pt", b"x"), str(tmp_path), progress=False))


# ---------------------------------------------------------------------------
# URLs: mirror, scheme policy, redirects
# ---------------------------------------------------------------------------

def test_resolve_url_with_mirror(monkeypatch):
    tail = f"{'ab' * 32}/ViT-B-32.pt"
    openai = f"{dl.OPENAI_BASE_URL}/{tail}"
    assert resolve_url(openai) == openai
    monkeypatch.setenv("CLIP_BASE_URL", "https://mirror.example.org/clip/")
    assert resolve_url(openai) == f"https://mirror.example.org/clip/{tail}"
    other = "https://elsewhere.example.org/x/" + tail
    assert resolve_url(other) == other  # only OpenAI's prefix is rewritten


def test_mirror_download_still_checks_hash(server, tmp_path, monkeypatch):
    data = payload(100_000)
    sha = sha256(data)
    server.files[f"/mirror/{sha}/m.pt"] = data
    server.files[f"/mirror/{'0' * 64}/m.pt"] = data  # right file under the wrong hash
    monkeypatch.setenv("CLIP_BASE_URL", server.base + "/mirror/")
    path = download(f"{dl.OPENAI_BASE_URL}/{sha}/m.pt", str(tmp_path), progress=False)
    with open(path, "rb") as f:
        assert f.read() == data
    assert [r["path"] for r in server.requests] == [f"/mirror/{sha}/m.pt"]
    with pytest.raises(DownloadError, match="SHA256 mismatch") as info:
        download(f"{dl.OPENAI_BASE_URL}/{'0' * 64}/m.pt", str(tmp_path / "b"), progress=False)
    assert "CLIP_BASE_URL" in str(info.value)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8000/x", "http://127.9.9.9/x", "http://localhost/x",
    "http://[::1]:8000/x", "https://example.org/x"])
def test_allowed_urls(url):
    assert resolve_url(url) == url


@pytest.mark.parametrize("url", [
    "http://openaipublic.azureedge.net/clip/models/x", "http://10.0.0.1/x",
    "ftp://127.0.0.1/x", "file:///etc/passwd", "https:///no-host"])
def test_refused_urls(url):
    with pytest.raises(ValueError, match=re.escape(repr(url))):
        resolve_url(url)


def test_refused_mirror_and_download_url(monkeypatch, tmp_path):
    monkeypatch.setenv("CLIP_BASE_URL", "http://mirror.example.org/clip")
    with pytest.raises(ValueError, match="CLIP_BASE_URL"):
        resolve_url(f"{dl.OPENAI_BASE_URL}/{'a' * 64}/m.pt")
    monkeypatch.delenv("CLIP_BASE_URL")
    with pytest.raises(ValueError, match="plain http"):
        download(f"http://example.org/{'a' * 64}/m.pt", str(tmp_path / "c"), progress=False)
    assert not (tmp_path / "c").exists()


def test_redirects_followed_only_to_allowed_urls(server, tmp_path):
    data = payload(10_000)
    url = server.add("r.pt", data)
    sha = sha256(data)
    server.redirects[f"/{sha}/ok.pt"] = url
    path = download(f"{server.base}/{sha}/ok.pt", str(tmp_path), progress=False)
    with open(path, "rb") as f:
        assert f.read() == data
    server.redirects[f"/{sha}/down.pt"] = f"http://example.org/{sha}/r.pt"
    with pytest.raises(DownloadError, match="refused redirect"):
        download(f"{server.base}/{sha}/down.pt", str(tmp_path), progress=False)


# ---------------------------------------------------------------------------
# network failures and bad input
# ---------------------------------------------------------------------------

def test_http_404_names_url(server, tmp_path):
    url = f"{server.base}/{'b' * 64}/nothing.pt"
    with pytest.raises(DownloadError) as info:
        download(url, str(tmp_path), progress=False)
    message = str(info.value)
    assert url in message and "404" in message and "clip.load" in message
    assert info.value.__cause__ is not None


def test_connection_refused_names_url(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/{'c' * 64}/refused.pt"
    with pytest.raises(DownloadError) as info:
        download(url, str(tmp_path), progress=False, timeout=5)
    assert url in str(info.value) and "refused" in str(info.value).lower()
    assert isinstance(info.value.__cause__, OSError)


def test_timeout_raises_download_error(server, tmp_path):
    server.header_delay = 5
    url = server.add("slow.pt", payload(1000))
    start = time.monotonic()
    with pytest.raises(DownloadError, match="timed out") as info:
        download(url, str(tmp_path), progress=False, timeout=0.3)
    assert time.monotonic() - start < 3
    assert url in str(info.value)


def test_bad_input_is_rejected_clearly(server, tmp_path):
    data = payload(100)
    url = server.add("in.pt", data)
    with pytest.raises(ValueError, match="second-to-last"):
        download(f"{server.base}/not-a-hash/in.pt", str(tmp_path), progress=False)
    with pytest.raises(ValueError, match="expected_sha256"):
        download(url, str(tmp_path), "abc", progress=False)
    with pytest.raises(ValueError, match="file name"):
        download(f"{server.base}/{sha256(data)}/", str(tmp_path), progress=False)
    with pytest.raises(ValueError, match="timeout"):
        download(url, str(tmp_path), progress=False, timeout=0)
    with pytest.raises(TypeError, match="url"):
        download(None, str(tmp_path))
    (tmp_path / "in.pt").mkdir()
    with pytest.raises(DownloadError, match="not a regular file"):
        download(url, str(tmp_path), progress=False)
    assert server.requests == []
    # An explicit expected hash (any case) overrides the one in the URL.
    other = f"{server.base}/{'d' * 64}/in.pt"
    server.files[f"/{'d' * 64}/in.pt"] = data
    path = download(other, str(tmp_path / "x"), sha256(data).upper(), progress=False)
    with open(path, "rb") as f:
        assert f.read() == data


# ---------------------------------------------------------------------------
# the real model table
# ---------------------------------------------------------------------------

def test_real_model_table_format():
    from clip.clip import _MODELS  # lazy: the table lives in clip/clip.py

    assert list(_MODELS) == ["RN50", "RN101", "RN50x4", "RN50x16", "RN50x64",
                             "ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px"]
    for name, url in _MODELS.items():
        parts = urllib.parse.urlsplit(url)
        assert parts.scheme == "https", name
        assert url.startswith(dl.OPENAI_BASE_URL + "/"), name
        segments = parts.path.split("/")
        assert re.fullmatch(r"[0-9a-f]{64}", segments[-2]), name
        assert segments[-1].endswith(".pt"), name
        assert resolve_url(url) == url
        assert dl._parse_url(url, None) == (segments[-1], segments[-2])
    assert len({url.split("/")[-2] for url in _MODELS.values()}) == len(_MODELS)


# ---------------------------------------------------------------------------
# TLS is always verified
# ---------------------------------------------------------------------------

def test_https_with_an_untrusted_certificate_is_refused(tmp_path):
    """A self-signed certificate on an HTTPS server (127.0.0.1) fails verification: the
    download stops with DownloadError and no file is written, never an unverified fallback."""
    import ssl

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    st = ServerState()
    data = payload(1000)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.state = st
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        digest = sha256(data)
        url = f"https://127.0.0.1:{httpd.server_port}/{digest}/model.pt"
        st.files[f"/{digest}/model.pt"] = data
        root = tmp_path / "cache"
        with pytest.raises(DownloadError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            download(url, str(root), progress=False, timeout=10)
        assert not (root / "model.pt").exists()
        assert not [name for name in os.listdir(root) if name.endswith((".part", ".tmp"))] if root.exists() else True
    finally:
        st.stop.set()
        httpd.shutdown()
        httpd.server_close()
