import numpy as np
import pytest

import keras_ptame as kp
from keras_ptame.datasets import make_multilabel_shapes


# Issue 24: the arrays have the documented shapes and dtypes, two or three
# objects per image, each of its own class.
def test_multilabel_arrays_have_the_documented_shapes():
    images, labels, masks = make_multilabel_shapes(
        20, image_size=32, num_classes=5, seed=1, size_range=(0.25, 0.3)
    )
    assert images.shape == (20, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (20, 5) and labels.dtype == np.float32
    assert masks.shape == (20, 5, 32, 32) and masks.dtype == bool
    assert set(np.unique(labels)) <= {0.0, 1.0}
    assert set(labels.sum(axis=1)) <= {2.0, 3.0}


# Issue 24: each present class has its own non-empty object mask, an absent
# class none; objects do not touch, and each is drawn in the image (its pixels
# differ from the empty background's).
def test_multilabel_masks_are_consistent_with_the_labels():
    images, labels, masks = make_multilabel_shapes(30, image_size=48, seed=2)
    np.testing.assert_array_equal(masks.any(axis=(2, 3)), labels > 0)
    assert masks.sum(axis=1).max() <= 1  # no pixel on two objects
    assert (masks.sum(axis=(2, 3))[labels > 0] >= 9).all()
    # Objects are bright on a dark scene: brighter than the rest on average.
    for image, mask in zip(images, masks.any(axis=1), strict=True):
        brightness = image.max(axis=-1).astype(float)
        assert brightness[mask].mean() > brightness[~mask].mean() + 40


# Issue 24: the same seed gives the same data, another seed other data; the
# number of objects follows `objects`.
def test_multilabel_data_is_seeded_and_counts_objects():
    small = {"image_size": 32, "size_range": (0.25, 0.3)}
    first = make_multilabel_shapes(5, seed=3, **small)
    second = make_multilabel_shapes(5, seed=3, **small)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    other = make_multilabel_shapes(5, seed=4, **small)
    assert not np.array_equal(first[2], other[2])
    _, labels, _ = make_multilabel_shapes(6, objects=(1, 1), seed=0, **small)
    np.testing.assert_array_equal(labels.sum(axis=1), 1)
    assert kp.datasets.make_multilabel_shapes is make_multilabel_shapes


# Issue 24: bad arguments are refused with their names.
def test_multilabel_data_rejects_bad_arguments():
    with pytest.raises(ValueError, match="objects"):
        make_multilabel_shapes(2, num_classes=3, objects=(2, 4))
    with pytest.raises(ValueError, match="objects"):
        make_multilabel_shapes(2, objects=(0, 2))
    with pytest.raises(ValueError, match="num_classes"):
        make_multilabel_shapes(2, num_classes=9)
