"""Decoding (ofconvert.data.open_rgb) of every raster mode Pillow reads, the reasons
given for files that are not images, the image extensions, and the resize/crop
arithmetic against torchvision's formulas on the real imagenet-sample-1000 images."""
import os

import numpy as np
import pytest

from ofconvert.config import PreprocessConfig, get_config, list_models
from ofconvert.data import (
    IMAGE_EXTENSIONS,
    UnreadableImage,
    is_image_file,
    list_images,
    load_and_crop,
    load_batch,
    looks_like_text,
    open_rgb,
    resize_crop,
)

Image = pytest.importorskip("PIL.Image")

SAMPLE = "imagenet-sample-1000"
CAN_OPENER = "n02951585/n02951585_can_opener.JPEG"     # the one image of the set with EXIF orientation 6


def _rgb(path, **kw):
    return np.asarray(open_rgb(str(path), **kw))


def _grey(path):
    """Decoded image as one grey plane, after checking R == G == B."""
    a = _rgb(path)
    assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3
    assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()
    return a[..., 0]


@pytest.fixture(scope="module")
def sample_dir(datasets):
    d = os.path.join(datasets, SAMPLE)
    if not os.path.isdir(d):
        pytest.skip(f"{SAMPLE} not found under {datasets}")
    return d


# -- more than 8 bits per sample ----------------------------------------------------------

GRADIENT16 = (np.arange(64 * 16, dtype=np.int64) * 64).reshape(16, 64)   # 0..65472 across the image


def _save_16bit(path, fmt):
    a = GRADIENT16.astype(np.uint16)
    if fmt == "I;16B":
        Image.frombytes("I;16B", (64, 16), a.astype(">u2").tobytes()).save(path)
    else:
        Image.fromarray(a).save(path)


@pytest.mark.parametrize("name, fmt, opened_modes", [
    ("g16.png", "I;16", ("I;16", "I")),          # 16-bit grey PNG (Pillow < 10 opens it as I)
    ("g16le.tif", "I;16", ("I;16",)),
    ("g16be.tif", "I;16B", ("I;16B",)),          # big-endian 16-bit TIFF
    ("g16.pgm", "I;16", ("I",)),                 # 16-bit PGM: Pillow opens it as 32-bit I
])
def test_16bit_grey_is_scaled_not_clipped(tmp_path, name, fmt, opened_modes):
    p = tmp_path / name
    _save_16bit(p, fmt)
    with Image.open(p) as im:
        assert im.mode in opened_modes
    g = _grey(p)
    expected = (GRADIENT16 >> 8).astype(np.uint8)     # 16 -> 8 bits: the high byte
    np.testing.assert_array_equal(g, expected)
    assert g.min() == 0 and g.max() == 255 and len(np.unique(g)) == 256   # not all white


def test_16bit_grey_with_a_transparent_value_is_white_there(tmp_path):
    a = (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)
    p = tmp_path / "t16.png"
    Image.fromarray(a).save(p, transparency=5 * 257)
    g = _grey(p)
    expected = (a >> 8).astype(np.uint8)
    expected[a == 5 * 257] = 255
    np.testing.assert_array_equal(g, expected)
    assert g[0, 5] == 255 and g[0, 4] == 4 and g[0, 6] == 6


def test_32bit_integer_beyond_16_bits_uses_the_int32_range(tmp_path):
    a = np.array([[0, 1 << 23, 1 << 30, (1 << 31) - 1, -5, 70000]], dtype=np.int32)
    p = tmp_path / "i32.tif"
    Image.fromarray(a).save(p)
    with Image.open(p) as im:
        assert im.mode == "I"
    np.testing.assert_array_equal(_grey(p)[0], [0, 1, 128, 255, 0, 0])


