"""Maps while training: explanations of a fixed set of images as `fit` runs.

`MapsLogger` is a Keras callback. At the end of every epoch (or every N
training steps) it explains its images with the explainer being trained
(`explain_outputs`, one `predict` of them) and writes

- `maps_epoch_003.png` (or `maps_step_000120.png`): the grid of overlays
  (`visualize.grid`), titled with each image's explained class and score;
  flat maps marked "FLAT" in a red frame, maps of a misranked class
  "MISRANKED";
- `maps_epoch_003.csv` beside it: per image its class, score, evidence,
  flat and misranked flags, as `explain_outputs` gave them;
- a TensorBoard image summary `maps` at that epoch (or step), in
  `events.out.tfevents.*` files of the same folder (`tensorboard --logdir
  DIR`), when TensorBoard is installed, under every Keras backend
  (TensorFlow writes the events, with the GPU hidden from it under JAX and
  PyTorch, see `utils/tf_runtime.py`).

Only the decoder trains: explaining between steps reads the weights, never
changes them. Training waits for the explain call only: the grid is drawn and
the files written on a thread beside it, and `fit` waits for the last write
at its end.
"""

import importlib.util
import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor

import keras

from keras_ptame import visualize
from keras_ptame.utils.files import check_no_links, check_writable, write_text
from keras_ptame.utils.tables import csv_table
from keras_ptame.utils.tf_runtime import import_tensorflow
from keras_ptame.utils.validation import check_images, check_positive_int

# The images `ptame train --log-maps` and the demo's `log_maps` explain: the
# first of their data.
LOGGED_COUNT = 8
# The images of one grid: one picture, readable at a glance.
MAX_LOGGED_IMAGES = 64
# The columns of `maps_*.csv`, one row per image.
MAPS_COLUMNS = (
    "image",
    "class",
    "class_name",
    "score",
    "evidence",
    "flat",
    "misranked",
)
# The training logs in each picture's heading.
LOGGED = ("kept", "empty", "misranked")
# The files `MapsLogger` writes (TensorBoard's event files are named uniquely
# and never replaced).
_MAPS_FILE = re.compile(r"maps_(epoch|step)_\d+\.(png|csv)")


