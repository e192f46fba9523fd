"""keras_ptame's metrics against pytorch-grad-cam's and Quantus's.

The comparison itself is `benchmarks/agreement/` (`make agreement`); this
test pins what agrees and the known definitional differences on fewer
images, so that a change on either side shows. It runs in `.venv-agreement`
under `KERAS_BACKEND=torch` only.
"""

import importlib.util
import math
import pathlib
import sys

import keras
import numpy as np
import pytest

AGREEMENT = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "agreement"
MISSING = [
    name
    for name in ("pytorch_grad_cam", "quantus")
    if importlib.util.find_spec(name) is None
]

pytestmark = [
    pytest.mark.skipif(
        keras.backend.backend() != "torch",
        reason="pytorch-grad-cam and Quantus call the classifier as a "
        "torch.nn.Module, which a Keras model is only on the PyTorch backend: "
        "the comparison runs with KERAS_BACKEND=torch only",
    ),
    pytest.mark.skipif(
        bool(MISSING),
        reason=f"{' and '.join(MISSING)} not importable: pytorch-grad-cam and "
        "Quantus live in .venv-agreement (`make agreement-env`), never in "
        "keras_ptame's own environment",
    ),
]

# The rows whose two sides must agree (each within its row's tolerance).
AGREE = (
    "removed_morf_rank",
    "removed_lerf_rank",
    "fill_morf",
    "fill_lerf",
    "accuracy_morf_rank",
    "accuracy_lerf_rank",
    "confidence_morf",
    "confidence_lerf",
    "pixel_flipping_curve",
    "pointing_game_gradient",
    "mass_inside_gradient",
    "quantus_road_recomputed",
    "spearman_random",
    "spearman_5-level",
    "ssim_quantus",
    "ssim_keras_ptame",
)


@pytest.fixture(scope="module")
def rows():
    sys.path.insert(0, str(AGREEMENT))
    try:
        import agreement_common

        inputs = agreement_common.make_inputs(count=4)
        rows = {row.key: row for row in agreement_common.collect_rows(inputs)}
    finally:
        sys.path.remove(str(AGREEMENT))
    return inputs, rows


def test_every_row_expected_to_agree_is_pinned(rows):
    _, rows = rows
    pinned = {key for key, row in rows.items() if row.tolerance is not None}
    assert pinned == set(AGREE)


@pytest.mark.parametrize("key", AGREE)
def test_agrees(rows, key):
    row = rows[1][key]
    assert row.agrees, f"{row.metric}: difference {row.difference} > {row.tolerance}"


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_threshold_selection_removes_other_counts_than_gradcam(rows, order):
    inputs, rows = rows
    row = rows[f"removed_{order}_threshold"]
    n = inputs.masks[0].size
    shares = np.array([10, 30, 50, 70]) / 100
    if order == "morf":
        ours = [n - int(n * (1 - p)) + 1 for p in shares]
    else:
        ours = [int(n * p) for p in shares]
    theirs = [n - math.ceil((1 - p) * (n - 1)) for p in shares]
    np.testing.assert_array_equal(row.ours, ours)
    np.testing.assert_array_equal(row.theirs, theirs)
    assert row.difference > 0


def test_quantus_pointing_game_counts_any_tied_maximum_as_a_hit(rows):
    row = rows[1]["pointing_game_flat"]
    np.testing.assert_array_equal(row.detail["theirs"], 1.0)
    np.testing.assert_allclose(row.detail["ours"], row.detail["share"], rtol=1e-6)


def test_quantus_mass_accuracy_of_a_massless_map_is_nan(rows):
    row = rows[1]["mass_inside_flat"]
    theirs, ours, share = (row.detail[k] for k in ("theirs", "ours", "share"))
    assert np.isnan(theirs[0::2]).all()  # the all-0 maps
    np.testing.assert_allclose(theirs[1::2], share[1::2], rtol=1e-6)  # the all-2
    np.testing.assert_allclose(ours, share, rtol=1e-6)


def test_quantus_pixel_flipping_area_is_unit_spaced_without_the_first_point(rows):
    row = rows[1]["pixel_flipping_auc"]
    np.testing.assert_allclose(
        row.detail["recomputed"], row.detail["theirs"], atol=1e-5
    )
    assert abs(row.ours - row.theirs) > 1.0  # on [0, 1] against on [0, 11]


def test_quantus_black_baseline_is_the_image_minimum(rows):
    assert rows[1]["pixel_flipping_black"].difference > 1e-3


def test_quantus_road_fails_on_rgb_images(rows):
    assert rows[1]["quantus_road_rgb"].theirs.startswith("IndexError")


def test_quantus_ssim_takes_its_data_range_from_the_pair(rows):
    full, half = rows[1]["ssim_quantus"], rows[1]["ssim_quantus_half"]
    # Halving both maps halves Quantus's data range too: the same SSIM.
    np.testing.assert_allclose(half.detail["theirs"], full.detail["theirs"], atol=1e-6)
    assert half.difference > 1e-3
