"""The tfds and image-folder pipelines, offline (tfds.testing.mock_data)."""

import keras
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

from keras_ptame import data  # noqa: E402
from keras_ptame.utils import tf_runtime  # noqa: E402
from tests.helpers import tiny_explainer, weights_of  # noqa: E402

SIZE = 16
RESIZE = 20


def _write_images(directory, shapes, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = []
    for index, shape in enumerate(shapes):
        image = rng.integers(0, 256, (*shape, 3)).astype("uint8")
        folder = directory / ("a" if index % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index:02d}.png")
        images.append((folder / f"{index:02d}.png", image))
    # The pipeline reads files in sorted path order.
    return [image for _, image in sorted(images, key=lambda item: str(item[0]))]


def test_tfds_training_pipeline_yields_raw_pixel_batches():
    with tfds.testing.mock_data(num_examples=10):
        dataset = data.imagenette(
            "train", batch_size=4, image_size=SIZE, resize=RESIZE, seed=0
        )
        images, labels = dataset.element_spec
        assert tuple(images.shape) == (4, SIZE, SIZE, 3)
        assert images.dtype == tf.uint8 and tuple(labels.shape) == (4,)
        # Training drops the last partial batch: 10 images, 2 batches.
        assert len(list(dataset)) == 2


def test_tfds_evaluation_pipeline_keeps_every_image_in_order():
    with tfds.testing.mock_data(num_examples=10):
        first = [
            y.numpy()
            for _, y in data.imagenet(
                "validation", batch_size=4, image_size=SIZE, resize=RESIZE
            )
        ]
        second = [
            y.numpy()
            for _, y in data.imagenet(
                "validation", batch_size=4, image_size=SIZE, resize=RESIZE
            )
        ]
    assert [len(y) for y in first] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(second))


def test_evaluation_transform_resizes_shorter_side_and_centre_crops(tmp_path):
    # Shorter side already `resize`: the resize is the identity, and the
    # centre crop can be checked pixel for pixel.
    originals = _write_images(tmp_path, [(30, RESIZE), (RESIZE, 26)])
    batch = next(
        iter(data.image_folder(tmp_path, batch_size=2, image_size=SIZE, resize=RESIZE))
    )
    assert batch.dtype == tf.uint8
    for got, image in zip(batch.numpy(), originals, strict=True):
        top = (image.shape[0] - SIZE) // 2
        left = (image.shape[1] - SIZE) // 2
        np.testing.assert_array_equal(got, image[top : top + SIZE, left : left + SIZE])


def test_folder_pixels_are_those_the_command_line_reads(tmp_path):
    # One decoder: a 16-bit grayscale PNG and an RGBA one come out of the
    # pipeline as `read_image` (and so `ptame explain`) reads them.
    from PIL import Image

    from keras_ptame.utils.images import read_image

    rng = np.random.default_rng(0)
    deep = rng.integers(0, 65536, (SIZE, SIZE)).astype("uint16")
    Image.fromarray(deep).save(tmp_path / "deep.png")
    rgba = rng.integers(0, 256, (SIZE, SIZE, 4)).astype("uint8")
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    (images,) = data.image_folder(tmp_path, batch_size=2, image_size=SIZE, resize=SIZE)
    expected = [read_image(tmp_path / name)[0] for name in ("deep.png", "rgba.png")]
    np.testing.assert_array_equal(images.numpy(), np.stack(expected))
    # Deep pixels are scaled to 8 bits, not clipped to white.
    assert 64 < images.numpy()[0].mean() < 192


def test_training_transform_is_a_random_crop_maybe_flipped(tmp_path):
    (image,) = _write_images(tmp_path, [(RESIZE, RESIZE)])
    dataset = data.image_folder(
        tmp_path, batch_size=1, training=True, image_size=SIZE, resize=RESIZE, seed=1
    )
    crops = set()
    for _ in range(12):
        got = next(iter(dataset)).numpy()[0]
        found = [
            (top, left, flip)
            for top in range(RESIZE - SIZE + 1)
            for left in range(RESIZE - SIZE + 1)
            for flip in (False, True)
            if np.array_equal(
                got,
                (image[:, ::-1] if flip else image)[
                    top : top + SIZE, left : left + SIZE
                ],
            )
        ]
        assert found, "not a crop of the image"
        crops.add(found[0])
    assert len(crops) > 1, "the crop or flip never changed"


def test_augmentation_layers_apply_to_training_batches(tmp_path):
    _write_images(tmp_path, [(RESIZE, RESIZE)] * 4)
    dataset = data.image_folder(
        tmp_path,
        batch_size=4,
        training=True,
        image_size=SIZE,
        resize=RESIZE,
        augmentation=[keras.layers.RandomGrayscale(factor=1.0)],
    )
    batch = next(iter(dataset)).numpy().astype(int)
    assert np.abs(batch[..., 0] - batch[..., 1]).max() <= 1


def test_pipeline_feeds_fit_directly():
    explainer = tiny_explainer()
    explainer.compile(optimizer=keras.optimizers.AdamW(1e-2, amsgrad=True))
    with tfds.testing.mock_data(num_examples=8):
        dataset = data.imagenette(
            "train", batch_size=4, image_size=SIZE, resize=RESIZE, seed=0
        )
        explainer.build((None, SIZE, SIZE, 3))
        before = weights_of(explainer.decoder)
        history = explainer.fit(dataset, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    after = weights_of(explainer.decoder)
    assert any(not np.allclose(a, b) for a, b in zip(before, after, strict=True))


def test_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="No image files"):
        data.image_folder(tmp_path)
    with pytest.raises(ValueError, match="(?i)not a folder"):
        data.image_folder(tmp_path / "missing")
    _write_images(tmp_path, [(RESIZE, RESIZE)])
    with pytest.raises(ValueError, match="resize"):
        data.image_folder(tmp_path, image_size=32, resize=20)
    with pytest.raises(ValueError, match="batch_size"):
        data.image_folder(tmp_path, batch_size=0)


