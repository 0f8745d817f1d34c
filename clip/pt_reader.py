"""Read PyTorch ``.pt`` checkpoints into numpy arrays, without PyTorch.

Two zip-based formats are understood:

* ``torch.save`` files (the zip format of torch >= 1.6) holding a mapping
  ``name -> tensor`` (a ``dict`` or ``OrderedDict`` such as ``model.state_dict()``).
  If the top-level object is a mapping with the single key ``"state_dict"`` or
  ``"model"`` whose value is such a mapping, that inner mapping is used.
* TorchScript archives written by ``torch.jit.save``, such as OpenAI's released
  CLIP files (``ViT-B-32.pt`` ...). The pickled module tree in ``<prefix>/data.pkl``
  (``<prefix>`` is the file's stem at save time, whatever the name now) is
  flattened into dotted names (``visual.conv1.weight``), each module's own
  tensors before its submodules', as ``Module.state_dict()`` orders them. Every
  tensor attribute is returned, including 0-d tensors such as
  ``input_resolution`` (for traced modules this is exactly ``state_dict()``; a
  scripted module's plain tensor attributes, which are neither parameters nor
  buffers, are returned too). Non-tensor attributes (``training`` ...),
  ``constants.pkl`` and the ``code/`` folder are never read.

Nothing from the file is ever executed or imported. ``data.pkl`` is read with a
restricted unpickler whose ``find_class`` resolves only an explicit allowlist:
``collections.OrderedDict``, the ``torch._utils`` tensor rebuild functions
(mapped to this module's own implementations), ``torch.<Type>Storage``,
``torch.storage.UntypedStorage`` and ``torch.<dtype>`` names (mapped to inert
descriptors), the identity helpers of ``torch.jit._pickle`` and ``__torch__.*``
classes (mapped to inert record objects).
Anything else raises :class:`UnsafeCheckpointError`.

Tensors are returned as contiguous numpy arrays owning their memory, in the
order they appear in the file, with their dtype preserved (float16, float32,
float64, int8, int16, int32, int64, uint8, bool; also uint16/32/64 written by
newer torch). bfloat16 has no numpy dtype: bfloat16 tensors are read as their
raw 16-bit patterns and widened exactly to float32 (``bits << 16``). Entries
that are the same tensor object in the file (tied weights) share one array,
as they do with ``torch.load``. Tensors saved from any device are read to the
host. Only little-endian archives are supported.
"""
import collections
import os
import pickle
import re
import zipfile
import zlib

import numpy as np

__all__ = ["CheckpointError", "UnsafeCheckpointError", "read_pt"]


class CheckpointError(RuntimeError):
    """A checkpoint file is unreadable, malformed, unsupported or unsafe.

    The message always starts with the file path, followed by the problem.
    """


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint's pickle refers to a global (function, class) outside the allowlist."""


class _Malformed(Exception):
    """Internal: a problem with the file; turned into :class:`CheckpointError`."""


class _Unsafe(Exception):
    """Internal: a refused global; turned into :class:`UnsafeCheckpointError`."""


# --------------------------------------------------------------------------- dtypes

class _Frozen:
    """Base of every object the unpickler can hand out or build.

    A pickle may apply BUILD (attribute assignment) to any object it can reach;
    these objects have no ``__dict__`` and refuse ``setattr``, so a file cannot
    alter a descriptor, storage or tensor view after it was validated.
    """

    __slots__ = ()

    def __init__(self, **fields):
        for key, value in fields.items():
            object.__setattr__(self, key, value)

    def __setattr__(self, key, value):
        raise AttributeError(f"{type(self).__name__} is read-only")


class _DType(_Frozen):
    """Inert stand-in for a torch dtype: the numpy dtype its raw bytes are read as."""

    __slots__ = ("name", "raw")

    def __init__(self, name, raw):
        super().__init__(name=name, raw=np.dtype(raw).newbyteorder("<"))

    def __repr__(self):
        return f"torch.{self.name}"


class _StorageType(_Frozen):
    """Inert stand-in for a ``torch.<Type>Storage`` class (dtype None: untyped bytes)."""

    __slots__ = ("name", "dtype")

    def __init__(self, name, dtype):
        super().__init__(name=name, dtype=dtype)

    def __repr__(self):
        return f"torch.{self.name}"


