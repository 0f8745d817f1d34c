"""Damaged MindSpore ``.ckpt`` files: every one is refused with the file and the problem named."""
import os

import pytest

import clip
from clip.model import WeightsMismatchError
from clip.pt_reader import CheckpointError
from tiny_checkpoint import write_tiny_checkpoint


@pytest.fixture(scope="module")
def good_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "good.ckpt"
    write_tiny_checkpoint(str(path), kind="vit")
    return str(path)


def _record_boundaries(data):
    """Offsets where the top-level protobuf records (field 1, length-delimited) of a
    MindSpore checkpoint end."""
    ends, pos = [], 0
    while pos < len(data):
        if data[pos] != 0x0A:  # field 1, wire type 2
            break
        pos += 1
        length, shift = 0, 0
        while True:
            byte = data[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        pos += length
        ends.append(pos)
    return ends


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_good_checkpoint_loads(good_ckpt):
    model, _ = clip.load(good_ckpt, device="CPU")
    assert model.visual.input_resolution == 224


def test_empty_file(tmp_path):
    path = _write(tmp_path, "empty.ckpt", b"")
    with pytest.raises(CheckpointError, match="empty.ckpt"):
        clip.load(path, device="CPU")


def test_random_bytes(tmp_path):
    path = _write(tmp_path, "random.ckpt", os.urandom(4096))
    with pytest.raises(CheckpointError, match="random.ckpt"):
        clip.load(path, device="CPU")


def test_truncated_in_the_middle_of_a_record(tmp_path, good_ckpt):
    data = open(good_ckpt, "rb").read()
    ends = _record_boundaries(data)
    assert len(ends) > 10 and ends[-1] <= len(data)
    cut = (ends[len(ends) // 2] + ends[len(ends) // 2 + 1]) // 2
    path = _write(tmp_path, "cut-mid-record.ckpt", data[:cut])
    with pytest.raises((CheckpointError, WeightsMismatchError), match="cut-mid-record.ckpt"):
        clip.load(path, device="CPU")


def test_truncated_at_a_record_boundary(tmp_path, good_ckpt):
    """MindSpore alone reads this as a smaller valid checkpoint: the missing parameters are named."""
    data = open(good_ckpt, "rb").read()
    ends = _record_boundaries(data)
    # cut after the last record: every tensor the architecture is inferred from is still there,
    # so the model is built and the strict loader lists what is missing
    cut = ends[-2]
    path = _write(tmp_path, "cut-at-boundary.ckpt", data[:cut])
    with pytest.raises(WeightsMismatchError, match=r"cut-at-boundary\.ckpt(.|\n)*missing parameters \(1\): "):
        clip.load(path, device="CPU")
    # cut in the middle: entries needed to infer the architecture are gone, and are named
    path = _write(tmp_path, "cut-half.ckpt", data[:ends[len(ends) // 2]])
    with pytest.raises(WeightsMismatchError, match=r"cut-half\.ckpt: the weights have no entry"):
        clip.load(path, device="CPU")


# ---------------------------------------------------------------------------------------------
# CRC: what the converter writes carries one, and a damaged copy is reported as corrupted

def test_converter_output_has_a_crc_and_damage_is_named(tmp_path):
    from clip.convert import save_state_dict
    from tiny_checkpoint import tiny_state_dict

    path = tmp_path / "crc.ckpt"
    save_state_dict(tiny_state_dict("vit", seed=3), str(path))
    model, _ = clip.load(str(path), device="CPU")  # verified, loads
    assert model.visual.input_resolution == 224
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit inside a weight
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"crc\.ckpt: the file is corrupted: its CRC check failed"):
        clip.load(str(path), device="CPU")


def test_safetensors_output_round_trips(tmp_path):
    import numpy as np
    from clip.convert import save_state_dict
    from clip.open_clip import read_weights
    from tiny_checkpoint import tiny_state_dict

    state = tiny_state_dict("resnet", seed=4)
    path = tmp_path / "tiny.safetensors"
    save_state_dict(state, str(path), format="safetensors")
    loaded, architecture, torch_names = read_weights(str(path))
    assert architecture is None and not torch_names and set(loaded) == set(state)
    for name, value in state.items():
        np.testing.assert_array_equal(np.asarray(loaded[name]), np.asarray(value))
        assert np.asarray(loaded[name]).dtype == np.asarray(value).dtype
    model, _ = clip.load(str(path), device="CPU")
    assert model.visual.input_resolution == 224
