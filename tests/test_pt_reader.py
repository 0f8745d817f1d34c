"""Tests for clip.pt_reader: torch-free reading of torch.save / torch.jit.save files.

torch is used here only to WRITE checkpoints and as the independent reference
(``torch.load`` / ``torch.jit.load``) the reader's output is compared with.
"""
import collections
import json
import os
import pickle
import re
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from clip.pt_reader import CheckpointError, UnsafeCheckpointError, read_pt
from reference import model_module

PT_READER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "clip", "pt_reader.py")


# ------------------------------------------------------------------------- helpers

def as_numpy(tensor):
    """torch's view of a tensor as numpy (bfloat16 widened to float32)."""
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return tensor.contiguous().numpy()


def assert_matches(ours, reference, own_memory=True):
    """Same names in the same order, same dtypes, shapes and exact values."""
    assert isinstance(ours, collections.OrderedDict)
    assert list(ours) == list(reference)
    for name, tensor in reference.items():
        expected = as_numpy(tensor)
        got = ours[name]
        assert isinstance(got, np.ndarray), name
        assert got.dtype == expected.dtype, (name, got.dtype, expected.dtype)
        assert got.shape == expected.shape, (name, got.shape, expected.shape)
        np.testing.assert_array_equal(got, expected, err_msg=name)
        assert got.flags.c_contiguous, name
        if own_memory:
            assert got.flags.owndata and got.flags.writeable, name


def rewrite_zip(src, dst, replace=None, drop=(), add=None):
    """Copy zip ``src`` to ``dst``, replacing/dropping/adding entries (name -> bytes)."""
    replace, add = replace or {}, add or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename in drop:
                continue
            zout.writestr(info.filename, replace.get(info.filename, zin.read(info.filename)))
        for name, data in add.items():
            zout.writestr(name, data)
    return dst


def prefix_of(path):
    with zipfile.ZipFile(path) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith("/data.pkl")]
    return name[:-len("/data.pkl")]


class StorageRef:
    """A storage reference pickled as torch's persistent id."""

    def __init__(self, key, storage_type, numel):
        self.pid = ("storage", storage_type, key, "cpu", numel)


class FakeTensor:
    """Pickles as a torch tensor with arbitrary (possibly invalid) view parameters."""

    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, self.args


class _TorchLikePickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, StorageRef) else None