_DTYPES = {name: _DType(name, raw) for name, raw in [
    ("float16", "f2"), ("float32", "f4"), ("float64", "f8"), ("bfloat16", "u2"),
    ("int8", "i1"), ("int16", "i2"), ("int32", "i4"), ("int64", "i8"),
    ("uint8", "u1"), ("uint16", "u2"), ("uint32", "u4"), ("uint64", "u8"),
    ("bool", "?"),
]}
_STORAGE_TYPES = {name: _StorageType(name, _DTYPES[dtype]) for name, dtype in [
    ("HalfStorage", "float16"), ("FloatStorage", "float32"), ("DoubleStorage", "float64"),
    ("BFloat16Storage", "bfloat16"), ("CharStorage", "int8"), ("ShortStorage", "int16"),
    ("IntStorage", "int32"), ("LongStorage", "int64"), ("ByteStorage", "uint8"),
    ("BoolStorage", "bool"),
]}
_STORAGE_TYPES["UntypedStorage"] = _StorageType("UntypedStorage", None)

_BF16 = _DTYPES["bfloat16"]
_MAX_NDIM = 32                 # numpy 1.x limit
_MAX_NUMEL = 1 << 40           # refuse absurd tensor sizes before allocating anything


# ----------------------------------------------------------------- storages/tensors

class _Storage(_Frozen):
    """A storage record of the archive: zip entry name, element dtype and length.

    ``numel`` counts elements of ``dtype``, or bytes when ``dtype`` is None.
    """

    __slots__ = ("key", "entry", "dtype", "numel")

    def __init__(self, key, entry, dtype, numel):
        super().__init__(key=key, entry=entry, dtype=dtype, numel=numel)


class _TensorRef(_Frozen):
    """A tensor described by the pickle; materialised after unpickling.

    Deferring the copy lets :func:`read_pt` read one storage at a time, so peak
    memory stays near the size of the result.
    """

    __slots__ = ("storage", "dtype", "offset", "shape", "strides")

    def __init__(self, storage, dtype, offset, shape, strides):
        super().__init__(storage=storage, dtype=dtype, offset=offset, shape=shape,
                         strides=strides)

    def materialize(self, buffer):
        """Copy this tensor out of ``buffer`` (the storage's bytes) into a new array."""
        raw = self.dtype.raw
        if self.storage.dtype is None:                    # untyped storage: numel is bytes
            flat = np.frombuffer(buffer, dtype=raw, count=self.storage.numel // raw.itemsize)
        else:
            flat = np.frombuffer(buffer, dtype=raw, count=self.storage.numel)
        if 0 in self.shape:
            out = np.empty(self.shape, dtype=raw)
        else:
            view = np.lib.stride_tricks.as_strided(
                flat[self.offset:], shape=self.shape,
                strides=tuple(s * raw.itemsize for s in self.strides), writeable=False)
            out = np.array(view, dtype=raw, order="C", copy=True)
        out = out.astype(raw.newbyteorder("="), copy=False)
        if self.dtype is _BF16:               # bfloat16 bits are the top half of a float32
            widened = np.empty(out.shape, dtype=np.float32)
            widened.view(np.uint32)[...] = out.astype(np.uint32) << 16
            out = widened
        return out


def _int_tuple(value, what):
    if not isinstance(value, (tuple, list)):
        raise _Malformed(f"tensor {what} is {type(value).__name__}, expected a tuple of ints")
    if len(value) > _MAX_NDIM:
        raise _Malformed(f"tensor has {len(value)} dimensions (at most {_MAX_NDIM} supported)")
    for v in value:
        if type(v) is not int:  # bool is not a size
            raise _Malformed(f"tensor {what} {tuple(value)!r} contains a non-integer")
        if v < 0:
            raise _Malformed(f"tensor {what} {tuple(value)!r} contains a negative value")
    return tuple(value)


def _make_tensor(storage, offset, size, stride, dtype):
    """Validate a tensor view of ``storage`` and return a :class:`_TensorRef`."""
    if not isinstance(storage, _Storage):
        raise _Malformed(f"tensor storage is {type(storage).__name__}, not a storage record")
    if type(offset) is not int or offset < 0:
        raise _Malformed(f"tensor storage offset {offset!r} is not a non-negative int")
    shape = _int_tuple(size, "size")
    strides = _int_tuple(stride, "stride")
    if len(shape) != len(strides):
        raise _Malformed(f"tensor size {shape} and stride {strides} differ in length")
    if storage.dtype is None:
        if dtype.raw.itemsize and storage.numel % dtype.raw.itemsize:
            raise _Malformed(f"untyped storage '{storage.key}' of {storage.numel} bytes does "
                             f"not hold whole {dtype!r} elements")
        available = storage.numel // dtype.raw.itemsize
    else:
        if storage.dtype is not dtype:
            raise _Malformed(f"storage '{storage.key}' is {storage.dtype!r} but its tensor "
                             f"is {dtype!r}")
        available = storage.numel
    numel = 1
    for s in shape:
        numel *= s
    if numel > _MAX_NUMEL:
        raise _Malformed(f"tensor of size {shape} is absurdly large")
    if numel:
        last = offset + sum((s - 1) * st for s, st in zip(shape, strides))
        if last >= available:
            raise _Malformed(
                f"tensor of size {shape}, stride {strides}, offset {offset} needs "
                f"{last + 1} elements but storage '{storage.key}' holds {available}")
    return _TensorRef(storage, dtype, offset, shape, strides)


def _check_metadata(metadata):
    if metadata:
        raise _Malformed(f"tensor metadata {metadata!r} (conj/neg bits) is not supported")


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    """Our version of ``torch._utils._rebuild_tensor_v2`` (typed storage)."""
    _check_metadata(metadata)
    if not isinstance(storage, _Storage) or storage.dtype is None:
        raise _Malformed("_rebuild_tensor_v2 needs a typed storage")
    return _make_tensor(storage, storage_offset, size, stride, storage.dtype)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None):
    """Our version of ``torch._utils._rebuild_tensor_v3`` (untyped storage + dtype)."""
    _check_metadata(metadata)
    if not isinstance(dtype, _DType):
        raise _Malformed(f"_rebuild_tensor_v3 got dtype {dtype!r}, not a torch dtype")
    return _make_tensor(storage, storage_offset, size, stride, dtype)


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
    """Our version of ``torch._utils._rebuild_parameter[_with_state]``: the tensor itself."""
    if not isinstance(data, _TensorRef):
        raise _Malformed(f"parameter data is {type(data).__name__}, not a tensor")
    return data


