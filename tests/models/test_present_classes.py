import keras
import numpy as np
import pytest
from keras import ops

import keras_ptame as kp
from tests.helpers import (
    random_images,
    tiny_classifier,
    tiny_feature_model,
    to_numpy,
    weights_of,
)
from tests.helpers.test_case import run_model_saving_test


def _multilabel_explainer(**backbone_options):
    """The tiny explainer over the tiny classifier read as multi-label logits."""
    return kp.PTAME(
        kp.Backbone(
            tiny_classifier(), output_type="multilabel_logits", **backbone_options
        ),
        kp.AuxiliaryExtractor(tiny_feature_model()),
    )


def _sigmoid(x):
    return 1 / (1 + np.exp(-np.asarray(x, np.float64)))


# Issue 24: a multi-label explainer trains with fit on every backend: the
# decoder's weights move, the classifier's and the auxiliary network's do not,
# and every term and the multi-label kept/empty shares are logged.
def test_multilabel_fit_moves_only_the_decoder():
    explainer = _multilabel_explainer(label_threshold=0.4, max_labels=2)
    explainer.compile(optimizer=keras.optimizers.AdamW(1e-2, amsgrad=True))
    images = random_images(16)
    explainer.build((None, 16, 16, 3))
    backbone = weights_of(explainer.backbone)
    extractor = weights_of(explainer.extractor)
    decoder = weights_of(explainer.decoder)
    history = explainer.fit(images, epochs=2, batch_size=8, verbose=0).history
    for before, after in zip(backbone, weights_of(explainer.backbone), strict=True):
        np.testing.assert_array_equal(before, after)
    for before, after in zip(extractor, weights_of(explainer.extractor), strict=True):
        np.testing.assert_array_equal(before, after)
    moved = [
        not np.array_equal(b, a)
        for b, a in zip(decoder, weights_of(explainer.decoder), strict=True)
    ]
    assert all(moved)
    assert {"loss", "ce", "area", "smoothness", "kept", "empty"} <= set(history)
    assert all(np.isfinite(history["loss"]))
    assert all(0.0 <= v <= 1.0 for v in history["kept"] + history["empty"])


# Issue 24: the training pass masks each image once per present class, with
# that class's own map, and the classifier rescored on exactly those images.
def test_training_pass_masks_each_image_by_each_present_class_map():
    explainer = _multilabel_explainer(label_threshold=0.5, max_labels=3)
    images = random_images(3)
    out = explainer.perturb(ops.convert_to_tensor(images), training=False)
    logits = to_numpy(explainer.backbone(images))
    order = np.argsort(-logits, axis=-1, kind="stable")[:, :3]
    np.testing.assert_array_equal(to_numpy(out["classes"]), order.reshape(-1))
    present = _sigmoid(np.take_along_axis(logits, order, -1)) > 0.5
    present[:, 0] = True
    np.testing.assert_array_equal(to_numpy(out["weights"]), present.reshape(-1))
    assert tuple(out["maps"].shape) == (3, 8, 8, 9)
    assert tuple(out["masked_logits"].shape) == (9, 4)
    # Pair b * 3 + l: image b's map of its l-th class, masks image b.
    features = explainer.extractor(images)
    full = to_numpy(ops.sigmoid(explainer.decoder(features, training=False)))
    own = np.stack([full[b][:, :, order[b]] for b in range(3)])  # (3, 8, 8, 3)
    own = own.transpose(0, 3, 1, 2).reshape(9, 8, 8, 1)
    np.testing.assert_allclose(to_numpy(out["own_maps"]), own, rtol=1e-4, atol=1e-5)
    upsampled = to_numpy(ops.image.resize(own, (16, 16), interpolation="bilinear"))
    masked = np.repeat(images.astype("float32"), 3, axis=0) * upsampled
    expected = to_numpy(explainer.backbone(masked))
    np.testing.assert_allclose(
        to_numpy(out["masked_logits"]), expected, rtol=1e-4, atol=1e-4
    )


# Issue 24: `kept` counts a present class kept when its masked sigmoid stays
# above the threshold, and `empty` the pairs' maps without evidence; padding
# counts in neither.
def test_kept_and_empty_are_shares_of_the_present_pairs():
    explainer = _multilabel_explainer(label_threshold=0.5)
    flat = np.full((8, 8, 1), 0.5, "float32")
    peaked = flat.copy()
    peaked[2, 3] = 0.9
    y_pred = {
        "classes": np.array([0, 1, 2, 3], "int32"),
        "weights": np.array([1, 1, 1, 0], "float32"),
        "masked_logits": np.array(
            [[2.0, 0, 0, 0], [0, -1.0, 0, 0], [0, 0, 0.5, 0], [0, 0, 0, 9.0]],
            "float32",
        ),
        "own_maps": np.stack([peaked, flat, peaked, flat]),
    }
    kept, empty = explainer.kept_and_empty(y_pred)
    assert float(to_numpy(kept)) == pytest.approx(2 / 3)
    assert float(to_numpy(empty)) == pytest.approx(1 / 3)


# Issue 24: `explain`'s scores are the classifier's sigmoid of each explained
# class, for the classes asked for.
def test_explain_scores_are_sigmoids_of_the_explained_classes():
    explainer = _multilabel_explainer()
    images = random_images(4)
    classes = np.array([0, 3, 1, 2])
    out = explainer.explain_outputs(images, classes=classes)
    logits = to_numpy(explainer.backbone(images))
    np.testing.assert_allclose(
        out["scores"], _sigmoid(logits[np.arange(4), classes]), rtol=1e-5
    )
    assert np.asarray(out["maps"]).shape == (4, 16, 16)


# Issue 24: a trained multi-label explainer saves and loads, with its
# classifier's output type and options, and explains the same.
def test_multilabel_explainer_saves_and_loads(tmp_path):
    explainer = _multilabel_explainer(label_threshold=0.3, max_labels=2)
    explainer.compile(optimizer=keras.optimizers.AdamW(1e-2, amsgrad=True))
    images = random_images(8)
    explainer.fit(images, epochs=1, batch_size=8, verbose=0)
    loaded = run_model_saving_test(
        explainer,
        images[:3],
        tmp_path,
        call=lambda model, x: model.explain_outputs(x, classes=np.array([1, 2, 3])),
    )
    assert loaded.backbone.output_type == "multilabel_logits"
    assert (loaded.backbone.label_threshold, loaded.backbone.max_labels) == (0.3, 2)