def torch_like_pickle(obj):
    """Pickle ``obj`` (protocol 2) the way torch.save does, storages as persistent ids."""
    import io
    buffer = io.BytesIO()
    _TorchLikePickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def write_archive(path, data_pkl, storages, prefix="archive", byteorder=b"little"):
    """Write a torch.save-style zip: <prefix>/data.pkl, <prefix>/data/<key>, ..."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{prefix}/data.pkl", data_pkl)
        if byteorder is not None:
            zf.writestr(f"{prefix}/byteorder", byteorder)
        for key, data in storages.items():
            zf.writestr(f"{prefix}/data/{key}", data)
        zf.writestr(f"{prefix}/version", b"3\n")
    return path


def crafted(path, size, stride, offset=0, numel=4):
    """Archive with one float32 tensor 'w' over a storage of ``numel`` elements."""
    tensor = FakeTensor(StorageRef("0", torch.FloatStorage, numel), offset, size, stride)
    data = np.arange(numel, dtype="<f4").tobytes()
    return write_archive(path, torch_like_pickle({"w": tensor}), {"0": data})


def reduce_pickle(module, name, args):
    """Hand-written pickle calling ``module.name(*args)`` when loaded."""
    body = pickle.dumps(tuple(args), protocol=2)[2:-1]  # strip PROTO and STOP
    return (b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n" + body + b"R.")


def raises_with_path(path, exc_type=CheckpointError):
    """``pytest.raises`` that also requires the file path in the message."""
    return pytest.raises(exc_type, match=re.escape(str(path)))


# ------------------------------------------------------------------ torch.save files

def test_state_dict_dtypes(tmp_path):
    torch.manual_seed(0)
    sd = collections.OrderedDict([
        ("f32", torch.randn(2, 3)),
        ("f16", torch.randn(4).half()),
        ("bf16", torch.randn(3, 2).to(torch.bfloat16)),
        ("f64", torch.randn(2, dtype=torch.float64)),
        ("i8", torch.tensor([-128, 0, 127], dtype=torch.int8)),
        ("i16", torch.tensor([-300, 300], dtype=torch.int16)),
        ("i32", torch.tensor([-(2 ** 31), 2 ** 31 - 1], dtype=torch.int32)),
        ("i64", torch.tensor([-(2 ** 62), 2 ** 62], dtype=torch.int64)),
        ("u8", torch.tensor([0, 255], dtype=torch.uint8)),
        ("b", torch.tensor([True, False, True])),
        ("scalar_f", torch.tensor(1.5)),
        ("scalar_i", torch.tensor(77)),
        ("empty", torch.zeros(0, 3)),
        ("u16", torch.tensor([1, 65535], dtype=torch.uint16)),  # _rebuild_tensor_v3
    ])
    path = tmp_path / "dtypes.pt"
    torch.save(sd, path)
    ours = read_pt(path)
    assert_matches(ours, torch.load(path, weights_only=True))
    assert ours["bf16"].dtype == np.float32
    assert ours["scalar_i"].shape == () and ours["scalar_i"] == 77
    assert ours["empty"].shape == (0, 3)


def test_shared_storage_views(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    small = torch.tensor([1.0, 2.0, 3.0])
    sd = {
        "base": base, "row": base[1], "col": base[:, 2], "block": base[1:3, 2:5],
        "transposed": base.t(), "strided": base[::2, ::3], "tail": base.view(-1)[20:],
        "expanded": small.expand(4, 3), "tail_of_small": small[2:],
    }
    path = tmp_path / "views.pt"
    torch.save(sd, path)
    with zipfile.ZipFile(path) as zf:  # the views really share two storages
        assert len([n for n in zf.namelist() if "/data/" in n]) == 2
    ours = read_pt(path)
    assert_matches(ours, torch.load(path, weights_only=True))
    assert ours["expanded"].strides == (12, 4)
    assert not np.shares_memory(ours["base"], ours["row"])
    ours["row"][:] = -1  # own memory: writing one entry leaves the others alone
    assert ours["base"][1, 0] == 6


def test_module_state_dict_and_wrappers(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(36, 2))
    model(torch.randn(2, 3, 5, 5))  # updates running stats and num_batches_tracked
    sd = model.state_dict()
    assert sd["1.num_batches_tracked"] == 1
    for wrapper in (None, "state_dict", "model"):
        path = tmp_path / f"wrapped_{wrapper}.pt"
        torch.save(sd if wrapper is None else {wrapper: sd}, path)
        ours = read_pt(path)
        assert_matches(ours, sd)


def test_parameters_and_tied_entries(tmp_path):
    weight = nn.Parameter(torch.randn(3, 2))
    stateful = nn.Parameter(torch.randn(2))
    stateful.note = "x"  # -> torch._utils._rebuild_parameter_with_state
    path = tmp_path / "params.pt"
    torch.save({"w": weight, "s": stateful, "tied": weight}, path)
    with zipfile.ZipFile(path) as zf:
        data = zf.read(f"{prefix_of(path)}/data.pkl")
    assert b"_rebuild_parameter_with_state" in data and b"_rebuild_parameter\n" in data
    ours = read_pt(path)
    assert_matches(ours, torch.load(path, weights_only=True))
    assert ours["tied"] is ours["w"]  # one tensor in the file, one array (as in torch.load)


def test_non_tensor_entries_rejected(tmp_path):
    cases = {
        "hyper": {"w": torch.zeros(2), "lr": 0.1},
        "nested": {"encoder": {"w": torch.zeros(2)}},
        "two_keys": {"state_dict": {"w": torch.zeros(2)}, "epoch": 3},
    }
    names = {"hyper": "'lr'", "nested": "'encoder'", "two_keys": "'state_dict'"}
    for case, obj in cases.items():
        path = tmp_path / f"{case}.pt"
        torch.save(obj, path)
        with raises_with_path(path) as info:
            read_pt(path)
        assert names[case] in str(info.value)
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with raises_with_path(path, CheckpointError) as info:
        read_pt(path)
    assert "top-level object is a list" in str(info.value)


def test_crafted_archive_matches_torch(tmp_path):
    """Sanity check of the crafting helpers used by the malformed-input tests."""
    path = crafted(tmp_path / "crafted.pt", (2, 2), (1, 2))
    assert_matches(read_pt(path), torch.load(path, weights_only=True))
    np.testing.assert_array_equal(read_pt(path)["w"], [[0, 2], [1, 3]])


# --------------------------------------------------------------- TorchScript archives

class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.seq = nn.Sequential(nn.ReLU(), nn.Conv2d(4, 2, 1, bias=False))

    def forward(self, x):
        return self.seq(self.bn(self.conv(x)))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([2.0]))
        self.register_buffer("offset", torch.arange(8, dtype=torch.float32))
        self.register_buffer("input_resolution", torch.tensor(6))  # 0-d int, like OpenAI's
        self.block = Block()
        self.head = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8), nn.Linear(8, 3))
        self.flag = True      # non-tensor attributes are not state
        self.label = "net"

    def forward(self, x):
        x = self.block(x).mean(dim=(2, 3)).repeat(1, 4) * self.scale + self.offset
        return self.head(x)


def traced_net(path):
    torch.manual_seed(0)
    net = Net()
    net.train()(torch.randn(2, 3, 6, 6))  # real running stats, num_batches_tracked = 1
    net.eval()
    traced = torch.jit.trace(net, torch.randn(1, 3, 6, 6))
    traced.head.half()  # fp16 parameters next to fp32 and int64 tensors
    torch.jit.save(traced, str(path))
    return traced


def test_torchscript_traced_tree(tmp_path):
    path = tmp_path / "net.pt"
    traced_net(path)
    reference = torch.jit.load(str(path)).state_dict()
    assert {str(t.dtype) for t in reference.values()} == {"torch.float32", "torch.float16",
                                                          "torch.int64"}
    assert "block.bn.num_batches_tracked" in reference and "block.seq.1.weight" in reference
    ours = read_pt(path)
    assert_matches(ours, reference)
    assert ours["input_resolution"].shape == () and ours["input_resolution"] == 6
    assert ours["block.bn.num_batches_tracked"] == 1


def test_torchscript_archive_under_other_stem(tmp_path):
    saved = tmp_path / "original-name.pt"
    traced_net(saved)
    renamed = tmp_path / "renamed.pt"
    os.rename(saved, renamed)
    assert prefix_of(renamed) == "original-name"
    reference = torch.jit.load(str(renamed)).state_dict()
    assert_matches(read_pt(renamed), reference)
    # Any top folder name works, as long as there is exactly one data.pkl.
    with zipfile.ZipFile(renamed) as zin, zipfile.ZipFile(tmp_path / "other.pt", "w") as zout:
        for info in zin.infolist():
            zout.writestr("weights_v2" + info.filename[len("original-name"):], zin.read(info))
    assert_matches(read_pt(tmp_path / "other.pt"), reference)


def openai_style_archive(path, vision_layers, vision_width, resolution, patch):
    """OpenAI's CLIP (tiny config), fp16 like the release files, traced and jit-saved."""
    M = model_module()
    torch.manual_seed(0)
    model = M.CLIP(32, resolution, vision_layers, vision_width, patch, 77, 1000, 64, 1, 2)
    M.convert_weights(model)
    # OpenAI's archives hold these as 0-d int tensor attributes.
    del model.context_length, model.vocab_size
    model.register_buffer("input_resolution", torch.tensor(resolution))
    model.register_buffer("context_length", torch.tensor(77))
    model.register_buffer("vocab_size", torch.tensor(1000))
    model.eval()
    image = torch.randn(1, 3, resolution, resolution, dtype=torch.float16)
    text = torch.randint(0, 1000, (1, 77))
    traced = torch.jit.trace_module(model, {"encode_image": image, "encode_text": text})
    torch.jit.save(traced, str(path))
    return traced


