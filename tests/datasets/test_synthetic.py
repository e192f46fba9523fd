import numpy as np
import pytest

import keras_ptame as kp
from keras_ptame.datasets import (
    SHAPE_NAMES,
    make_backgrounds,
    make_negatives,
    make_shapes,
    mass_inside,
    pointing_game,
    shape_names,
    shapes_dataset,
)


def _bounding_box(mask):
    rows, cols = np.nonzero(mask)
    return rows.min(), rows.max(), cols.min(), cols.max()


def test_arrays_have_the_documented_shapes_and_dtypes():
    images, labels, masks = make_shapes(12, image_size=32, num_classes=4, seed=3)
    assert images.shape == (12, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (12,) and labels.dtype == np.int32
    assert masks.shape == (12, 32, 32) and masks.dtype == bool
    assert set(np.unique(labels)) <= set(range(4))


def test_same_seed_same_data_other_seed_other_data():
    first = make_shapes(6, image_size=32, seed=7)
    second = make_shapes(6, image_size=32, seed=7)
    other = make_shapes(6, image_size=32, seed=8)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])
    assert not np.array_equal(first[2], other[2])


def test_classes_are_balanced():
    _, labels, _ = make_shapes(40, image_size=32, num_classes=6, seed=0)
    counts = np.bincount(labels, minlength=6)
    assert counts.sum() == 40
    assert counts.max() - counts.min() <= 1


def test_every_object_is_inside_the_image_with_a_margin():
    _, _, masks = make_shapes(60, image_size=32, num_classes=8, seed=1)
    for mask in masks:
        assert mask.any()
        top, bottom, left, right = _bounding_box(mask)
        assert top >= 1 and left >= 1 and bottom <= 30 and right <= 30


def test_object_size_follows_size_range():
    size = 64
    _, _, masks = make_shapes(48, image_size=size, seed=2, size_range=(0.3, 0.4))
    for mask in masks:
        top, bottom, left, right = _bounding_box(mask)
        side = max(bottom - top, right - left) + 1
        assert 0.3 * size - 2 <= side <= 0.4 * size + 2


def test_mask_covers_exactly_the_uniform_object_pixels():
    # Without pixel noise, every masked pixel has the object's one colour,
    # and that colour stands out from the pixels just outside the mask.
    images, _, masks = make_shapes(24, image_size=48, num_classes=8, seed=4, noise=0.0)
    for image, mask in zip(images, masks, strict=True):
        inside = image[mask].astype(int)
        assert (inside == inside[0]).all()
        grown = np.zeros_like(mask)
        grown[1:-1, 1:-1] = (
            mask[:-2, 1:-1] | mask[2:, 1:-1] | mask[1:-1, :-2] | mask[1:-1, 2:]
        )
        rim = grown & ~mask
        distance = np.linalg.norm(image[rim].astype(float) - inside[0], axis=-1)
        assert np.median(distance) > 50


def test_shapes_differ_between_classes():
    # Mean mask fill of the bounding box tells the shapes apart: a square
    # fills it, a disc ~0.79, a triangle ~0.5, a thin bar less.
    _, labels, masks = make_shapes(120, image_size=64, num_classes=6, seed=5)
    fill = {}
    for label, mask in zip(labels, masks, strict=True):
        top, bottom, left, right = _bounding_box(mask)
        box = mask[top : bottom + 1, left : right + 1]
        fill.setdefault(SHAPE_NAMES[label], []).append(box.mean())
    fill = {name: np.mean(values) for name, values in fill.items()}
    assert fill["square"] > 0.95
    assert 0.7 < fill["disc"] < 0.85
    assert 0.4 < fill["triangle"] < 0.6
    assert fill["ring"] < fill["disc"]


def test_images_are_cluttered_outside_the_object():
    images, _, masks = make_shapes(8, image_size=64, seed=6)
    for image, mask in zip(images, masks, strict=True):
        background = image[~mask].astype(float)
        assert background.std(axis=0).mean() > 5


