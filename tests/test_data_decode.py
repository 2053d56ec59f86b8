"""Decoding real ILSVRC-2012 oddities to RGB, and the shorter-side-then-centre resize."""
import numpy as np
import pytest
from PIL import Image
from torchvision.datasets.folder import pil_loader

from alexnet_lit.data.decode import DecodeError, ImageFiles, load_rgb, prepare_image
from conftest import write_image


def reference(path, size: int) -> np.ndarray:
    """docs/paper.md "Data", written out with PIL alone: the shorter side to ``size`` (the longer
    one truncated to an integer, as torchvision does), then the central size x size patch."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    new = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    image = image.resize(new, Image.BILINEAR)
    left, top = round((new[0] - size) / 2), round((new[1] - size) / 2)
    return np.asarray(image.crop((left, top, left + size, top + size)))


ODD = [("rgb", (37, 91)), ("rgb", (300, 17)), ("gray", (60, 61)), ("cmyk", (50, 70)),
       ("png", (40, 33)), ("rgb", (32, 32)), ("rgb", (20, 11))]


@pytest.mark.parametrize("kind,size", ODD)
def test_every_kind_decodes_to_rgb_at_the_paper_size(tmp_path, kind, size):
    path = write_image(tmp_path / "x.JPEG", kind, size)
    if kind == "png":
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # PNG bytes behind a .JPEG name
    assert load_rgb(path).mode == "RGB"
    pixels = prepare_image(path, 32)
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, reference(path, 32))


def test_grayscale_comes_out_with_three_equal_channels(tmp_path):
    pixels = prepare_image(write_image(tmp_path / "g.JPEG", "gray", (50, 40)), 24)
    assert np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 1], pixels[..., 2])


def test_cmyk_colours_survive(tmp_path):
    rgb = prepare_image(write_image(tmp_path / "a.JPEG", "rgb", (40, 40), seed=3), 40).astype(int)
    cmyk = prepare_image(write_image(tmp_path / "b.JPEG", "cmyk", (40, 40), seed=3), 40).astype(int)
    assert np.abs(rgb - cmyk).mean() < 8  # the same picture, not inverted or channel-swapped


@pytest.mark.parametrize("kind", ["truncated", "garbage"])
def test_unreadable_file_raises_naming_it(tmp_path, kind):
    path = write_image(tmp_path / "n01440764" / "bad.JPEG", kind, (120, 90))
    with pytest.raises(DecodeError, match="bad.JPEG"):
        prepare_image(path, 32)


def test_skip_policy_marks_the_sample_and_logs_the_file(tmp_path):
    good = write_image(tmp_path / "good.JPEG", "rgb")
    bad = write_image(tmp_path / "bad.JPEG", "truncated", (120, 90))
    log = tmp_path / "skipped.txt"
    files = ImageFiles([(str(good), 0), (str(bad), 1)], 16, on_error="skip", skip_log=log)
    assert files[0][1] == 0
    image, label = files[1]
    assert label == -1 and image.shape == (16, 16, 3)
    assert str(bad) in log.read_text()
    with pytest.raises(DecodeError, match="bad.JPEG"):
        ImageFiles([(str(bad), 1)], 16)[0]
    with pytest.raises(ValueError, match="on_error='ignore'"):
        ImageFiles([], 16, on_error="ignore")


def test_16_bit_images_are_scaled_to_8_bits(tmp_path):
    path = write_image(tmp_path / "deep.png", "png16", (48, 40), seed=1)
    stored = np.asarray(Image.open(path)).astype(np.int64)  # 16-bit: the picture's grey x 257
    assert stored.max() > 255
    pixels = np.asarray(load_rgb(path))
    for channel in range(3):
        np.testing.assert_array_equal(pixels[..., channel], stored // 257)


def test_exif_orientation_is_ignored_as_torchvision_does_or_applied_on_request(tmp_path):
    path = write_image(tmp_path / "turned.jpg", "exif", (48, 40))
    stored = load_rgb(path)
    assert stored.size == (48, 40)
    np.testing.assert_array_equal(np.asarray(stored), np.asarray(pil_loader(path)))
    upright = load_rgb(path, "apply")
    assert upright.size == (40, 48)  # Orientation 6: shown turned 90 degrees clockwise
    np.testing.assert_array_equal(np.asarray(upright), np.rot90(np.asarray(stored), k=-1))
    with pytest.raises(ValueError, match="exif_orientation='upright': expected one of"):
        load_rgb(path, "upright")


def test_transparent_pixels_are_composited_on_white(tmp_path):
    path = write_image(tmp_path / "alpha.png", "rgba", (48, 40))
    rgba = np.asarray(Image.open(path)).astype(np.float64)
    pixels = np.asarray(load_rgb(path)).astype(np.float64)
    assert (pixels[:20, :24] == 255).all()  # alpha 0: the background
    np.testing.assert_array_equal(pixels[20:], rgba[20:, :, :3])  # opaque: the colour
    half = rgba[:20, 24:, :3] * 128 / 255 + 255 * (1 - 128 / 255)
    assert np.abs(pixels[:20, 24:] - half).max() <= 1


def test_a_palettes_transparent_colour_is_composited_on_white(tmp_path):
    path = write_image(tmp_path / "palette.png", "palette", (48, 40))
    image = Image.open(path)
    index, palette = np.asarray(image), np.array(image.getpalette()).reshape(-1, 3)
    assert image.info["transparency"] == 0 and (index == 0).any() and (index != 0).any()
    pixels = np.asarray(load_rgb(path))
    assert (pixels[index == 0] == 255).all()
    np.testing.assert_array_equal(pixels[index != 0], palette[index[index != 0]])
