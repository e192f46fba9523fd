import numpy as np
import pytest

from keras_ptame.metrics.pixel_auc import pixel_auc


def _pairwise_auc(saliency, mask):
    inside, outside = saliency[mask], saliency[~mask]
    greater = (inside[:, None] > outside[None, :]).mean()
    ties = (inside[:, None] == outside[None, :]).mean()
    return greater + 0.5 * ties


def test_a_map_of_the_object_scores_one_its_inverse_zero_a_flat_map_half():
    masks = np.zeros((3, 6, 6), bool)
    masks[:, 1:3, 2:5] = True
    maps = np.stack([masks[0] * 1.0, 1.0 - masks[1], np.zeros((6, 6))])
    np.testing.assert_allclose(pixel_auc(maps, masks), [1.0, 0.0, 0.5])


def test_matches_the_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    maps = rng.integers(0, 4, (5, 7, 7)).astype("float32")  # many ties
    masks = rng.random((5, 7, 7)) < 0.3
    expected = [_pairwise_auc(m, k) for m, k in zip(maps, masks, strict=True)]
    np.testing.assert_allclose(pixel_auc(maps, masks), expected, rtol=1e-6)


def test_boxes_and_empty_masks():
    maps = np.zeros((2, 8, 8))
    maps[0, 2:4, 2:4] = 1.0
    scores = pixel_auc(maps, boxes=np.array([[2, 2, 4, 4], [0, 0, 0, 0]]))
    np.testing.assert_allclose(scores, [1.0, 0.5])


def test_rejects_maps_that_are_not_finite():
    with pytest.raises(ValueError, match="finite"):
        pixel_auc(np.full((1, 4, 4), np.nan), np.ones((1, 4, 4), bool))