class MapsLogger(keras.callbacks.Callback):
    """Writes the explainer's maps of fixed images while it trains.

    At the end of every epoch, or every `every_n_steps` training steps, it
    runs `self.model.explain_outputs(images)` and writes the grid of maps as
    `directory/maps_epoch_003.png` (epochs counted from 1) or
    `directory/maps_step_000120.png` (steps counted from 1 over the whole
    `fit`), a CSV of the same name with each image's class, score, evidence,
    flat and misranked flags (`MAPS_COLUMNS`), and a TensorBoard image
    summary `maps` at that epoch or step.

    Every argument is checked when the callback is made, before training. A
    folder that already holds maps files is refused unless `overwrite`; with
    it, only the files of those names are replaced. Nothing is written
    through a symbolic link inside `directory`.

    Args:
        images: array `(N, H, W, 3)`, uint8 or float raw pixels in [0, 255],
            `N` at most 64 (e.g. the first images of the validation data).
        directory: str or path-like. The folder written to (created).
        every_n_steps: optional positive int. Log every this many training
            steps instead of at the end of every epoch. Defaults to `None`.
        class_names: optional list of str, index = class, for the titles and
            the CSV. Defaults to `None` (class ids).
        tensorboard: optional bool. Whether to write TensorBoard image
            summaries: `True` requires TensorBoard (an `ImportError` now if it
            is missing), `False` writes none. Defaults to `None`: when
            TensorBoard is installed, else a warning says that only PNG files
            are written.
        overwrite: bool. Whether to replace maps files already in
            `directory`. Defaults to `False`.
        batch_size: positive int. Images per explain step. Defaults to `32`.
        columns: positive int. Panels per row of the grid. Defaults to `8`.

    Examples:
    ```python
    import keras_ptame as kp

    logger = kp.callbacks.MapsLogger(val_images[:8], "maps_log")
    explainer.fit(train_images, epochs=3, callbacks=[logger])
    # maps_log/maps_epoch_001.png ... maps_epoch_003.png and .csv;
    # `tensorboard --logdir maps_log` shows them under IMAGES.
    ```
    """

    def __init__(
        self,
        images,
        directory,
        every_n_steps=None,
        class_names=None,
        tensorboard=None,
        overwrite=False,
        batch_size=32,
        columns=8,
    ):
        super().__init__()
        images = check_images(images, "images")
        if len(images) > MAX_LOGGED_IMAGES:
            raise ValueError(
                f"`images` must hold at most {MAX_LOGGED_IMAGES} images (one "
                f"grid). Received: {len(images)} images"
            )
        self.images = images
        if every_n_steps is not None:
            every_n_steps = check_positive_int("every_n_steps", every_n_steps)
        self.every_n_steps = every_n_steps
        self.class_names = _check_class_names(class_names)
        if tensorboard is not None and not isinstance(tensorboard, bool):
            raise ValueError(
                f"`tensorboard` must be None, True or False. Received: {tensorboard!r}"
            )
        if not isinstance(overwrite, bool):
            raise ValueError(
                f"`overwrite` must be True or False. Received: {overwrite!r}"
            )
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.columns = check_positive_int("columns", columns)
        self.directory = os.fspath(directory)
        check_maps_directory(self.directory, overwrite)
        self.overwrite = overwrite
        self.tensorboard = _tensorboard_wanted(tensorboard)
        self.written = []
        self._writer = None
        self._steps = 0
        self._epoch_start = 0
        self._thread = None
        self._pending = None

    def on_train_begin(self, logs=None):
        os.makedirs(self.directory, exist_ok=True)
        self._steps = 0
        if self.tensorboard and self._writer is None:
            tf = import_tensorflow()
            self._writer = tf.summary.create_file_writer(self.directory)

    def on_train_batch_end(self, batch, logs=None):
        if self.every_n_steps is None:
            return
        # `batch` counts within the epoch; Keras may run several steps per
        # call (`steps_per_execution`): log when a multiple of N was passed.
        steps = self._epoch_start + batch + 1
        if steps // self.every_n_steps > self._steps // self.every_n_steps:
            self.log_maps("step", steps, logs)
        self._steps = steps

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self._steps

    def on_epoch_end(self, epoch, logs=None):
        if self.every_n_steps is None:
            self.log_maps("epoch", epoch + 1, logs)

    def on_train_end(self, logs=None):
        self.wait()
        if self._thread is not None:
            self._thread.shutdown()
            self._thread = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def wait(self):
        """Waits until the last maps are written; raises the write's error.

        The explain call runs when the callback fires; drawing the grid and
        writing the files run on a thread beside training. `fit` waits for
        them at its end (`on_train_end`).
        """
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def log_maps(self, unit, number, logs=None):
        """Explains the images now and writes `maps_<unit>_<number>` files.

        The files are written on a thread beside training (one write at a
        time): `wait` waits for them.

        Args:
            unit: `"epoch"` or `"step"`.
            number: int. The epoch (from 1) or the step (from 1).
            logs: optional dict of Keras' logs; its `kept` and `empty`
                (`PTAME.fit`'s share of the class kept by the maps and of
                empty maps) go in the picture's heading. Defaults to `None`.

        Returns:
            The `explain_outputs` dict of the images.
        """
        model = self.model  # Under JAX, Keras attaches the weights here.
        # Under PyTorch, `predict` leaves the module in eval mode; a step in
        # the middle of an epoch must train on as it did.
        training = keras.config.backend() == "torch" and model.training
        outputs = model.explain_outputs(self.images, batch_size=self.batch_size)
        if training:
            model.train()
        width = 6 if unit == "step" else 3
        stem = os.path.join(self.directory, f"maps_{unit}_{number:0{width}d}")
        heading = ", ".join(
            [f"{unit} {number}"]
            + [f"{key} {float(logs[key]):.3f}" for key in LOGGED if key in (logs or {})]
        )
        for path in (stem + ".png", stem + ".csv"):
            check_no_links(path, self.directory, "directory")
        self.wait()
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="MapsLogger")
        self._pending = self._thread.submit(self._write, outputs, stem, heading, number)
        return outputs

    def _write(self, outputs, stem, heading, number):
        picture = self._picture(outputs, heading)
        visualize.save_png(picture, stem + ".png")
        write_text(stem + ".csv", self._table(outputs).rstrip("\n"))
        self.written += [stem + ".png", stem + ".csv"]
        if self._writer is not None:
            with self._writer.as_default():
                import_tensorflow().summary.image("maps", picture[None], step=number)
            self._writer.flush()

    def _picture(self, outputs, heading):
        titles = [
            f"{self._name(label)} {score:.2f}" + ("\nMISRANKED" if misranked else "")
            for label, score, misranked in zip(
                outputs["classes"],
                outputs["scores"],
                outputs["misranked"],
                strict=True,
            )
        ]
        figure = visualize.grid(
            self.images,
            outputs["maps"],
            titles=titles,
            flat=outputs["flat"],
            columns=self.columns,
        )
        figure.suptitle(heading, fontsize=8)
        return visualize.figure_to_array(figure)

    def _table(self, outputs):
        rows = zip(
            outputs["classes"],
            outputs["scores"],
            outputs["evidence"],
            outputs["flat"],
            outputs["misranked"],
            strict=True,
        )
        return csv_table(
            MAPS_COLUMNS,
            (
                [index, int(label), self._name(label), float(score), float(proof)]
                + [int(bool(is_flat)), int(bool(misranked))]
                for index, (label, score, proof, is_flat, misranked) in enumerate(rows)
            ),
        )

    def _name(self, label):
        label = int(label)
        if self.class_names is not None and 0 <= label < len(self.class_names):
            return self.class_names[label]
        return str(label)


