"""Writing files so that their final name never holds a partial file."""
import contextlib
import os
import tempfile

__all__ = ["atomic_path", "write_atomically"]


def _usual_permissions(path):
    """The permissions a newly created file gets: ``0o666`` less the umask (``mkstemp`` and
    MindSpore's ``save_checkpoint`` make files private to their owner)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


@contextlib.contextmanager
def atomic_path(path, suffix=".tmp"):
    """Yield a temporary path in ``path``'s folder to write to; when the block succeeds the file is
    synced, given the usual permissions and renamed onto ``path``; when it fails it is removed."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=suffix)
    os.close(fd)
    try:
        yield temp
        with open(temp, "rb+") as f:
            os.fsync(f.fileno())
        _usual_permissions(temp)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise


def write_atomically(path, write, binary=False):
    """Create ``path`` by calling ``write(file)`` on a temporary file (UTF-8 text unless
    ``binary``), then renaming it into place (see :func:`atomic_path`)."""
    with atomic_path(path) as temp:
        with open(temp, "wb") if binary else open(temp, "w", encoding="utf-8", newline="\n") as f:
            write(f)