@pytest.mark.parametrize("values, expected", [
    ([0.0, 0.25, 0.5, 1.0], [0, 64, 128, 255]),                 # within [0, 1]: times 255
    ([0.0, 12.4, 254.6, 300.0], [0, 12, 255, 255]),             # otherwise 0..255, rounded, clipped
    ([-3.0, 0.5, 1.5, np.nan], [0, 0, 2, 0]),                   # negatives and NaN -> 0
])
def test_float_images_follow_the_documented_rule(tmp_path, values, expected):
    p = tmp_path / "f.tif"
    Image.fromarray(np.array([values], dtype=np.float32)).save(p)
    with Image.open(p) as im:
        assert im.mode == "F"
    np.testing.assert_array_equal(_grey(p)[0], expected)


# -- 8-bit modes ----------------------------------------------------------------------------

def _palette_image():
    im = Image.new("P", (8, 4), 0)
    im.putpalette([255, 0, 0, 0, 0, 255, 10, 200, 30] + [0] * (768 - 9))
    for x in range(4, 8):
        for y in range(4):
            im.putpixel((x, y), 1)
    im.putpixel((0, 0), 2)
    return im


def test_palette_png_without_transparency(tmp_path):
    p = tmp_path / "p.png"
    _palette_image().save(p)
    a = _rgb(p)
    assert tuple(a[0, 0]) == (10, 200, 30) and tuple(a[1, 1]) == (255, 0, 0) and tuple(a[2, 6]) == (0, 0, 255)


def test_palette_png_with_transparency_is_white_there(tmp_path):
    p = tmp_path / "pt.png"
    _palette_image().save(p, transparency=1)
    a = _rgb(p)
    assert tuple(a[2, 6]) == (255, 255, 255) and tuple(a[1, 1]) == (255, 0, 0)


def test_gif_first_frame(tmp_path):
    p = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (10, 10), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(p) as im:
        assert im.format == "GIF" and im.n_frames == 3
    a = _rgb(p)
    assert a.shape == (10, 10, 3) and (a == (255, 0, 0)).all()


def test_gif_transparency_is_white(tmp_path):
    p = tmp_path / "t.gif"
    _palette_image().save(p, transparency=1)
    a = _rgb(p)
    assert tuple(a[2, 6]) == (255, 255, 255) and tuple(a[0, 0]) == (10, 200, 30)


def test_cmyk_jpeg(tmp_path):
    p = tmp_path / "cmyk.jpg"
    im = Image.new("CMYK", (32, 16), (255, 0, 0, 0))                 # cyan on the left...
    im.paste((0, 0, 0, 255), (16, 0, 32, 16))                         # ...black on the right
    im.save(p, quality=95)
    with Image.open(p) as r:
        assert r.mode == "CMYK"
    a = _rgb(p).astype(int)
    assert np.abs(a[8, 4] - (0, 255, 255)).max() <= 8
    assert np.abs(a[8, 28] - (0, 0, 0)).max() <= 8


def test_la_alpha_composited_on_white(tmp_path):
    p = tmp_path / "la.png"
    im = Image.new("LA", (3, 1))
    for x, alpha in enumerate((255, 0, 128)):
        im.putpixel((x, 0), (100, alpha))
    im.save(p)
    g = _grey(p)[0].astype(int)
    assert g[0] == 100 and g[1] == 255 and abs(g[2] - (100 * 128 + 255 * 127) / 255) <= 1


def test_rgba_alpha_composited_on_white(tmp_path):
    p = tmp_path / "rgba.png"
    im = Image.new("RGBA", (2, 1), (200, 10, 20, 255))
    im.putpixel((1, 0), (200, 10, 20, 0))
    im.save(p)
    a = _rgb(p)
    assert tuple(a[0, 0]) == (200, 10, 20) and tuple(a[0, 1]) == (255, 255, 255)


def test_bilevel_and_grey(tmp_path):
    one, grey = tmp_path / "one.png", tmp_path / "grey.png"
    im = Image.new("1", (2, 1), 0)
    im.putpixel((1, 0), 1)
    im.save(one)
    Image.new("L", (2, 1), 77).save(grey)
    assert list(_grey(one)[0]) == [0, 255]
    assert list(_grey(grey)[0]) == [77, 77]


# -- EXIF orientation ------------------------------------------------------------------------

