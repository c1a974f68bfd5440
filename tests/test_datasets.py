"""Dataset layouts and label parsing (ofconvert.datasets), on the shared real sets and on
small synthetic folders that reproduce each official layout."""
import hashlib
import os

import numpy as np
import pytest

from ofconvert.datasets import load_dataset, load_ilsvrc_meta
from ofconvert.errors import DataError
from ofconvert.imagenet_classes import WNID_TO_INDEX, WNIDS, WNIDS_SHA256


def _img(path, color=(120, 30, 200), size=(40, 30)):
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


# -- the synset list ---------------------------------------------------------------------

def test_wnids_are_the_sorted_ilsvrc2012_classes():
    assert len(WNIDS) == 1000 and len(set(WNIDS)) == 1000
    assert list(WNIDS) == sorted(WNIDS)
    assert hashlib.sha256(" ".join(WNIDS).encode()).hexdigest() == WNIDS_SHA256
    # well-known indices of the torchvision/timm class order
    assert WNIDS[0] == "n01440764"          # tench
    assert WNIDS[65] == "n01751748"         # sea snake
    assert WNIDS[207] == "n02099601"        # golden retriever
    assert WNIDS[999] == "n15075141"        # toilet tissue


# -- the three shared sets ------------------------------------------------------------------

def test_shared_val_txt_layout(datasets):
    root = os.path.join(datasets, "imagenet-val-1300")
    ds = load_dataset(root)
    assert ds.layout == "val.txt" and len(ds) == 1300
    with open(os.path.join(root, "val.txt")) as f:
        expected = dict(line.split() for line in f if line.strip())
    got = {os.path.basename(p): lab for p, lab in zip(ds.paths, ds.labels)}
    assert got == {k: int(v) for k, v in expected.items()}
    assert all(os.path.isfile(p) for p in ds.paths)


def test_shared_imagefolder_layout(datasets):
    root = os.path.join(datasets, "imagenet-sample-1000")
    ds = load_dataset(root)
    assert ds.layout.startswith("imagefolder") and len(ds) == 1000
    folders = sorted(os.listdir(root))
    for p, lab in zip(ds.paths, ds.labels):
        folder = os.path.basename(os.path.dirname(p))
        assert lab == folders.index(folder) == WNID_TO_INDEX[folder]


def test_shared_labels_txt_layout(datasets):
    ds = load_dataset(os.path.join(datasets, "imagenet-stubs-16"))
    assert ds.layout == "labels.txt" and len(ds) == 16
    assert dict(zip(map(os.path.basename, ds.paths), ds.labels))["beagle.jpg"] == 162


def test_limit_keeps_the_first_images(datasets):
    ds = load_dataset(os.path.join(datasets, "imagenet-val-1300"))
    small = ds.limit(7)
    assert small.paths == ds.paths[:7] and small.labels == ds.labels[:7]
    assert ds.limit(None) is ds and ds.limit(10 ** 6) is ds


# -- val.txt mismatches ------------------------------------------------------------------------

@pytest.fixture
def flat(tmp_path):
    for name in ("a.jpg", "b.jpg", "c.png"):
        _img(str(tmp_path / name))
    return tmp_path


def test_val_txt_ok(flat):
    _write(flat / "val.txt", "a.jpg 3\nb.jpg 999\n\nc.png 0\n")
    ds = load_dataset(flat)
    assert [os.path.basename(p) for p in ds.paths] == ["a.jpg", "b.jpg", "c.png"]
    assert ds.labels == [3, 999, 0]


@pytest.mark.parametrize("text, message", [
    ("a.jpg 3\nb.jpg 4\nc.png 5\nzzz.jpg 1\n", "not in"),          # lists a missing file
    ("a.jpg 3\nb.jpg 4\n", "have no label"),                        # fewer labels than images
    ("a.jpg 3\nb.jpg 1000\nc.png 5\n", "out of range"),             # index out of range
    ("a.jpg 3\nb.jpg -1\nc.png 5\n", "out of range"),
    ("a.jpg 3\nb.jpg x\nc.png 5\n", "not an integer"),
    ("a.jpg\nb.jpg 1\nc.png 5\n", ":1: expected"),                  # malformed line, with its number
    ("a.jpg 3\na.jpg 3\nb.jpg 1\nc.png 5\n", "listed twice"),
    ("", "empty"),
])
def test_val_txt_not_matching_images_is_a_clear_error(flat, text, message):
    _write(flat / "val.txt", text)
    with pytest.raises(DataError, match=message):
        load_dataset(flat)


def test_explicit_label_file_and_missing_label_file(flat, tmp_path):
    lab = _write(tmp_path / "my-labels.txt", "a.jpg 1\nb.jpg 2\nc.png 3\n")
    assert load_dataset(flat, labels=lab).labels == [1, 2, 3]
    with pytest.raises(DataError, match="label file not found"):
        load_dataset(flat, labels=str(tmp_path / "nope.txt"))


def test_folder_without_labels_or_missing(tmp_path):
    _img(str(tmp_path / "x.jpg"))
    with pytest.raises(DataError, match="no labels"):
        load_dataset(tmp_path)
    with pytest.raises(DataError, match="not found"):
        load_dataset(tmp_path / "absent")


# -- ImageFolder ---------------------------------------------------------------------------------