def test_shape_names():
    assert shape_names(3) == ["square", "disc", "triangle"]
    assert len(shape_names(8)) == 8


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"count": -1}, "count"),
        ({"count": 2, "num_classes": 1}, "num_classes"),
        ({"count": 2, "num_classes": 9}, "num_classes"),
        ({"count": 2, "image_size": 8}, "image_size"),
        ({"count": 2, "size_range": (0.5, 0.3)}, "size_range"),
        ({"count": 2, "image_size": 16, "size_range": (0.1, 0.3)}, "8 pixels"),
        ({"count": 2, "noise": -1.0}, "noise"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_shapes(**kwargs)


def test_tf_data_version_matches_numpy():
    images, labels, masks = make_shapes(10, image_size=32, seed=9)
    batches = list(shapes_dataset(10, batch_size=4, image_size=32, seed=9))
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), images)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), labels)
    with_masks = list(
        shapes_dataset(10, batch_size=10, image_size=32, seed=9, with_masks=True)
    )
    assert len(with_masks[0]) == 3
    np.testing.assert_array_equal(with_masks[0][2], masks)


def test_tf_data_shuffle_keeps_image_label_pairs():
    images, labels, _ = make_shapes(12, image_size=32, seed=2)
    batch = next(
        iter(shapes_dataset(12, batch_size=12, image_size=32, seed=2, shuffle=True))
    )
    shuffled_images, shuffled_labels = np.asarray(batch[0]), np.asarray(batch[1])
    for image, label in zip(shuffled_images, shuffled_labels, strict=True):
        index = np.flatnonzero((images == image).all(axis=(1, 2, 3)))[0]
        assert labels[index] == label


def test_metrics_are_those_of_keras_ptame_metrics():
    assert pointing_game is kp.metrics.pointing_game
    assert mass_inside is kp.metrics.mass_inside
    # Scored against the generator's masks: a peak on the object is a hit, a
    # peak off it a miss, one score per image.
    _, _, masks = make_shapes(2, image_size=32, seed=0)
    maps = np.zeros((2, 32, 32))
    maps[0][masks[0]] = 1.0
    row, column = np.argwhere(masks[0])[0]
    maps[0, row, column] = 2.0
    maps[1][~masks[1]] = 1.0
    np.testing.assert_allclose(pointing_game(maps, masks=masks), [1.0, 0.0])
    np.testing.assert_allclose(mass_inside(maps, masks=masks), [1.0, 0.0])


def test_backgrounds_hold_no_object_and_are_deterministic():
    empty = make_backgrounds(4, image_size=32, seed=3)
    assert empty.shape == (4, 32, 32, 3) and empty.dtype == np.uint8
    np.testing.assert_array_equal(empty, make_backgrounds(4, image_size=32, seed=3))
    # The scene is dark: no bright object-sized region, unlike the shapes.
    images, _, masks = make_shapes(4, image_size=32, seed=3)
    assert np.median(empty.max(axis=-1)) < 80
    assert all(
        np.median(image[mask].max(axis=-1)) >= 120
        for image, mask in zip(images, masks, strict=True)
    )


def test_negatives_hold_no_visible_object():
    count = 6
    negatives = make_negatives(count, image_size=32, num_classes=4, seed=2)
    assert negatives.shape == (2 * count, 32, 32, 3) and negatives.dtype == np.uint8
    np.testing.assert_array_equal(
        negatives, make_negatives(count, image_size=32, num_classes=4, seed=2)
    )
    # Backgrounds first, some darkened, none brightened.
    backgrounds = make_backgrounds(count, image_size=32, seed=2)
    assert (negatives[:count] <= backgrounds).all()
    assert (negatives[:count] < backgrounds).any()
    # Then shapes whose object pixels are black, everything else kept.
    shapes, _, masks = make_shapes(count, image_size=32, num_classes=4, seed=20_002)
    assert (negatives[count:][masks] == 0).all()
    np.testing.assert_array_equal(negatives[count:][~masks], shapes[~masks])