def _oriented_jpeg(path, orientation, size=(60, 40)):
    """Stored ``size`` image, red on the left half, with an EXIF orientation tag."""
    im = Image.new("RGB", size, (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, size[0] // 2, size[1]))
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, exif=exif, quality=95)


def test_exif_orientation_6_is_applied(tmp_path):
    p = tmp_path / "o6.jpg"
    _oriented_jpeg(p, 6)
    a = _rgb(p)
    assert a.shape == (60, 40, 3)                      # width and height swapped
    # orientation 6 = rotate 90 degrees clockwise for display: the left half goes on top
    assert a[5, 20, 0] > 200 and a[5, 20, 2] < 50
    assert a[55, 20, 2] > 200 and a[55, 20, 0] < 50


def test_exif_orientation_with_the_jpeg_draft_fast_path(tmp_path):
    p = tmp_path / "o6big.jpg"
    _oriented_jpeg(p, 6, size=(800, 600))
    img = open_rgb(str(p), draft_size=256)
    assert img.size == (300, 400)                      # draft halves 800x600, then the turn


def test_orientation_1_and_no_exif_are_unchanged(tmp_path):
    p1, p0 = tmp_path / "o1.jpg", tmp_path / "o0.jpg"
    _oriented_jpeg(p1, 1)
    Image.new("RGB", (60, 40)).save(p0)
    assert _rgb(p1).shape == (40, 60, 3) and _rgb(p0).shape == (40, 60, 3)


def test_real_photo_with_exif_orientation(sample_dir):
    p = os.path.join(sample_dir, CAN_OPENER)
    if not os.path.isfile(p):
        pytest.skip(f"{CAN_OPENER} not in {sample_dir}")
    with Image.open(p) as im:
        stored = im.size
        assert im.getexif().get(0x0112) == 6
    assert open_rgb(p).size == (stored[1], stored[0])


# -- files that are not (decodable) images ------------------------------------------------------

def _reason(path):
    with pytest.raises(UnreadableImage) as e:
        open_rgb(str(path))
    msg = str(e.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg
    return msg[len(str(path)) + 2:]


NOT_IMAGES = [
    ("notes.jpg", b"these are my notes\nnot a picture\n", "not an image (text file)"),
    ("page.jpg", b"<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n", "not an image (HTML page"),
    ("draw.png", b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>\n',
     "not a raster image (SVG vector drawing)"),
    ("empty.jpg", b"", "empty file"),
    ("stub.jpg", b"\xff\xd8\xff", "truncated or corrupt JPEG file (3 bytes)"),
    ("doc.png", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "not an image (PDF document)"),
    ("phone.jpg", b"\0\0\0\x18ftypheic\0\0\0\0mif1heic", "HEIC/HEIF image"),
    ("noise.bmp", bytes([0, 7, 250, 3, 9]) * 40, "not an image (unrecognised format; first bytes 00 07 fa"),
]


@pytest.mark.parametrize("name, content, reason", NOT_IMAGES, ids=[c[0] for c in NOT_IMAGES])
def test_not_an_image_gives_the_real_reason(tmp_path, name, content, reason):
    p = tmp_path / name
    p.write_bytes(content)
    assert _reason(p).startswith(reason)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "TIFF"])
def test_truncated_image(tmp_path, fmt):
    full, cut = tmp_path / f"full.{fmt.lower()}", tmp_path / f"cut.{fmt.lower()}"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(full, format=fmt)
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    assert _reason(cut).startswith(f"truncated {fmt} file")