@pytest.mark.parametrize("variant", ["vit", "resnet"])
def test_openai_clip_archive(tmp_path, variant):
    path = tmp_path / f"{variant}.pt"
    if variant == "vit":
        traced = openai_style_archive(path, 2, 64, 32, 16)
    else:
        traced = openai_style_archive(path, (1, 1, 1, 1), 8, 64, None)
    reference = torch.jit.load(str(path)).state_dict()
    assert list(reference) == list(traced.state_dict())
    ours = read_pt(path)
    assert_matches(ours, reference)
    assert ours["visual.conv1.weight"].dtype == np.float16
    assert ours["context_length"] == 77 and ours["vocab_size"] == 1000
    if variant == "vit":
        assert ours["input_resolution"] == 32
        assert ours["transformer.resblocks.1.attn.in_proj_weight"].shape == (192, 64)
        assert "visual.transformer.resblocks.0.ln_1.weight" in ours
    else:
        assert ours["visual.bn1.running_var"].dtype == np.float32
        assert "visual.layer4.0.downsample.0.weight" in ours
        assert "visual.attnpool.c_proj.bias" in ours
    # The causal attention mask is a traced constant, not state.
    assert not any(name.endswith("attn_mask") for name in ours)


# ------------------------------------------------------------------------------ safety

