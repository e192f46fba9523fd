"""Finding and reading image files (`keras_ptame/utils/images.py`)."""

import numpy as np
import pytest

from keras_ptame.utils.images import find_images, images_in_folder, read_image

Image = pytest.importorskip("PIL.Image")


def _pixels(height=6, width=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3)).astype("uint8")


def test_a_png_is_read_exactly_and_not_noted(tmp_path):
    pixels = _pixels()
    path = str(tmp_path / "a.png")
    Image.fromarray(pixels).save(path)
    notes = []
    original, resized = read_image(path, notes=notes)
    np.testing.assert_array_equal(original, pixels)
    assert resized is original and original.dtype == np.uint8
    assert notes == []


def test_a_jpeg_is_read_close_to_its_pixels(tmp_path):
    pixels = np.full((8, 8, 3), (200, 40, 90), "uint8")
    path = str(tmp_path / "a.jpg")
    Image.fromarray(pixels).save(path, quality=95)
    original, _ = read_image(path)
    assert original.shape == (8, 8, 3)
    assert np.abs(original.astype(int) - pixels).max() <= 3


def test_grayscale_is_repeated_on_three_channels(tmp_path):
    gray = _pixels()[..., 0]
    path = str(tmp_path / "gray.png")
    Image.fromarray(gray, mode="L").save(path)
    notes = []
    original, _ = read_image(path, notes=notes)
    np.testing.assert_array_equal(original, np.repeat(gray[..., None], 3, axis=-1))
    assert notes == [f"{path}: converted from mode L to RGB"]


def test_alpha_is_dropped(tmp_path):
    pixels = _pixels()
    alpha = np.zeros(pixels.shape[:2] + (1,), "uint8")  # fully transparent
    path = str(tmp_path / "rgba.png")
    Image.fromarray(np.concatenate([pixels, alpha], -1), mode="RGBA").save(path)
    original, _ = read_image(path)
    np.testing.assert_array_equal(original, pixels)


def test_16_bit_grayscale_is_scaled_to_8_bits_not_clipped(tmp_path):
    deep = np.array([[0, 257 * 100], [257 * 200, 65535]], "uint16")
    path = str(tmp_path / "deep.png")
    Image.fromarray(deep).save(path)
    notes = []
    original, _ = read_image(path, notes=notes)
    np.testing.assert_array_equal(original[..., 0], [[0, 100], [200, 255]])
    assert "scaled to 8 bits" in notes[0]


def test_the_resized_copy_has_the_size_asked_and_is_noted(tmp_path):
    path = str(tmp_path / "a.png")
    Image.fromarray(_pixels(6, 5)).save(path)
    notes = []
    original, resized = read_image(path, size=(4, 8), notes=notes)
    assert original.shape == (6, 5, 3) and resized.shape == (4, 8, 3)
    assert notes == [f"{path}: resized from 6x5 to 4x8"]


def test_a_file_that_is_not_an_image_is_refused_by_name(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    with pytest.raises(ValueError, match=r"Cannot read .*notes\.png.* as an image"):
        read_image(str(path))


def test_folders_are_searched_recursively_in_sorted_order(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.PNG", "a.jpg", "sub/c.jpeg", "readme.txt"):
        (tmp_path / name).write_bytes(b"")
    found = images_in_folder(tmp_path)
    assert found == [
        str(tmp_path / "a.jpg"),
        str(tmp_path / "b.PNG"),
        str(tmp_path / "sub" / "c.jpeg"),
    ]
    single = tmp_path / "z.bmp"
    single.write_bytes(b"")
    # Files and folders are taken in the order given.
    assert find_images([str(single), str(tmp_path / "sub")]) == [
        str(single),
        str(tmp_path / "sub" / "c.jpeg"),
    ]


def test_missing_inputs_and_empty_folders_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        find_images([str(tmp_path / "missing.png")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No image files .* in folder"):
        find_images([str(tmp_path / "empty")])
    with pytest.raises(ValueError, match="Not a folder"):
        images_in_folder(tmp_path / "missing")


# Issue 24: for a grayscale explainer files are read as one channel: a gray
# file exactly (no note), a colour file as its luminance (noted), resized too.
def test_files_are_read_as_grayscale_for_one_channel(tmp_path):
    gray = _pixels()[..., 0]
    gray_path = str(tmp_path / "gray.png")
    Image.fromarray(gray, mode="L").save(gray_path)
    notes = []
    original, resized = read_image(gray_path, size=(3, 4), notes=notes, channels=1)
    np.testing.assert_array_equal(original, gray[..., None])
    assert resized.shape == (3, 4, 1) and resized.dtype == np.uint8
    assert notes == [f"{gray_path}: resized from 6x5 to 3x4"]
    colour = _pixels(seed=1)
    colour_path = str(tmp_path / "colour.png")
    Image.fromarray(colour).save(colour_path)
    notes = []
    original, _ = read_image(colour_path, notes=notes, channels=1)
    luma = colour.astype(float) @ np.array([0.299, 0.587, 0.114])
    assert original.shape == (6, 5, 1)
    assert np.abs(original[..., 0].astype(float) - luma).max() <= 1
    assert notes == [f"{colour_path}: converted from mode RGB to L"]


# Issue 24: image files hold no other channel counts: refused by name.
@pytest.mark.parametrize("channels", [2, 4])
def test_other_channel_counts_are_refused_for_files(tmp_path, channels):
    path = str(tmp_path / "a.png")
    Image.fromarray(_pixels()).save(path)
    with pytest.raises(ValueError, match=f"Received: channels={channels}"):
        read_image(path, channels=channels)