def test_truncated_real_jpeg(tmp_path, sample_dir):
    src = list_images(sample_dir)[0]
    with open(src, "rb") as f:
        data = f.read()
    cut = tmp_path / "cut.JPEG"
    cut.write_bytes(data[: len(data) // 3])
    assert _reason(cut).startswith("truncated JPEG file")
    assert open_rgb(src).mode == "RGB"       # the whole file decodes


def test_folder_and_missing_file(tmp_path):
    (tmp_path / "dir.jpg").mkdir()
    assert _reason(tmp_path / "dir.jpg") == "is a folder, not an image file"
    assert _reason(tmp_path / "absent.jpg") == "file not found"


def test_load_batch_skips_unreadable_files(tmp_path):
    good, bad = tmp_path / "good.gif", tmp_path / "bad.jpg"
    Image.new("RGB", (300, 260), (1, 2, 3)).save(good)
    bad.write_text("hello")
    cfg = PreprocessConfig(224)
    batch, skipped = load_batch([str(good), str(bad)], cfg)
    assert batch.shape == (1, 3, 224, 224) and skipped == [str(bad)]


def test_looks_like_text():
    assert looks_like_text(b"plain ascii\n")
    assert looks_like_text("caf\u00e9 \u00e9t\u00e9".encode()[:-1])     # a 2-byte character cut at the end
    assert not looks_like_text(b"")
    assert not looks_like_text(b"abc\0def")
    assert not looks_like_text(b"\xff\xd8\xff\xe0")


# -- extensions --------------------------------------------------------------------------------

def test_gif_and_common_raster_extensions_are_images():
    for ext in (".gif", ".GIF", ".jfif", ".pgm", ".jpg", ".png", ".webp", ".tiff"):
        assert is_image_file("x" + ext), ext
    assert ".gif" in IMAGE_EXTENSIONS
    assert not is_image_file("notes.txt") and not is_image_file("w.npz")


def test_gif_in_a_labelled_folder_is_loaded_and_decoded(tmp_path):
    from ofconvert.datasets import load_dataset

    Image.new("RGB", (40, 30), (9, 9, 9)).save(tmp_path / "a.jpg")
    _palette_image().save(tmp_path / "b.gif")
    (tmp_path / "labels.txt").write_text("a.jpg 1\nb.gif 2\n")
    ds = load_dataset(str(tmp_path))
    assert [os.path.basename(p) for p in ds.paths] == ["a.jpg", "b.gif"] and ds.labels == [1, 2]
    assert load_and_crop(ds.paths[1], PreprocessConfig(32)).shape == (32, 32, 3)


@pytest.mark.parametrize("fmt, ext", [("WEBP", ".webp"), ("BMP", ".bmp"), ("PPM", ".ppm"), ("TIFF", ".tif"),
                                      ("JPEG", ".jfif")])
def test_every_listed_format_round_trips(tmp_path, fmt, ext):
    p = tmp_path / ("x" + ext)
    Image.new("RGB", (20, 10), (200, 100, 50)).save(p, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    assert is_image_file(p.name)
    a = _rgb(p).astype(int)
    assert a.shape == (10, 20, 3) and np.abs(a - (200, 100, 50)).max() <= 3


# -- resize + centre crop: torchvision's arithmetic --------------------------------------------

def _tv_compute_resized_output_size(image_size, size):
    """Reference: torchvision.transforms.functional._compute_resized_output_size for
    ``Resize(size)`` with an int size and max_size=None. image_size = (h, w); returns
    [new_h, new_w]. The long side is TRUNCATED (``int``), not rounded."""
    h, w = image_size
    short, long = (w, h) if w <= h else (h, w)
    requested_new_short = size
    new_short, new_long = requested_new_short, int(requested_new_short * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    return [new_h, new_w]


def _tv_center_crop_offsets(image_size, output_size):
    """Reference: torchvision.transforms.functional.center_crop (image at least as
    large as the crop): returns (crop_top, crop_left)."""
    image_height, image_width = image_size
    crop_height, crop_width = output_size
    crop_top = int(round((image_height - crop_height) / 2.0))
    crop_left = int(round((image_width - crop_width) / 2.0))
    return crop_top, crop_left


def _old_rounded_size(w, h, r):
    """The previous ofconvert arithmetic (rounded long side), to count what changed."""
    return (r, max(r, int(round(h * r / w)))) if w <= h else (max(r, int(round(w * r / h))), r)


class _SizeOnly:
    """Stands in for a PIL image in ``resize_crop``: records resize/crop calls, no pixels."""

    def __init__(self, size, log):
        self.size, self.log = tuple(size), log

    def resize(self, size, resample=None):
        self.log.append(("resize", tuple(size)))
        return _SizeOnly(size, self.log)

    def crop(self, box):
        self.log.append(("crop", tuple(box)))
        return _SizeOnly((box[2] - box[0], box[3] - box[1]), self.log)


def _geometry(w, h, cfg):
    """(resized (w, h), crop box) that ``resize_crop`` applies to a w x h image."""
    log = []
    out = resize_crop(_SizeOnly((w, h), log), cfg)
    resized = dict(log).get("resize", (w, h))        # no resize call: already the right size
    assert out.size == (cfg.input_size, cfg.input_size)
    return resized, dict(log)["crop"]


def _torchvision_geometry(w, h, cfg):
    new_h, new_w = _tv_compute_resized_output_size((h, w), cfg.resize_size)
    top, left = _tv_center_crop_offsets((new_h, new_w), (cfg.input_size, cfg.input_size))
    return (new_w, new_h), (left, top, left + cfg.input_size, top + cfg.input_size)


@pytest.fixture(scope="module")
def sample_sizes(sample_dir):
    """(w, h) of every image of imagenet-sample-1000 (header only, no decoding), as
    stored and as decoded (EXIF orientation applied)."""
    sizes = []
    for p in list_images(sample_dir):
        with Image.open(p) as im:
            w, h = im.size
            if im.getexif().get(0x0112) in (5, 6, 7, 8):
                w, h = h, w
        sizes.append((w, h))
    assert len(sizes) == 1000
    return sizes


@pytest.mark.parametrize("w, h", [(500, 375), (375, 500), (256, 256), (257, 256), (300, 299), (1, 1000),
                                  (1000, 3), (640, 427), (333, 500), (482, 500), (224, 1000), (500, 332)])
def test_resize_crop_matches_torchvision_on_edge_sizes(w, h):
    for name in list_models():
        cfg = get_config(name).preprocess
        assert _geometry(w, h, cfg) == _torchvision_geometry(w, h, cfg), (name, w, h)


def test_resize_crop_matches_torchvision_on_every_sample_image(sample_sizes):
    cfgs = {get_config(n).preprocess.key(): get_config(n).preprocess for n in list_models()}
    for cfg in cfgs.values():
        for w, h in sample_sizes:
            assert _geometry(w, h, cfg) == _torchvision_geometry(w, h, cfg), (cfg.key(), w, h)


def test_previous_rounding_differed_on_many_sample_images(sample_sizes):
    """Measured on imagenet-sample-1000: the old rounding made the long side one pixel
    longer than torchvision for 232 of the 1000 images (23.2%) at resize 256
    (224/0.875: alexnet, vgg16, resnet50, efficientnet_lite0); 568 (56.8%) at 272
    (lite1), 226 (22.6%) at 292 (lite2), 593 (59.3%) at 341 (inception_v3).
    imagenet-val-1300 (227x227 squares) and imagenet-stubs-16: none."""
    cfg = PreprocessConfig(224)
    differ = sum(_old_rounded_size(w, h, 256) != _geometry(w, h, cfg)[0] for w, h in sample_sizes)
    assert differ / len(sample_sizes) > 0.1, differ


def test_resize_crop_pixels_on_real_images(sample_dir, sample_sizes):
    """End to end on real images whose size the old rounding got wrong: the pixels
    are PIL's resize to torchvision's size, then torchvision's crop."""
    cfg = PreprocessConfig(224, interpolation="bicubic")
    paths = list_images(sample_dir)
    changed = [p for p, (w, h) in zip(paths, sample_sizes) if _old_rounded_size(w, h, 256) != _geometry(w, h, cfg)[0]]
    assert changed
    for p in changed[:3]:
        img = open_rgb(p)
        size, box = _torchvision_geometry(img.size[0], img.size[1], cfg)
        expected = np.asarray(img.resize(size, Image.BICUBIC).crop(box))
        np.testing.assert_array_equal(load_and_crop(p, cfg), expected)