PAYLOADS = {
    "os.system": lambda s: ("os", "system", (f"touch {s}",)),
    "posix.system": lambda s: ("posix", "system", (f"touch {s}",)),
    "builtins.exec": lambda s: ("builtins", "exec", (f"open({str(s)!r}, 'w').close()",)),
    "builtins.eval": lambda s: ("builtins", "eval", (f"open({str(s)!r}, 'w').close()",)),
    "builtins.open": lambda s: ("builtins", "open", (str(s), "w")),
    "__builtin__.eval": lambda s: ("__builtin__", "eval", (f"open({str(s)!r}, 'w')",)),
    "subprocess.call": lambda s: ("subprocess", "call", (["touch", str(s)],)),
}


@pytest.mark.parametrize("global_name", sorted(PAYLOADS))
def test_malicious_data_pkl_refused(tmp_path, global_name):
    module, name, args = PAYLOADS[global_name](tmp_path / "control")
    payload = reduce_pickle(module, name, args)
    # Positive control: a plain unpickler really runs the payload.
    subprocess.run([sys.executable, "-c", "import pickle, sys; "
                    "pickle.loads(sys.stdin.buffer.read())"], input=payload, check=True)
    assert (tmp_path / "control").exists()

    sentinel = tmp_path / "pwned"
    module, name, args = PAYLOADS[global_name](sentinel)
    valid = tmp_path / "valid.pt"
    torch.save({"w": torch.zeros(2)}, valid)
    evil = rewrite_zip(valid, tmp_path / "evil.pt",
                       replace={f"{prefix_of(valid)}/data.pkl": reduce_pickle(module, name, args)})
    with raises_with_path(evil, UnsafeCheckpointError) as info:
        read_pt(evil)
    assert global_name in str(info.value)
    assert not sentinel.exists()


def test_payload_nested_inside_tensor_refused(tmp_path):
    sentinel = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {sentinel}",)

    tensor = FakeTensor(StorageRef("0", torch.FloatStorage, 2), 0, (2,), (1,))
    tensor.args = tensor.args[:5] + (Evil(),)  # as backward_hooks
    path = write_archive(tmp_path / "nested.pt", torch_like_pickle({"w": tensor}),
                         {"0": bytes(8)})
    with raises_with_path(path, UnsafeCheckpointError):
        read_pt(path)
    assert not sentinel.exists()


def test_full_module_pickle_refused(tmp_path):
    path = tmp_path / "module.pt"
    torch.save(nn.Linear(2, 2), path)
    with raises_with_path(path, UnsafeCheckpointError) as info:
        read_pt(path)
    assert "torch.nn.modules.linear.Linear" in str(info.value)


def test_torch_records_are_inert(tmp_path):
    sentinel = tmp_path / "pwned"
    data = reduce_pickle("__torch__.os", "system", (f"touch {sentinel}",))
    path = write_archive(tmp_path / "record.pt", data, {})
    with raises_with_path(path):
        read_pt(path)
    assert not sentinel.exists()


def test_allowlisted_functions_cannot_be_modified(tmp_path):
    # GLOBAL _rebuild_tensor_v2, then BUILD (None, {"__defaults__": (1,)}) on it.
    body = pickle.dumps((None, {"__defaults__": (1,)}), protocol=2)[2:-1]
    data = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n" + body + b"b."
    path = write_archive(tmp_path / "poison.pt", data, {})
    with raises_with_path(path) as info:
        read_pt(path)
    assert "read-only" in str(info.value)
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(3)}, good)
    assert_matches(read_pt(good), {"w": torch.ones(3)})