def test_failed_download_says_what_failed_and_how_to_fix_it(monkeypatch, tmp_path):
    def offline(self, *args, **kwargs):
        raise ConnectionError("Failed to resolve 'image-net.org'")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
    with pytest.raises(OSError, match="network access") as error:
        data.imagenette("train", data_dir=str(tmp_path))
    assert "imagenette" in str(error.value)
    with pytest.raises(OSError, match="downloads/manual"):
        data.imagenet("train", data_dir=str(tmp_path))


# === Host memory and the GPU ===


def test_crops_are_uint8_before_the_shuffle_buffer(monkeypatch):
    # The buffer holds what comes before `shuffle`: uint8 crops are a quarter
    # of the bytes of float32 ones.
    seen = []
    shuffle = tf.data.Dataset.shuffle

    def spy(dataset, buffer_size, *args, **kwargs):
        seen.append((dataset.element_spec, int(buffer_size)))
        return shuffle(dataset, buffer_size, *args, **kwargs)

    monkeypatch.setattr(tf.data.Dataset, "shuffle", spy)
    with tfds.testing.mock_data(num_examples=8):
        dataset = data.imagenette("train", batch_size=4, image_size=SIZE, resize=RESIZE)
        batch, _ = next(iter(dataset))
    assert len(seen) == 1
    (images, labels), buffer = seen[0]
    assert images.dtype == tf.uint8 and tuple(images.shape) == (SIZE, SIZE, 3)
    assert buffer == data.shuffle_buffer_size(SIZE)
    assert batch.dtype == tf.uint8


# Issue 23: a short run takes its batches and fills no larger a buffer than it draws from.
def test_steps_take_batches_and_bound_the_shuffle_buffer(monkeypatch):
    seen = []
    shuffle = tf.data.Dataset.shuffle

    def spy(dataset, buffer_size, *args, **kwargs):
        seen.append(int(buffer_size))
        return shuffle(dataset, buffer_size, *args, **kwargs)

    monkeypatch.setattr(tf.data.Dataset, "shuffle", spy)
    with tfds.testing.mock_data(num_examples=12):
        dataset = data.imagenette(
            "train", batch_size=4, image_size=SIZE, resize=RESIZE, steps=2
        )
        assert len(list(dataset)) == 2
        # A buffer smaller than the run's images is kept as given.
        data.imagenette(
            "train",
            batch_size=4,
            image_size=SIZE,
            resize=RESIZE,
            steps=2,
            shuffle_buffer=3,
        )
    assert seen == [8, 3]
    with pytest.raises(ValueError, match="steps"):
        data.imagenette("train", steps=0)


# Issue 23: the default Imagenette is the 320-pixel one, enough for the 256 resize.
def test_imagenette_defaults_to_the_320_pixel_config(monkeypatch):
    names = []
    monkeypatch.setattr(data, "tfds_dataset", lambda name, **kwargs: names.append(name))
    data.imagenette("train")
    assert names == ["imagenette/320px-v2"]


def test_default_shuffle_buffer_fits_its_byte_budget():
    # 512 MiB of 224x224 uint8 crops, a few percent of a 12.7 GB Colab machine.
    assert data.shuffle_buffer_size(224) == 3566
    assert 3566 * 224 * 224 * 3 <= data.SHUFFLE_BUFFER_BYTES
    assert data.shuffle_buffer_size(10_000) == 1


@pytest.fixture
def visible_devices(monkeypatch):
    """Records `tf.config.set_visible_devices` calls instead of making them
    (`import_tensorflow` itself is tested in tests/utils/test_tf_runtime.py)."""
    calls = []
    monkeypatch.setattr(tf_runtime, "_GPU_HIDDEN", False)
    monkeypatch.setattr(
        tf.config, "set_visible_devices", lambda *args: calls.append(args)
    )
    return calls


def test_pipelines_hide_the_gpu_under_other_backends(tmp_path, visible_devices):
    _write_images(tmp_path, [(RESIZE, RESIZE)])
    data.image_folder(tmp_path, batch_size=1, image_size=SIZE, resize=RESIZE)
    expected = [] if keras.config.backend() == "tensorflow" else [([], "GPU")]
    assert visible_devices == expected


def test_fit_reads_a_pipeline_through_one_iterator():
    # Each iterator over a pipeline fills its own shuffle buffer: checking the
    # first batch must not open a second one beside `fit`'s. (The removal
    # check's sample does, once per `fit`: off here.)
    opened = []

    def batches():
        opened.append(True)
        for seed in range(2):
            yield (
                np.random.default_rng(seed)
                .integers(0, 256, (4, SIZE, SIZE, 3))
                .astype("uint8")
            )

    spec = tf.TensorSpec((4, SIZE, SIZE, 3), tf.uint8)
    dataset = tf.data.Dataset.from_generator(batches, output_signature=spec)
    explainer = tiny_explainer(size=SIZE)
    explainer.compile(optimizer=keras.optimizers.AdamW(1e-2, amsgrad=True))
    history = explainer.fit(dataset, epochs=1, verbose=0, removal_check=0)
    assert np.isfinite(history.history["loss"][-1])
    assert len(opened) == 1
    explainer.fit(dataset, epochs=2, verbose=0)
    assert len(opened) == 1 + 3
