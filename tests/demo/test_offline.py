"""The notebooks' offline stand-ins: tiny ImageNet-sized presets, a mocked tfds."""

import socket

import numpy as np
import pytest

import keras_ptame as kp
from keras_ptame import data, demo
from keras_ptame.demo import offline

keras_hub = pytest.importorskip("keras_hub")
tfds = pytest.importorskip("tensorflow_datasets")


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)


# Issue 23: one helper gives the three notebooks their offline presets and data.
def test_offline_stand_ins_load_and_feed_a_short_run(tmp_path, no_network):
    stand_ins = demo.offline_stand_ins(str(tmp_path), num_examples=8)
    try:
        classifier, auxiliary, size, resize, batch_size, steps = stand_ins
        assert (size, resize, batch_size, steps) == (32, 36, 4, 2)
        assert classifier != auxiliary
        backbone = kp.Backbone.from_preset(classifier)
        images = np.random.default_rng(0).integers(0, 256, (2, size, size, 3))
        # ImageNet's classes, so keras-hub's names label the maps.
        assert backbone(images.astype("float32")).shape == (2, 1000)
        # tfds is mocked: Imagenette comes without a download.
        batches = data.imagenette(
            "train", batch_size=batch_size, image_size=size, resize=resize, steps=steps
        )
        shapes = [tuple(images.shape) for images, _ in batches]
        assert shapes == [(batch_size, size, size, 3)] * steps
    finally:
        offline._TFDS_MOCKS.pop().__exit__(None, None, None)


# Issue 23: without the mock, tfds is left as it is.
def test_offline_stand_ins_can_leave_tfds_alone(tmp_path):
    before = len(offline._TFDS_MOCKS)
    stand_ins = demo.offline_stand_ins(str(tmp_path), mock_tfds=False)
    assert len(offline._TFDS_MOCKS) == before
    assert stand_ins.classifier == str(tmp_path / "classifier")
