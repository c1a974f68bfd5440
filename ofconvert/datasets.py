"""Labelled image datasets for evaluation: find the images of a folder and their
ImageNet class indices (0..999, sorted-synset order).

Layouts (``load_dataset`` detects them; ``labels=`` forces a label file):

``val.txt`` / ``labels.txt``
    flat folder + a text file, one ``<file> <class index>`` per line.
ImageFolder
    one sub-folder per class. Folders named by synset id (``n01440764``) map
    through the ILSVRC2012 synset list, so a subset of classes keeps the right
    ImageNet indices (identical to the sorted position when all 1000 are present);
    other folder names get their sorted position (torchvision convention).
official ILSVRC2012 validation
    flat ``ILSVRC2012_val_XXXXXXXX.JPEG`` files + either ``LOC_val_solution.csv``
    (Kaggle; synset ids, fully supported) or the devkit's
    ``ILSVRC2012_validation_ground_truth.txt`` (1-based ILSVRC2012 ids, line k is
    image k). Those ids are *not* in sorted-synset order: they need the devkit's
    ``meta.mat`` (read with scipy, if installed) or a text file of
    ``<ILSVRC2012_ID> <WNID>`` lines (``meta=``).

A label file that does not match the images (a listed file that is absent, an
image without a label, a class out of range, a malformed line) raises
``DataError`` naming the first offender.
"""
import csv
import dataclasses
import os
import re
from typing import List, Optional

from .data import is_image_file, list_images, walk_images
from .errors import DataError
from .imagenet_classes import WNID_TO_INDEX

LABEL_FILES = ("val.txt", "labels.txt")
GROUND_TRUTH_TXT = "ILSVRC2012_validation_ground_truth.txt"
LOC_SOLUTION_CSV = "LOC_val_solution.csv"
META_FILES = ("meta.mat", "ILSVRC2012_mapping.txt")
_VAL_NAME = re.compile(r"^ILSVRC2012_val_(\d{8})\.[A-Za-z]+$")
_WNID = re.compile(r"^n\d{8}$")


@dataclasses.dataclass
class Dataset:
    """Images (absolute paths, sorted) and their class indices."""

    root: str
    paths: List[str]
    labels: List[int]
    layout: str                 # "val.txt", "imagefolder", "ilsvrc-loc-csv", "ilsvrc-ground-truth", ...
    label_source: str           # the file (or folder) the labels came from
    num_classes: int = 1000

    def __len__(self):
        return len(self.paths)

    def limit(self, n: Optional[int]):
        """The first ``n`` images (``None``/0: all)."""
        if not n or n >= len(self.paths):
            return self
        return dataclasses.replace(self, paths=self.paths[:n], labels=self.labels[:n])

    def relpath(self, p):
        return os.path.relpath(p, self.root)

    def describe(self):
        return f"{self.root} ({self.layout}, {len(self)} images, labels from {self.label_source})"


# -- public entry point ---------------------------------------------------------

def load_dataset(folder, labels=None, meta=None, num_classes=1000) -> Dataset:
    """Images of ``folder`` with their labels. ``labels``: a label file (any of the
    formats above) overriding detection; ``meta``: the devkit ``meta.mat`` or an
    ``<id> <wnid>`` text file, for ``ILSVRC2012_validation_ground_truth.txt``."""
    folder = os.path.abspath(os.fspath(folder))
    if not os.path.isdir(folder):
        raise DataError(f"dataset folder not found: {folder}")
    if labels is None:
        labels = _find_label_file(folder)
    if labels is None:
        subdirs = _class_dirs(folder)
        if subdirs:
            return _image_folder(folder, subdirs, num_classes)
        raise DataError(
            f"no labels for {folder}: expected val.txt/labels.txt, {LOC_SOLUTION_CSV}, {GROUND_TRUTH_TXT} "
            f"(beside the images or one folder up) or one sub-folder per class; or pass a label file")
    labels = os.path.abspath(os.fspath(labels))
    if not os.path.isfile(labels):
        raise DataError(f"label file not found: {labels}")
    base = os.path.basename(labels)
    if base.lower().endswith(".csv"):
        return _loc_csv(folder, labels, num_classes)
    if base == GROUND_TRUTH_TXT or _looks_like_ground_truth(labels):
        return _ground_truth(folder, labels, meta, num_classes)
    return _file_index(folder, labels, num_classes)


def _find_label_file(folder):
    for name in LABEL_FILES:
        p = os.path.join(folder, name)
        if os.path.isfile(p):
            return p
    for d in (folder, os.path.dirname(folder)):
        for name in (LOC_SOLUTION_CSV, GROUND_TRUTH_TXT):
            p = os.path.join(d, name)
            if os.path.isfile(p) and any(_VAL_NAME.match(f) for f in _flat_images(folder)[:1]):
                return p
    return None