def test_imagefolder_subset_of_synsets_keeps_imagenet_indices(tmp_path):
    for w in ("n01751748", "n02099601"):
        _img(str(tmp_path / w / "1.jpg"))
        _img(str(tmp_path / w / "2.jpg"))
    ds = load_dataset(tmp_path)
    assert ds.labels == [65, 65, 207, 207]


def test_imagefolder_other_names_use_sorted_position(tmp_path):
    for name in ("zebra", "apple", "mango"):
        _img(str(tmp_path / name / "i.jpg"))
    ds = load_dataset(tmp_path)
    assert [(os.path.basename(os.path.dirname(p)), lab) for p, lab in zip(ds.paths, ds.labels)] == \
        [("apple", 0), ("mango", 1), ("zebra", 2)]


def test_imagefolder_unknown_synset_is_an_error(tmp_path):
    _img(str(tmp_path / "n00000001" / "i.jpg"))
    with pytest.raises(DataError, match="not an ILSVRC2012 synset"):
        load_dataset(tmp_path)


# -- official ILSVRC2012 validation layout ------------------------------------------------------

@pytest.fixture
def official(tmp_path):
    """ILSVRC2012_val_00000001/2/5.JPEG in val/, a subset like most local copies."""
    val = tmp_path / "val"
    for k in (1, 2, 5):
        _img(str(val / f"ILSVRC2012_val_{k:08d}.JPEG"), color=(k * 40, 10, 10))
    return val


def test_loc_val_solution_csv_in_parent_folder(official):
    _write(official.parent / "LOC_val_solution.csv",
           "ImageId,PredictionString\n"
           "ILSVRC2012_val_00000005,n02099601 1 2 30 40 n02099601 3 4 20 20\n"
           "ILSVRC2012_val_00000001,n01751748 10 20 30 40\n"
           "ILSVRC2012_val_00000002,n01440764 1 1 2 2\n"
           "ILSVRC2012_val_00000003,n15075141 1 1 2 2\n")        # images not present locally are fine
    ds = load_dataset(official)
    assert ds.layout == "ilsvrc-loc-csv"
    assert ds.labels == [65, 0, 207]


def test_loc_val_solution_csv_errors(official, tmp_path):
    csv = _write(tmp_path / "LOC_val_solution.csv",
                 "ImageId,PredictionString\nILSVRC2012_val_00000001,n01751748 1 1 2 2\n")
    with pytest.raises(DataError, match="has no row"):
        load_dataset(official, labels=csv)
    bad = _write(tmp_path / "bad.csv", "ImageId,PredictionString\nILSVRC2012_val_00000001,n99999999 1 1 2 2\n")
    with pytest.raises(DataError, match="not an ILSVRC2012 synset"):
        load_dataset(official, labels=bad)
    nohead = _write(tmp_path / "nohead.csv", "a,b\n")
    with pytest.raises(DataError, match="header"):
        load_dataset(official, labels=nohead)


def _mapping(tmp_path):
    """A synthetic ILSVRC2012_ID -> WNID mapping (a permutation, like the devkit's)."""
    rng = np.random.RandomState(0)
    perm = rng.permutation(1000)
    text = "".join(f"{i + 1} {WNIDS[perm[i]]}\n" for i in range(1000))
    return _write(tmp_path / "ILSVRC2012_mapping.txt", text), perm


def test_ground_truth_txt_with_id_mapping(official, tmp_path):
    gt = _write(tmp_path / "ILSVRC2012_validation_ground_truth.txt", "490\n361\n171\n822\n297\n")
    with pytest.raises(DataError, match="meta.mat"):
        load_dataset(official, labels=gt)                   # no mapping: says what is needed
    mapping, perm = _mapping(tmp_path)                      # found beside the ground truth
    ds = load_dataset(official, labels=gt)
    assert ds.layout == "ilsvrc-ground-truth"
    assert ds.labels == [perm[490 - 1], perm[361 - 1], perm[297 - 1]]
    assert load_dataset(official, labels=gt, meta=mapping).labels == ds.labels


def test_ground_truth_txt_mismatch_errors(official, tmp_path):
    mapping, _ = _mapping(tmp_path)
    short = _write(tmp_path / "short.txt", "1\n2\n3\n")      # image 5 has no line
    with pytest.raises(DataError, match="only 3 labels"):
        load_dataset(official, labels=short, meta=mapping)
    bad = _write(tmp_path / "ILSVRC2012_validation_ground_truth.txt", "1\n2\nx\n4\n5\n")
    with pytest.raises(DataError, match=":3:"):
        load_dataset(official, labels=bad, meta=mapping)
    (official / "extra.jpg").write_bytes(b"")
    good = _write(tmp_path / "g.txt", "1\n2\n3\n4\n5\n")
    with pytest.raises(DataError, match="extra.jpg"):
        load_dataset(official, labels=good, meta=mapping)


def test_meta_file_errors(tmp_path):
    bad = _write(tmp_path / "m.txt", "1 n01440764\n2 n01440764\n")
    with pytest.raises(DataError, match="1000 distinct"):
        load_ilsvrc_meta(bad)
    garbage = _write(tmp_path / "g.txt", "hello world\n")
    with pytest.raises(DataError, match="expected"):
        load_ilsvrc_meta(garbage)
    mat = tmp_path / "meta.mat"
    mat.write_bytes(b"MATLAB 5.0 MAT-file, not really")
    with pytest.raises(DataError, match="scipy|not an ILSVRC2012 devkit meta.mat"):
        load_ilsvrc_meta(str(mat))