def test_validated_views_cannot_be_modified(tmp_path):
    """BUILD cannot move a checked tensor view or enlarge a storage afterwards."""
    import pickletools

    class MovedTensor(FakeTensor):
        def __reduce__(self):  # REDUCE, then BUILD (None, {"offset": 1000})
            return torch._utils._rebuild_tensor_v2, self.args, (None, {"offset": 1000})

    storage = StorageRef("0", torch.FloatStorage, 4)
    moved = write_archive(tmp_path / "moved.pt",
                          torch_like_pickle({"w": MovedTensor(storage, 0, (4,), (1,))}),
                          {"0": bytes(16)})
    data = torch_like_pickle({"w": FakeTensor(storage, 0, (4,), (1,))})
    (persid,) = [pos for op, _, pos in pickletools.genops(data) if op.name == "BINPERSID"]
    build = pickle.dumps((None, {"numel": 1000}), protocol=2)[2:-1] + b"b"
    grown = write_archive(tmp_path / "grown.pt", data[:persid + 1] + build + data[persid + 1:],
                          {"0": bytes(16)})
    for path in (moved, grown):
        with raises_with_path(path) as info:
            read_pt(path)
        assert "read-only" in str(info.value)


def test_torchscript_code_and_constants_never_read(tmp_path):
    path = tmp_path / "net.pt"
    traced_net(path)
    sentinel = tmp_path / "pwned"
    prefix = prefix_of(path)
    payload = reduce_pickle("os", "system", (f"touch {sentinel}",))
    evil = rewrite_zip(path, tmp_path / "evil.pt",
                       replace={f"{prefix}/constants.pkl": payload},
                       add={f"{prefix}/code/__torch__/evil.py":
                            f"import os\nos.system('touch {sentinel}')\n".encode(),
                            f"{prefix}/code/__torch__/evil.pkl": payload})
    assert_matches(read_pt(evil), torch.jit.load(str(path)).state_dict())
    assert not sentinel.exists()


def test_raw_pickles_rejected(tmp_path):
    sentinel = tmp_path / "pwned"
    raw = tmp_path / "raw.pt"
    raw.write_bytes(reduce_pickle("os", "system", (f"touch {sentinel}",)))
    with raises_with_path(raw) as info:
        read_pt(raw)
    assert "plain pickle" in str(info.value)
    assert not sentinel.exists()

    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
    with raises_with_path(legacy) as info:
        read_pt(legacy)
    assert "legacy" in str(info.value) and "re-save" in str(info.value)


# --------------------------------------------------------------------------- malformed

def _valid(tmp_path):
    path = tmp_path / "valid.pt"
    torch.save({"a": torch.arange(6, dtype=torch.float32), "b": torch.ones(2, 2)}, path)
    return path, prefix_of(path)