def _flat_images(folder):
    return sorted(f for f in os.listdir(folder) if is_image_file(f) and os.path.isfile(os.path.join(folder, f)))


def _class_dirs(folder):
    return sorted(d for d in os.listdir(folder)
                  if os.path.isdir(os.path.join(folder, d)) and not d.startswith("."))


def _check_index(idx, num_classes, where):
    if not 0 <= idx < num_classes:
        raise DataError(f"{where}: class index {idx} out of range 0..{num_classes - 1}")
    return idx


def _match(folder, images, labelled: dict, label_file, layout, num_classes) -> Dataset:
    """``labelled``: file name (relative to folder) -> class index. Every image needs
    a label and every label an image."""
    present = set(images)
    missing = [f for f in labelled if f not in present]
    if missing:
        raise DataError(f"{label_file} lists {len(missing)} file(s) not in {folder} (first: {missing[0]}); "
                        f"the label file does not match the images")
    unlabelled = [f for f in images if f not in labelled]
    if unlabelled:
        raise DataError(f"{len(unlabelled)} image(s) in {folder} have no label in {label_file} "
                        f"(first: {unlabelled[0]}); the label file does not match the images")
    names = sorted(labelled)
    return Dataset(folder, [os.path.join(folder, f) for f in names], [labelled[f] for f in names],
                   layout, label_file, num_classes)


# -- layouts --------------------------------------------------------------------