def _identity_list(data):
    """``torch.jit._pickle.build_*list``: the list itself."""
    if not isinstance(data, list):
        raise _Malformed(f"torch.jit list helper got {type(data).__name__}, not a list")
    return data


def _restore_type_tag(value, type_str):
    """``torch.jit._pickle.restore_type_tag``: the value itself."""
    if not isinstance(type_str, str):
        raise _Malformed("restore_type_tag got a non-string type tag")
    return value


# ---------------------------------------------------------------- TorchScript records

class _ScriptObject:
    """Inert record for one object of a ``__torch__.*`` class; holds its BUILD state."""

    __slots__ = ("state", "has_state")
    type_name = "__torch__"

    def __setstate__(self, state):
        self.state = state
        self.has_state = True

    def __repr__(self):
        return f"<{self.type_name} record>"


def _record_class(qualified):
    return type("ScriptRecord", (_ScriptObject,), {"__slots__": (), "type_name": qualified})


# ------------------------------------------------------------------------ unpickler

class _Function(_Frozen):
    """Read-only callable handed to the unpickler in place of an allowlisted function.

    Plain function objects accept attribute writes, so a pickle could BUILD new
    ``__defaults__`` into this module's functions; this wrapper cannot be changed.
    """

    __slots__ = ("_name", "_fn")

    def __init__(self, name, fn):
        super().__init__(_name=name, _fn=fn)

    def __call__(self, *args):
        return self._fn(*args)

    def __repr__(self):
        return self._name