def check_maps_directory(directory, overwrite=False):
    """Raises now unless `MapsLogger` may write its files into `directory`.

    `directory` must be a folder (or not exist yet) that can be written, and
    hold no maps files (`maps_epoch_*.png`, `maps_step_*.csv`, ...) unless
    `overwrite`.

    Args:
        directory: str or path-like.
        overwrite: bool. Whether existing maps files may be replaced.
            Defaults to `False`.
    """
    directory = os.fspath(directory)
    if os.path.lexists(directory) and not os.path.isdir(directory):
        raise NotADirectoryError(
            f"`directory` must be a folder. Received: a file {directory!r}"
        )
    check_writable(directory, "the maps folder")
    if not os.path.isdir(directory) or overwrite:
        return
    existing = sorted(n for n in os.listdir(directory) if _MAPS_FILE.fullmatch(n))
    if existing:
        raise FileExistsError(
            f"{directory!r} already holds {len(existing)} maps file(s), e.g. "
            f"{existing[0]!r}. Choose another folder or pass overwrite=True "
            "(--overwrite) to replace them."
        )


def _check_class_names(class_names):
    if class_names is None:
        return None
    if isinstance(class_names, str) or not all(
        isinstance(name, str) for name in class_names
    ):
        raise ValueError(
            f"`class_names` must be a list of str. Received: {class_names!r}"
        )
    return list(class_names)


def _tensorboard_wanted(tensorboard):
    """Whether to write TensorBoard summaries; `None` is "when installed"."""
    missing = [
        name
        for name in ("tensorflow", "tensorboard")
        if importlib.util.find_spec(name) is None
    ]
    if tensorboard is False:
        return False
    if missing and tensorboard:
        raise ImportError(
            "MapsLogger(tensorboard=True) writes TensorBoard image summaries "
            f"with TensorFlow, but {' and '.join(missing)} not installed: "
            f"`pip install {' '.join(missing)}`, or pass tensorboard=False."
        )
    if missing:
        warnings.warn(
            f"{' and '.join(missing)} not installed: MapsLogger writes PNG files "
            "(and CSV) only, no TensorBoard summaries. "
            f"`pip install {' '.join(missing)}` to have them too.",
            stacklevel=3,
        )
        return False
    return True
