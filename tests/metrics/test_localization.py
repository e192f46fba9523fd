import numpy as np
import pytest

from keras_ptame.metrics import boxes_to_masks, mass_inside, pointing_game

MASKS = np.zeros((2, 6, 6), bool)
MASKS[:, 1:3, 2:5] = True  # 6 of 36 pixels


def test_perfect_inverted_and_constant_maps():
    perfect = MASKS.astype("float32")
    np.testing.assert_array_equal(pointing_game(perfect, MASKS), [1, 1])
    np.testing.assert_array_equal(mass_inside(perfect, MASKS), [1, 1])
    inverted = 1.0 - perfect
    np.testing.assert_array_equal(pointing_game(inverted, MASKS), [0, 0])
    np.testing.assert_array_equal(mass_inside(inverted, MASKS), [0, 0])
    # A constant map scores chance (the object's share), never a free hit.
    constant = np.full((2, 6, 6), 0.3)
    np.testing.assert_allclose(pointing_game(constant, MASKS), [1 / 6, 1 / 6])
    np.testing.assert_allclose(mass_inside(constant, MASKS), [1 / 6, 1 / 6])
    np.testing.assert_allclose(mass_inside(np.zeros((2, 6, 6)), MASKS), [1 / 6, 1 / 6])


def test_a_tied_plateau_scores_its_share_on_the_object():
    maps = np.zeros((3, 6, 6))
    maps[0, 1:3, 2:5] = 1.0  # the whole plateau on the object: a hit
    maps[1, 1:3, 0:4] = 1.0  # 4 of its 8 pixels on the object
    maps[2, 4:6, :] = 1.0  # all of it off the object: a miss
    masks = np.broadcast_to(MASKS[0], (3, 6, 6))
    np.testing.assert_allclose(pointing_game(maps, masks), [1.0, 0.5, 0.0])


def test_an_image_without_object_scores_zero():
    empty = np.zeros((2, 6, 6), bool)
    np.testing.assert_array_equal(pointing_game(np.ones((2, 6, 6)), empty), [0, 0])
    np.testing.assert_array_equal(mass_inside(np.ones((2, 6, 6)), empty), [0, 0])


def test_single_peak_and_tolerance():
    maps = np.zeros((1, 6, 6))
    maps[0, 4, 3] = 1.0  # two rows below the object
    assert pointing_game(maps, MASKS[:1])[0] == 0.0
    assert pointing_game(maps, MASKS[:1], tolerance=2)[0] == 1.0


def test_boxes_match_masks_in_every_format():
    boxes = {
        "xyxy": [2, 1, 5, 3],
        "yxyx": [1, 2, 3, 5],
        "rel_xyxy": [2 / 6, 1 / 6, 5 / 6, 3 / 6],
        "rel_yxyx": [1 / 6, 2 / 6, 3 / 6, 5 / 6],
    }
    for box_format, box in boxes.items():
        masks = boxes_to_masks(np.array([box, box], float), (2, 6, 6), box_format)
        np.testing.assert_array_equal(masks, MASKS, err_msg=box_format)
    # Several boxes per image, NaN rows as padding.
    several = [np.array([[0, 0, 1, 1], [np.nan] * 4]), np.array([[5, 5, 6, 6]])]
    masks = boxes_to_masks(several, (2, 6, 6))
    assert masks[0, 0, 0] and masks[1, 5, 5] and masks.sum() == 2
    maps = MASKS.astype("float32")
    np.testing.assert_array_equal(
        pointing_game(maps, boxes=np.array([boxes["xyxy"]] * 2)), [1, 1]
    )


def test_errors():
    with pytest.raises(ValueError, match="exactly one"):
        pointing_game(np.zeros((2, 6, 6)))
    with pytest.raises(ValueError, match="masks"):
        mass_inside(np.zeros((2, 6, 6)), np.zeros((2, 5, 5)))
    with pytest.raises(ValueError, match="box_format"):
        boxes_to_masks(np.zeros((2, 4)), (2, 6, 6), "cxcywh")
    with pytest.raises(ValueError, match="non-negative"):
        mass_inside(-np.ones((2, 6, 6)), MASKS)
    with pytest.raises(ValueError, match="finite"):
        pointing_game(np.full((2, 6, 6), np.nan), MASKS)
    with pytest.raises(ValueError, match="finite"):
        mass_inside(np.full((2, 6, 6), np.inf), MASKS)
    with pytest.raises(ValueError, match="shape"):
        pointing_game(np.zeros((6, 6)), MASKS[0])
    with pytest.raises(ValueError, match="tolerance"):
        pointing_game(np.zeros((2, 6, 6)), MASKS, tolerance=-1)
