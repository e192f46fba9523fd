import os

import numpy as np
import pytest

from keras_ptame import visualize


def _image(size=16, value=100):
    return np.full((size, size, 3), value, np.uint8)


def test_overlay_shape_dtype_and_blend():
    image = _image(16, 0)
    saliency = np.zeros((4, 4), np.float32)
    saliency[0, 0] = 1.0
    picture = visualize.overlay(image, saliency, cmap="gray", alpha=1.0)
    assert picture.shape == (16, 16, 3) and picture.dtype == np.uint8
    # gray colormap at alpha 1: the map itself, resized, brightest top-left.
    assert picture[0, 0].mean() > picture[-1, -1].mean()
    assert picture[-1, -1].max() == 0
    # alpha 0 gives the image back unchanged.
    np.testing.assert_array_equal(visualize.overlay(image, saliency, alpha=0.0), image)


def test_overlay_is_a_convex_blend():
    image = _image(8, 200)
    picture = visualize.overlay(image, np.ones((8, 8)), cmap="gray", alpha=0.5)
    # gray at 1.0 is white (255): halfway between 200 and 255.
    assert np.all(np.abs(picture.astype(int) - 228) <= 1)


def test_overlay_accepts_float_grayscale_and_odd_maps():
    gray = np.linspace(0, 255, 64, dtype=np.float32).reshape(8, 8)
    saliency = np.array([[np.nan, 2.0], [-1.0, 0.5]])  # clipped, NaN -> 0
    picture = visualize.overlay(gray, saliency)
    assert picture.shape == (8, 8, 3) and picture.dtype == np.uint8


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alpha": 1.5}, "alpha"),
        ({"cmap": "no-such-map"}, "colormap"),
    ],
)
def test_overlay_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        visualize.overlay(_image(), np.zeros((4, 4)), **kwargs)


def test_overlay_rejects_bad_shapes():
    with pytest.raises(ValueError, match="saliency_map"):
        visualize.overlay(_image(), np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="image"):
        visualize.overlay(np.zeros((4, 4, 5)), np.zeros((4, 4)))


def test_resize_map_keeps_range_and_size():
    resized = visualize.resize_map(np.eye(4), (32, 24))
    assert resized.shape == (32, 24) and resized.dtype == np.float32
    assert resized.min() >= 0.0 and resized.max() <= 1.0


def test_masked_image_multiplies_by_the_map():
    image = _image(4, 200)
    saliency = np.zeros((4, 4))
    saliency[:2] = 1.0
    masked = visualize.masked_image(image, saliency)
    assert (masked[:2] == 200).all() and (masked[2:] == 0).all()


def test_side_by_side_layout():
    image = _image(16, 200)
    saliency = np.zeros((4, 4))
    row = visualize.side_by_side(image, saliency, gap=2)
    assert row.shape == (16, 16 * 3 + 2 * 2, 3) and row.dtype == np.uint8
    np.testing.assert_array_equal(row[:, :16], image)
    assert (row[:, 16:18] == 255).all()  # white gap
    assert (row[:, -16:] == 0).all()  # zero map: black masked image
    assert visualize.side_by_side(image, saliency, gap=2, scale=2).shape == (
        32,
        2 * 52,
        3,
    )


def test_side_by_side_uses_the_given_masked_image():
    image = _image(8, 10)
    masked = _image(8, 77)
    row = visualize.side_by_side(image, np.ones((8, 8)), masked=masked, gap=0)
    np.testing.assert_array_equal(row[:, -8:], masked)
    with pytest.raises(ValueError, match="masked"):
        visualize.side_by_side(image, np.ones((8, 8)), masked=_image(4))


def test_grid_titles_and_array():
    images = np.stack([_image(16, v) for v in (0, 60, 120, 180, 240)])
    maps = np.random.default_rng(0).random((5, 4, 4))
    figure = visualize.grid(
        images,
        maps,
        classes=[0, 1, 0, 1, 0],
        scores=[0.9, 0.8, 0.7, 0.6, 0.5],
        class_names=["cat", "dog"],
        true_classes=[0, 0, 1, 1, 0],
        columns=3,
    )
    titles = [axis.get_title() for axis in figure.axes]
    assert titles[0] == "true cat\npred cat 0.90"
    assert titles[2] == "true dog\npred cat 0.70"
    assert len(figure.axes) == 5
    array = visualize.grid(images, maps, columns=3, as_array=True)
    assert array.ndim == 3 and array.shape[-1] == 3 and array.dtype == np.uint8
    assert array.shape[1] > array.shape[0]  # 3 columns by 2 rows


# Issue 23: flat maps are marked in the grid (title and red frame), named panels keep their names.
def test_grid_marks_flat_maps():
    images = np.stack([_image(16, v) for v in (0, 100, 200)])
    maps = np.zeros((3, 4, 4))
    maps[1] = 1.0
    figure = visualize.grid(
        images,
        maps,
        classes=[2, 0, 1],
        scores=[0.5, 0.9, 0.4],
        class_names=["tench", "goldfish", "great_white_shark"],
        flat=[True, False, True],
    )
    titles = [axis.get_title() for axis in figure.axes]
    assert titles == [
        "pred great_white_shark 0.50\nFLAT",
        "pred tench 0.90",
        "pred goldfish 0.40\nFLAT",
    ]
    framed = [axis.axison for axis in figure.axes]
    assert framed == [True, False, True]
    red = figure.axes[0].spines["left"].get_edgecolor()
    assert tuple(red[:3]) == (1.0, 0.0, 0.0)
    # Without names or scores a flat panel still says so.
    bare = visualize.grid(images, maps, flat=[False, False, True])
    assert [axis.get_title() for axis in bare.axes] == ["", "", "FLAT"]
    with pytest.raises(ValueError, match="flat"):
        visualize.grid(images, maps, flat=[True])


def test_grid_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="same number"):
        visualize.grid(np.zeros((2, 8, 8, 3)), np.zeros((3, 4, 4)))
    with pytest.raises(ValueError, match="titles"):
        visualize.grid(np.zeros((2, 8, 8, 3)), np.zeros((2, 4, 4)), titles=["a"])


def test_save_png_round_trip(tmp_path):
    from PIL import Image

    array = np.random.default_rng(1).integers(0, 256, (9, 7, 3)).astype(np.uint8)
    path = visualize.save_png(array, tmp_path / "sub" / "picture.png")
    np.testing.assert_array_equal(np.asarray(Image.open(path)), array)
    assert os.listdir(tmp_path / "sub") == ["picture.png"]  # no temporary left


def test_save_png_writes_figures(tmp_path):
    from PIL import Image

    figure = visualize.grid(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 4, 4)))
    path = visualize.save_png(figure, tmp_path / "grid.png")
    assert Image.open(path).mode == "RGB"


def test_save_png_rejects_non_images_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "picture.png"
    visualize.save_png(np.zeros((4, 4, 3), np.uint8), path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="picture"):
        visualize.save_png(np.zeros((4, 4, 7)), path)
    assert path.read_bytes() == before


# Issue 23: ImageNet class names for grid titles come from keras-hub, without network.
def test_imagenet_class_names_are_keras_hubs_and_offline(monkeypatch):
    pytest.importorskip("keras_hub")
    import socket

    from keras_ptame.utils.imagenet import imagenet_class_names

    def refuse(*args, **kwargs):
        raise OSError("network access in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    names = imagenet_class_names()
    assert len(names) == 1000
    assert names[:2] == ["tench", "goldfish"] and names[217] == "English_springer"
