"""`kp.callbacks.MapsLogger`: the explainer's maps written while it trains."""

import csv
import glob
import importlib.util
import os

import numpy as np
import pytest
from PIL import Image

import keras_ptame as kp
from tests.helpers import random_images, tiny_explainer, weights_of

HAS_TENSORBOARD = all(
    importlib.util.find_spec(name) for name in ("tensorflow", "tensorboard")
)


def _fit(logger, count=8, epochs=2, batch_size=4, **options):
    explainer = tiny_explainer()
    explainer.compile()
    explainer.fit(
        random_images(count, seed=1),
        epochs=epochs,
        batch_size=batch_size,
        callbacks=[logger],
        verbose=0,
        **options,
    )
    return explainer


def _rows(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


# Issue 24: one grid and one table per epoch, the table equal to what
# explain_outputs says of the model when it was written.
def test_a_picture_and_a_table_per_epoch(tmp_path):
    images = random_images(4)
    names = ["disc", "square", "cross", "ring"]
    logger = kp.callbacks.MapsLogger(
        images, tmp_path / "maps", class_names=names, tensorboard=False
    )
    explainer = _fit(logger, removal_check=False)
    written = sorted(os.listdir(tmp_path / "maps"))
    assert written == [
        "maps_epoch_001.csv",
        "maps_epoch_001.png",
        "maps_epoch_002.csv",
        "maps_epoch_002.png",
    ]
    for epoch in (1, 2):
        with Image.open(tmp_path / "maps" / f"maps_epoch_{epoch:03d}.png") as png:
            picture = np.asarray(png.convert("RGB"))
        # Four 1.6-inch panels in a row, at matplotlib's 100 dots per inch.
        assert picture.shape[1] == 4 * 160
        assert picture.shape[0] > 100
        assert picture.std() > 0
    # After the last epoch nothing trains: the last table is the model's now.
    outputs = explainer.explain_outputs(images)
    rows = _rows(tmp_path / "maps" / "maps_epoch_002.csv")
    assert [row["image"] for row in rows] == ["0", "1", "2", "3"]
    np.testing.assert_array_equal([int(r["class"]) for r in rows], outputs["classes"])
    assert [r["class_name"] for r in rows] == [names[c] for c in outputs["classes"]]
    for key in ("score", "evidence"):
        np.testing.assert_allclose(
            [float(r[key]) for r in rows],
            outputs[key + "s" * (key == "score")],
            rtol=1e-5,
            atol=1e-6,
        )
    for key in ("flat", "misranked"):
        np.testing.assert_array_equal([r[key] == "1" for r in rows], outputs[key])


# Issue 24: every_n_steps logs at global steps N, 2N, ... across epochs, and
# not at the end of the epochs.
def test_every_n_steps_logs_on_the_right_steps(tmp_path):
    logger = kp.callbacks.MapsLogger(
        random_images(2), tmp_path, every_n_steps=3, tensorboard=False
    )
    # 5 steps per epoch, 10 in all: steps 3, 6 and 9.
    _fit(logger, count=10, batch_size=2, removal_check=False)
    assert sorted(os.listdir(tmp_path)) == [
        f"maps_step_{step:06d}.{ext}" for step in (3, 6, 9) for ext in ("csv", "png")
    ]


# Issue 24: explaining between steps leaves the frozen networks as they were.
def test_logging_moves_no_frozen_weight(tmp_path):
    explainer = tiny_explainer()
    explainer.compile()
    explainer.build((None, 16, 16, 3))
    frozen = weights_of(explainer.backbone) + weights_of(explainer.extractor)
    decoder = weights_of(explainer.decoder)
    logger = kp.callbacks.MapsLogger(
        random_images(2), tmp_path, every_n_steps=1, tensorboard=False
    )
    explainer.fit(
        random_images(8), epochs=2, batch_size=4, callbacks=[logger], verbose=0
    )
    assert len(logger.written) == 2 * 4
    after = weights_of(explainer.backbone) + weights_of(explainer.extractor)
    for before, now in zip(frozen, after, strict=True):
        np.testing.assert_array_equal(before, now)
    # The decoder did train.
    assert any(
        not np.array_equal(before, now)
        for before, now in zip(decoder, weights_of(explainer.decoder), strict=True)
    )


# Issue 24: bad arguments are refused when the callback is made, by name.
@pytest.mark.parametrize(
    "options, error, match",
    [
        ({"images": np.zeros((2, 16, 16))}, ValueError, "images"),
        ({"images": np.zeros((2, 16, 16, 0))}, ValueError, "at least 1 channel"),
        ({"images": np.array([["a"]])}, ValueError, "must hold numbers"),
        ({"images": np.full((1, 16, 16, 3), 300.0)}, ValueError, "255"),
        ({"images": np.zeros((65, 4, 4, 3))}, ValueError, "at most 64"),
        ({"every_n_steps": 0}, ValueError, "`every_n_steps` must be a positive"),
        ({"every_n_steps": 2.5}, ValueError, "`every_n_steps` must be a positive"),
        ({"every_n_steps": True}, ValueError, "`every_n_steps` must be a positive"),
        ({"class_names": "abc"}, ValueError, "`class_names` must be a list"),
        ({"tensorboard": "yes"}, ValueError, "`tensorboard` must be"),
        ({"overwrite": 1.0}, ValueError, "`overwrite` must be"),
        ({"batch_size": 0}, ValueError, "`batch_size` must be a positive"),
    ],
)
def test_bad_arguments_are_refused(tmp_path, options, error, match):
    arguments = {"images": random_images(2), "directory": tmp_path}
    arguments.update({"tensorboard": False, **options})
    with pytest.raises(error, match=match):
        kp.callbacks.MapsLogger(**arguments)


# Issue 24: a file where the folder should be, earlier maps (unless asked to
# replace them) and links inside the folder are refused; other files stay.
def test_the_folder_rules(tmp_path):
    images = random_images(2)
    (tmp_path / "file").write_text("mine")
    with pytest.raises(NotADirectoryError, match="must be a folder"):
        kp.callbacks.MapsLogger(images, tmp_path / "file", tensorboard=False)
    (tmp_path / "maps_epoch_001.png").write_text("not ours")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        kp.callbacks.MapsLogger(images, tmp_path, tensorboard=False)
    logger = kp.callbacks.MapsLogger(
        images, tmp_path, tensorboard=False, overwrite=True
    )
    _fit(logger, epochs=1, removal_check=False)
    with Image.open(tmp_path / "maps_epoch_001.png") as png:
        assert png.format == "PNG"
    assert (tmp_path / "file").read_text() == "mine"
    linked = tmp_path / "linked"
    linked.mkdir()
    os.symlink(tmp_path / "file", linked / "maps_epoch_001.csv")
    logger = kp.callbacks.MapsLogger(images, linked, tensorboard=False, overwrite=True)
    with pytest.raises(ValueError, match="symbolic link"):
        _fit(logger, epochs=1, removal_check=False)
    assert (tmp_path / "file").read_text() == "mine"


# Issue 24: the same grids as TensorBoard image summaries, under every backend.
@pytest.mark.skipif(not HAS_TENSORBOARD, reason="TensorBoard is not installed")
def test_tensorboard_holds_the_grids(tmp_path):
    from keras_ptame.utils.tf_runtime import import_tensorflow

    tf = import_tensorflow()
    logger = kp.callbacks.MapsLogger(random_images(3), tmp_path, tensorboard=True)
    _fit(logger, removal_check=False)
    (events,) = glob.glob(str(tmp_path / "events.out.tfevents.*"))
    found = {}
    for event in tf.compat.v1.train.summary_iterator(events):
        for value in event.summary.value:
            if value.tag == "maps":
                width, height, *encoded = value.tensor.string_val
                found[event.step] = (int(width), int(height), encoded)
    assert sorted(found) == [1, 2]
    with Image.open(tmp_path / "maps_epoch_002.png") as png:
        size = png.size
    width, height, (encoded,) = found[2]
    assert (width, height) == size
    assert tf.io.decode_png(encoded).shape == (size[1], size[0], 3)


# Issue 24: without TensorBoard, asking for it fails now, and by default a
# warning says that only PNG files are written.
@pytest.mark.skipif(HAS_TENSORBOARD, reason="TensorBoard is installed")
def test_without_tensorboard_pngs_only(tmp_path):
    images = random_images(2)
    with pytest.raises(ImportError, match="pip install"):
        kp.callbacks.MapsLogger(images, tmp_path, tensorboard=True)
    with pytest.warns(UserWarning, match="PNG files"):
        logger = kp.callbacks.MapsLogger(images, tmp_path)
    _fit(logger, epochs=1, removal_check=False)
    assert sorted(os.listdir(tmp_path)) == ["maps_epoch_001.csv", "maps_epoch_001.png"]