def test_dark_classes_draw_their_object_near_black():
    default = make_shapes(24, image_size=32, num_classes=4, seed=5, noise=0.0)
    np.testing.assert_array_equal(
        make_shapes(
            24, image_size=32, num_classes=4, seed=5, noise=0.0, dark_classes=()
        )[0],
        default[0],
    )
    images, labels, masks = make_shapes(
        24, image_size=32, num_classes=4, seed=5, noise=0.0, dark_classes=[1]
    )
    np.testing.assert_array_equal(labels, default[1])
    for image, label, mask in zip(images, labels, masks, strict=True):
        colour = image[mask]
        if label == 1:
            # Darker than the scene around it, and what a black fill leaves.
            assert colour.max() <= 8
            assert image[~mask].mean() > colour.mean()
        else:
            assert np.median(colour.max(axis=-1)) >= 120


@pytest.mark.parametrize("dark", [[4], [-1], ["x"], 3])
def test_bad_dark_classes_are_named(dark):
    with pytest.raises(ValueError, match="dark_classes"):
        make_shapes(2, num_classes=4, dark_classes=dark)


# Issue 24: 4 channels are the RGB images of `channels=3` (same seed, same
# pixels, labels and masks) and a band where the object is bright on a dim
# background; 1 channel is grayscale with the same labels and masks.
def test_four_channels_are_the_rgb_images_and_a_band_showing_the_object():
    rgb, labels, masks = make_shapes(24, image_size=32, num_classes=4, seed=5)
    four, labels4, masks4 = make_shapes(
        24, image_size=32, num_classes=4, seed=5, channels=4
    )
    assert four.shape == (24, 32, 32, 4) and four.dtype == np.uint8
    np.testing.assert_array_equal(four[..., :3], rgb)
    np.testing.assert_array_equal(labels4, labels)
    np.testing.assert_array_equal(masks4, masks)
    band = four[..., 3].astype(float)
    for image, mask in zip(band, masks, strict=True):
        assert image[mask].mean() > image[~mask].mean() + 80


# Issue 24: grayscale images show every (not dark) object brighter than its
# background, and a dark class's object darker; the same labels and masks.
def test_one_channel_is_grayscale_where_the_object_shows():
    _, labels, masks = make_shapes(24, image_size=32, num_classes=4, seed=6)
    gray, labels1, masks1 = make_shapes(
        24, image_size=32, num_classes=4, seed=6, channels=1
    )
    assert gray.shape == (24, 32, 32, 1) and gray.dtype == np.uint8
    np.testing.assert_array_equal(labels1, labels)
    np.testing.assert_array_equal(masks1, masks)
    for image, mask in zip(gray[..., 0].astype(float), masks, strict=True):
        assert image[mask].mean() > image[~mask].mean() + 80
    dark, _, dark_masks = make_shapes(
        8, image_size=32, num_classes=2, seed=6, channels=1, dark_classes=(0, 1)
    )
    for image, mask in zip(dark[..., 0].astype(float), dark_masks, strict=True):
        assert image[mask].mean() < image[~mask].mean()


# Issue 24: the default is RGB, the same arrays as `channels=3`, and the
# data set passes `channels` on; bad counts are refused by name.
def test_channels_default_to_rgb_and_bad_counts_are_refused():
    default = make_shapes(6, image_size=32, seed=2)
    explicit = make_shapes(6, image_size=32, seed=2, channels=3)
    for a, b in zip(default, explicit, strict=True):
        np.testing.assert_array_equal(a, b)
    for channels, match in ((0, "`channels` must be >= 1"), (2, "channels=2")):
        with pytest.raises(ValueError, match=match):
            make_shapes(2, image_size=32, channels=channels)


# Issue 24: `shapes_dataset(channels=...)` yields images of that many channels.
@pytest.mark.parametrize("channels", [1, 4])
def test_the_dataset_yields_the_channels_asked_for(channels):
    pytest.importorskip("tensorflow")
    dataset = shapes_dataset(6, batch_size=3, image_size=32, channels=channels)
    images, labels = next(iter(dataset))
    assert tuple(images.shape) == (3, 32, 32, channels)
    expected = make_shapes(6, image_size=32, channels=channels)[0][:3]
    np.testing.assert_array_equal(images.numpy(), expected)