_ALLOWED = {(module, name): _Function(f"{module}.{name}", fn) for module, name, fn in [
    ("torch._utils", "_rebuild_tensor_v2", _rebuild_tensor_v2),
    ("torch._utils", "_rebuild_tensor_v3", _rebuild_tensor_v3),
    ("torch._utils", "_rebuild_parameter", _rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state", _rebuild_parameter),
    ("torch.jit._pickle", "build_intlist", _identity_list),
    ("torch.jit._pickle", "build_doublelist", _identity_list),
    ("torch.jit._pickle", "build_boollist", _identity_list),
    ("torch.jit._pickle", "build_tensorlist", _identity_list),
    ("torch.jit._pickle", "restore_type_tag", _restore_type_tag),
]}
# A class: BUILD cannot write to it (its __dict__ is a read-only mappingproxy).
_ALLOWED["collections", "OrderedDict"] = collections.OrderedDict


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only allowlisted globals and reads storages lazily."""

    def __init__(self, file, zf, prefix):
        super().__init__(file)
        self._zf = zf
        self._prefix = prefix
        self._records = {}
        self.storages = {}

    def find_class(self, module, name):
        qualified = f"{module}.{name}"
        if module == "__torch__" or module.startswith("__torch__."):
            if qualified not in self._records:
                self._records[qualified] = _record_class(qualified)
            return self._records[qualified]
        if module == "torch.storage" and name == "UntypedStorage":
            return _STORAGE_TYPES[name]
        if module == "torch":
            if name in _STORAGE_TYPES:
                return _STORAGE_TYPES[name]
            if name in _DTYPES:
                return _DTYPES[name]
            if re.fullmatch(r"\w+Storage", name):
                raise _Malformed(f"unsupported storage type {qualified}")
        found = _ALLOWED.get((module, name))
        if found is None:
            raise _Unsafe(f"refusing to load global '{qualified}': it is not on the allowlist "
                          "of tensor-rebuilding functions, so the pickle could run arbitrary "
                          "code (only state dicts and TorchScript archives are supported)")
        return found

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise _Malformed(f"unsupported persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise _Malformed(f"persistent id names storage type {storage_type!r}")
        if not isinstance(key, str) or type(numel) is not int or numel < 0:
            raise _Malformed(f"malformed storage reference {pid!r}")
        known = self.storages.get(key)
        if known is not None:
            if known.dtype is not storage_type.dtype or known.numel != numel:
                raise _Malformed(f"storage '{key}' is referenced with different types or sizes")
            return known
        entry = f"{self._prefix}/data/{key}"
        try:
            info = self._zf.getinfo(entry)
        except KeyError:
            raise _Malformed(f"storage entry '{entry}' is missing from the archive") from None
        itemsize = 1 if storage_type.dtype is None else storage_type.dtype.raw.itemsize
        if info.file_size < numel * itemsize:
            raise _Malformed(f"storage entry '{entry}' has {info.file_size} bytes but "
                             f"{numel} x {itemsize} bytes are declared (truncated file?)")
        storage = _Storage(key, entry, storage_type.dtype, numel)
        self.storages[key] = storage
        return storage


# ------------------------------------------------------------------------ flattening

def _is_mapping(obj):
    return isinstance(obj, dict)


def _state_dict_entries(obj):
    """Entries of a ``torch.save``'d mapping of tensors (maybe wrapped once)."""
    if len(obj) == 1:
        (key, inner), = obj.items()
        if key in ("state_dict", "model") and _is_mapping(inner):
            obj = inner
    entries = []
    for key, value in obj.items():
        if not isinstance(key, str):
            raise _Malformed(f"state dict key {key!r} is not a string")
        if not isinstance(value, _TensorRef):
            raise _Malformed(f"state dict entry '{key}' is a {_describe(value)}, not a tensor "
                             "(only flat mappings of names to tensors are supported)")
        entries.append((key, value))
    return entries


def _describe(value):
    if isinstance(value, _ScriptObject):
        return value.type_name
    return type(value).__name__


def _module_entries(root):
    """Dotted names of every tensor attribute in a TorchScript module tree."""
    entries = []
    stack = [("", root, ())]
    while stack:
        prefix, record, ancestors = stack.pop()
        if id(record) in ancestors:
            raise _Malformed(f"module tree has a cycle at '{prefix[:-1]}'")
        if len(ancestors) > 1000:
            raise _Malformed("module tree is nested more than 1000 levels deep")
        state = record.state if getattr(record, "has_state", False) else {}
        if not _is_mapping(state):
            raise _Malformed(f"object '{prefix[:-1] or '<root>'}' ({record.type_name}) has "
                             f"{type(state).__name__} state, expected a dict of attributes")
        children = []
        for name, value in state.items():
            if not isinstance(name, str):
                raise _Malformed(f"attribute name {name!r} of '{prefix[:-1]}' is not a string")
            if isinstance(value, _TensorRef):
                entries.append((prefix + name, value))
            elif isinstance(value, _ScriptObject):
                children.append((prefix + name + ".", value, ancestors + (id(record),)))
        # Depth-first in attribute order, like Module.state_dict().
        stack.extend(reversed(children))
    return entries


# ----------------------------------------------------------------------------- main

_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."


def _sniff_non_zip(path):
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        return "file is empty"
    if head.startswith(_LEGACY_MAGIC) or (len(head) >= 262 and head[257:262] == b"ustar"):
        return ("file uses the legacy (pre-1.6) torch.save format, which is not supported; "
                "re-save it with torch >= 1.6: torch.save(torch.load(path), new_path)")
    if head[:1] == b"\x80":
        return ("file is a plain pickle, not a zip-based torch checkpoint; raw pickles are "
                "not supported")
    return "file is not a zip-based PyTorch checkpoint (torch.save >= 1.6 or torch.jit.save)"


def _find_prefix(zf):
    names = zf.namelist()
    candidates = [n[:-len("/data.pkl")] for n in names
                  if re.fullmatch(r"[^/]+/data\.pkl", n)]
    if not candidates:
        raise _Malformed("archive has no '<name>/data.pkl' entry")
    if len(set(candidates)) > 1:
        raise _Malformed(f"archive has several data.pkl entries: {sorted(set(candidates))}")
    prefix = candidates[0]
    byteorder = f"{prefix}/byteorder"
    if byteorder in names:
        with zf.open(byteorder) as f:
            order = f.read(64).strip()
        if order == b"big":
            raise _Malformed("archive was written on a big-endian machine; only little-endian "
                             "archives are supported")
        if order != b"little":
            raise _Malformed(f"unknown byteorder marker {order[:20]!r}")
    return prefix


def _read(path):
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise _Malformed(_sniff_non_zip(path)) from None
    with zf:
        prefix = _find_prefix(zf)
        with zf.open(f"{prefix}/data.pkl") as f:
            unpickler = _RestrictedUnpickler(f, zf, prefix)
            try:
                obj = unpickler.load()
            except (_Malformed, _Unsafe):
                raise
            except Exception as exc:  # anything the unpickler raises on bad bytes
                raise _Malformed(f"cannot unpickle data.pkl ({type(exc).__name__}: {exc})") \
                    from exc
        if isinstance(obj, _ScriptObject):
            entries = _module_entries(obj)
        elif _is_mapping(obj):
            entries = _state_dict_entries(obj)
        else:
            raise _Malformed(f"top-level object is a {_describe(obj)}, expected a state dict "
                             "(mapping of names to tensors) or a TorchScript module")
        return _materialize(zf, entries)


def _materialize(zf, entries):
    """Copy every tensor out of its storage, reading one storage entry at a time."""
    by_storage = collections.OrderedDict()
    for _, ref in entries:
        by_storage.setdefault(ref.storage.entry, {})[id(ref)] = ref
    arrays = {}
    for entry, refs in by_storage.items():
        buffer = zf.read(entry)
        for key, ref in refs.items():
            arrays[key] = ref.materialize(buffer)
        del buffer
    return collections.OrderedDict((name, arrays[id(ref)]) for name, ref in entries)


def read_pt(path):
    """Read a PyTorch checkpoint into ``OrderedDict[str, numpy.ndarray]``.

    ``path`` is a ``torch.save`` zip file holding a mapping of names to tensors
    (optionally wrapped as ``{"state_dict": ...}`` or ``{"model": ...}``), or a
    TorchScript archive from ``torch.jit.save``, whose tensor attributes are
    returned under their dotted paths. Arrays are contiguous copies in file
    order; bfloat16 tensors come back as float32 (exact). Raises
    :class:`CheckpointError` (whose message starts with ``path``) for missing,
    malformed or unsupported files, and :class:`UnsafeCheckpointError` for pickles
    that reference anything outside the allowlist. Never imports torch and never
    executes code from the file.
    """
    path = os.fspath(path)
    try:
        return _read(path)
    except _Unsafe as exc:
        raise UnsafeCheckpointError(f"{path}: {exc}") from None
    except _Malformed as exc:
        raise CheckpointError(f"{path}: {exc}") from exc.__cause__
    except MemoryError:
        raise CheckpointError(f"{path}: not enough memory to read the checkpoint") from None
    except (OSError, zipfile.BadZipFile, zlib.error, EOFError, ValueError, RuntimeError) as exc:
        # I/O errors, corrupt zip members (CRC, bad headers, zlib) and the like.
        raise CheckpointError(f"{path}: cannot read the checkpoint "
                              f"({type(exc).__name__}: {exc})") from exc