def _file_index(folder, label_file, num_classes):
    """``<file> <index>`` per line (val.txt / labels.txt)."""
    labelled = {}
    with open(label_file, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.rsplit(None, 1)
            where = f"{label_file}:{n}"
            if len(parts) != 2:
                raise DataError(f"{where}: expected '<file> <class index>', got {line[:80]!r}")
            name, idx = parts
            try:
                idx = int(idx)
            except ValueError:
                raise DataError(f"{where}: class index {idx!r} is not an integer") from None
            name = name.replace("\\", "/")
            if name in labelled:
                raise DataError(f"{where}: {name} is listed twice")
            labelled[name] = _check_index(idx, num_classes, where)
    if not labelled:
        raise DataError(f"label file is empty: {label_file}")
    images = _relative_images(folder)
    return _match(folder, images, labelled, label_file, os.path.basename(label_file), num_classes)


def _relative_images(folder):
    try:
        return [os.path.relpath(p, folder).replace(os.sep, "/") for p in list_images(folder)]
    except DataError:
        return []


def _image_folder(folder, subdirs, num_classes):
    synsets = all(_WNID.match(d) for d in subdirs)
    if synsets:
        unknown = [d for d in subdirs if d not in WNID_TO_INDEX]
        if unknown:
            raise DataError(f"{folder}: folder {unknown[0]} is not an ILSVRC2012 synset id")
        index = {d: WNID_TO_INDEX[d] for d in subdirs}
    else:
        if len(subdirs) > num_classes:
            raise DataError(f"{folder}: {len(subdirs)} class folders but the model has {num_classes} classes")
        index = {d: i for i, d in enumerate(subdirs)}
    paths, labels = [], []
    for d in subdirs:
        for p in walk_images(os.path.join(folder, d)):
            paths.append(p)
            labels.append(index[d])
    if not paths:
        raise DataError(f"no image files in the class folders of {folder}")
    layout = "imagefolder (synset ids)" if synsets else "imagefolder (sorted position)"
    return Dataset(folder, paths, labels, layout, folder, num_classes)


def _val_images(folder, label_file):
    images = _flat_images(folder)
    odd = [f for f in images if not _VAL_NAME.match(f)]
    if odd:
        raise DataError(f"{label_file} labels ILSVRC2012_val_XXXXXXXX images, but {folder} also holds {odd[0]}")
    if not images:
        raise DataError(f"no image files in {folder}")
    return images


def _loc_csv(folder, csv_file, num_classes):
    """Kaggle ``LOC_val_solution.csv``: ``ImageId,PredictionString`` where the
    prediction string is ``<wnid> x0 y0 x1 y1`` repeated (one class per image)."""
    by_id = {}
    with open(csv_file, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or [h.strip() for h in header[:2]] != ["ImageId", "PredictionString"]:
            raise DataError(f"{csv_file}: expected the header 'ImageId,PredictionString' of {LOC_SOLUTION_CSV}")
        for n, row in enumerate(reader, 2):
            if not row:
                continue
            where = f"{csv_file}:{n}"
            if len(row) < 2 or not row[1].split():
                raise DataError(f"{where}: expected '<ImageId>,<wnid> <box>...', got {','.join(row)[:80]!r}")
            wnid = row[1].split()[0]
            if wnid not in WNID_TO_INDEX:
                raise DataError(f"{where}: {wnid!r} is not an ILSVRC2012 synset id")
            by_id[row[0].strip()] = _check_index(WNID_TO_INDEX[wnid], num_classes, where)
    images = _val_images(folder, csv_file)
    labelled = {}
    for f in images:
        stem = os.path.splitext(f)[0]
        if stem not in by_id:
            raise DataError(f"{f} has no row in {csv_file}; the label file does not match the images")
        labelled[f] = by_id[stem]
    return _match(folder, images, labelled, csv_file, "ilsvrc-loc-csv", num_classes)


def _looks_like_ground_truth(path):
    """One bare integer per line (the devkit format) rather than ``<file> <index>``."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                return line.strip().isdigit()
    return False


def _ground_truth(folder, gt_file, meta, num_classes):
    with open(gt_file, encoding="utf-8", errors="replace") as f:
        lines = [ln.strip() for ln in f if ln.strip()]
    ids = []
    for n, v in enumerate(lines, 1):
        if not v.isdigit():
            raise DataError(f"{gt_file}:{n}: expected one ILSVRC2012 id (1..1000) per line, got {v[:40]!r}")
        ids.append(int(v))
    id_to_wnid = load_ilsvrc_meta(meta, gt_file)
    images = _val_images(folder, gt_file)
    labelled = {}
    for f in images:
        k = int(_VAL_NAME.match(f).group(1))
        if not 1 <= k <= len(ids):
            raise DataError(f"{f} is image {k} but {gt_file} has only {len(ids)} labels; "
                            f"the label file does not match the images")
        ilsvrc_id = ids[k - 1]
        if ilsvrc_id not in id_to_wnid:
            raise DataError(f"{gt_file}:{k}: ILSVRC2012 id {ilsvrc_id} is not a class id of {meta}")
        labelled[f] = _check_index(WNID_TO_INDEX[id_to_wnid[ilsvrc_id]], num_classes, f"{gt_file}:{k}")
    return _match(folder, images, labelled, gt_file, "ilsvrc-ground-truth", num_classes)


def load_ilsvrc_meta(meta, gt_file=None) -> dict:
    """ILSVRC2012_ID (1..1000) -> WNID, from the devkit ``meta.mat`` (needs scipy) or
    a text file of ``<id> <wnid>`` lines. Looked up beside ``gt_file`` when ``meta``
    is None."""
    if meta is None and gt_file:
        d = os.path.dirname(os.path.abspath(gt_file))
        for name in META_FILES:
            if os.path.isfile(os.path.join(d, name)):
                meta = os.path.join(d, name)
                break
    if meta is None:
        raise DataError(
            f"{os.path.basename(gt_file or GROUND_TRUTH_TXT)} holds ILSVRC2012 ids, which need the devkit's "
            f"meta.mat (with scipy installed) or an '<id> <wnid>' mapping file to become class indices: "
            f"pass --meta, or use {LOC_SOLUTION_CSV} / a val.txt with class indices instead")
    meta = os.fspath(meta)
    if not os.path.isfile(meta):
        raise DataError(f"meta file not found: {meta}")
    mapping = _meta_mat(meta) if meta.lower().endswith(".mat") else _meta_txt(meta)
    if len(mapping) != 1000 or len(set(mapping.values())) != 1000:
        raise DataError(f"{meta}: expected 1000 distinct ILSVRC2012 classes, found {len(set(mapping.values()))}")
    return mapping


def _meta_txt(path):
    out = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2 or not parts[0].isdigit() or parts[1] not in WNID_TO_INDEX:
                raise DataError(f"{path}:{n}: expected '<ILSVRC2012_ID> <wnid>', got {line.strip()[:80]!r}")
            out[int(parts[0])] = parts[1]
    return out


def _meta_mat(path):
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DataError(f"reading {os.path.basename(path)} needs scipy (pip install scipy), or pass an "
                        f"'<ILSVRC2012_ID> <wnid>' text file as --meta") from None
    try:
        synsets = loadmat(path, squeeze_me=True)["synsets"]
        out = {}
        for s in synsets:
            if int(s["num_children"]) == 0 and int(s["ILSVRC2012_ID"]) <= 1000:
                out[int(s["ILSVRC2012_ID"])] = str(s["WNID"])
    except Exception as e:  # a foreign .mat file: say so in one line
        raise DataError(f"{path} is not an ILSVRC2012 devkit meta.mat ({type(e).__name__}: {e})") from None
    return out