def test_not_a_zip_and_empty(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    for path, words in [(junk, "not a zip"), (empty, "empty"),
                        (tmp_path / "missing.pt", "FileNotFoundError"), (tmp_path, "Directory")]:
        with raises_with_path(path) as info:
            read_pt(path)
        assert words in str(info.value)


def test_zip_layout_errors(tmp_path):
    valid, prefix = _valid(tmp_path)
    no_pkl = rewrite_zip(valid, tmp_path / "no_pkl.pt", drop={f"{prefix}/data.pkl"})
    with zipfile.ZipFile(valid) as zf:
        data = zf.read(f"{prefix}/data.pkl")
    two = rewrite_zip(valid, tmp_path / "two.pt", add={"other/data.pkl": data})
    cases = [(no_pkl, "no '<name>/data.pkl'"), (two, "several data.pkl")]
    for path, words in cases:
        with raises_with_path(path) as info:
            read_pt(path)
        assert words in str(info.value)


def test_storage_errors(tmp_path):
    valid, prefix = _valid(tmp_path)
    missing = rewrite_zip(valid, tmp_path / "missing.pt", drop={f"{prefix}/data/0"})
    short = rewrite_zip(valid, tmp_path / "short.pt", replace={f"{prefix}/data/0": bytes(12)})
    with zipfile.ZipFile(valid) as zf:
        data = zf.read(f"{prefix}/data.pkl")
    assert b"torch\nFloatStorage\n" in data
    unknown = rewrite_zip(valid, tmp_path / "unknown.pt", replace={
        f"{prefix}/data.pkl": data.replace(b"torch\nFloatStorage\n", b"torch\nQUInt8Storage\n")})
    cases = [(missing, "is missing"), (short, "truncated"),
             (unknown, "unsupported storage type torch.QUInt8Storage")]
    for path, words in cases:
        with raises_with_path(path) as info:
            read_pt(path)
        assert words in str(info.value)
        assert not isinstance(info.value, UnsafeCheckpointError)


def test_corrupt_storage_bytes(tmp_path):
    valid, prefix = _valid(tmp_path)
    raw = bytearray(valid.read_bytes())
    with zipfile.ZipFile(valid) as zf:
        info = zf.getinfo(f"{prefix}/data/0")
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    raw[start:start + 4] = b"\xff\xff\xff\xff"  # same size, wrong CRC
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(bytes(raw))
    with raises_with_path(corrupt) as info:
        read_pt(corrupt)
    assert "BadZipFile" in str(info.value)


@pytest.mark.parametrize("size, stride, offset, words", [
    ((-1,), (1,), 0, "negative"),
    ((2,), (-1,), 0, "negative"),
    ((2,), (1,), -1, "offset"),
    ((5,), (1,), 0, "needs 5 elements"),
    ((2, 2), (2, 1), 1, "needs 5 elements"),
    ((2,), (1,), 3, "needs 5 elements"),
    ((2 ** 40, 2 ** 40), (0, 0), 0, "absurdly large"),
    ((1,) * 40, (1,) * 40, 0, "dimensions"),
    ((2.0,), (1,), 0, "non-integer"),
    ((2, 2), (1,), 0, "differ in length"),
])
def test_bad_tensor_views(tmp_path, size, stride, offset, words):
    path = crafted(tmp_path / "bad_view.pt", size, stride, offset)
    with raises_with_path(path) as info:
        read_pt(path)
    assert words in str(info.value)


def test_truncated_pickle_and_byteorder(tmp_path):
    valid, prefix = _valid(tmp_path)
    with zipfile.ZipFile(valid) as zf:
        data = zf.read(f"{prefix}/data.pkl")
    truncated = rewrite_zip(valid, tmp_path / "truncated.pt",
                            replace={f"{prefix}/data.pkl": data[:len(data) // 2]})
    big = rewrite_zip(valid, tmp_path / "big.pt", replace={f"{prefix}/byteorder": b"big"})
    odd = rewrite_zip(valid, tmp_path / "odd.pt", replace={f"{prefix}/byteorder": b"middle"})
    for path, words in [(truncated, "cannot unpickle data.pkl"), (big, "big-endian"),
                        (odd, "unknown byteorder")]:
        with raises_with_path(path) as info:
            read_pt(path)
        assert words in str(info.value)


def test_cyclic_module_tree(tmp_path):
    # obj = __torch__.M(); obj.__setstate__({"child": obj})
    data = b"\x80\x02c__torch__\nM\n)\x81q\x00}q\x01X\x05\x00\x00\x00childh\x00sb."
    path = write_archive(tmp_path / "cycle.pt", data, {})
    with raises_with_path(path) as info:
        read_pt(path)
    assert "cycle" in str(info.value)


# ---------------------------------------------------------------------------- no torch

def test_reads_without_torch(tmp_path):
    path = tmp_path / "half.pt"
    traced_net(path)
    torch.jit.load(str(path))  # sanity: torch itself reads it
    reference = torch.jit.load(str(path)).state_dict()
    out = tmp_path / "arrays.npz"
    script = f"""
import importlib.util, json, sys
sys.modules["torch"] = None  # any 'import torch' now fails
spec = importlib.util.spec_from_file_location("pt_reader_nt", {PT_READER!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
import numpy as np
arrays = module.read_pt({str(path)!r})
np.savez({str(out)!r}, **{{f"a{{i}}": a for i, a in enumerate(arrays.values())}})
print(json.dumps([list(arrays), sorted(m for m in sys.modules if m.split(".")[0] == "torch")]))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    names, torch_modules = json.loads(result.stdout.strip().splitlines()[-1])
    assert torch_modules == ["torch"]  # only the blocking None entry
    with np.load(out) as npz:
        arrays = collections.OrderedDict((n, npz[f"a{i}"]) for i, n in enumerate(names))
    assert_matches(arrays, reference, own_memory=False)
    assert arrays["head.0.weight"].dtype == np.float16
