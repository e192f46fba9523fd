"""What `kp.callbacks.MapsLogger` costs training, against the explain call it makes.

On the demo's networks (random weights: the timing does not depend on them),
64x64 synthetic shapes, it trains the explainer for `--epochs` timed epochs
(after one untimed epoch that compiles the step) without the callback, then a
fresh explainer with it (8 held-out images logged at each epoch's end), and
times, on the trained explainer:
- `explain_outputs` of the 8 images (the call the callback makes),
- the callback's whole write (`log_maps`: the explain call, the grid drawn
  with matplotlib, the PNG and the CSV written).
Training waits for the explain call only (the callback draws and writes on a
thread beside it): the overhead per epoch (with minus without) should be
about the explain call, plus what the thread takes from training on a busy
CPU.

    KERAS_BACKEND=jax python benchmarks/callback_overhead.py
    for b in tensorflow jax torch; do
        KERAS_BACKEND=$b python benchmarks/callback_overhead.py --train-count 512
    done

Prints one JSON object (seconds; medians over the timed epochs / repeats).
"""

import argparse
import json
import os
import platform
import statistics
import tempfile
import time

import keras

import keras_ptame as kp
from keras_ptame.datasets import make_shapes
from keras_ptame.demo import AUXILIARY_LAYERS, build_auxiliary, build_classifier


class EpochTimer(keras.callbacks.Callback):
    """Seconds from each epoch's start to the end of its last callback."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def _explainer(image_size, num_classes):
    keras.utils.set_random_seed(0)
    explainer = kp.PTAME(
        kp.Backbone(build_classifier(image_size, num_classes)),
        kp.AuxiliaryExtractor(
            build_auxiliary(image_size, num_classes), layer_names=AUXILIARY_LAYERS
        ),
        num_classes=num_classes,
    )
    explainer.compile()
    return explainer


def _epochs(args, images, callbacks):
    """Per-epoch seconds of the timed epochs, and the explainer trained."""
    explainer = _explainer(args.image_size, args.num_classes)
    timer = EpochTimer()  # Last: its epoch ends after the others' writes.
    explainer.fit(
        images,
        epochs=args.epochs + 1,
        batch_size=args.batch_size,
        callbacks=[*callbacks, timer],
        removal_check=False,
        verbose=0,
    )
    return timer.seconds[1:], explainer


def _repeat(function, repeats):
    function()  # Warm: compiled once.
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-count", type=int, default=1024)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--num-classes", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--logged", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    shapes = {"image_size": args.image_size, "num_classes": args.num_classes - 1}
    images, _, _ = make_shapes(args.train_count, seed=0, **shapes)
    logged, _, _ = make_shapes(args.logged, seed=10_000, **shapes)
    with tempfile.TemporaryDirectory() as folder:
        without, _ = _epochs(args, images, [])
        logger = kp.callbacks.MapsLogger(
            logged, os.path.join(folder, "maps"), tensorboard=False
        )
        with_logger, explainer = _epochs(args, images, [logger])
        explain = _repeat(lambda: explainer.explain_outputs(logged), args.repeats)
        write = _repeat(
            lambda: (logger.log_maps("epoch", 999), logger.wait()), args.repeats
        )
    epoch_without = statistics.median(without)
    epoch_with = statistics.median(with_logger)
    steps = -(-args.train_count // args.batch_size)
    result = {
        "backend": keras.config.backend(),
        "machine": f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPU threads",
        "settings": vars(args),
        "steps_per_epoch": steps,
        "epoch_without_s": round(epoch_without, 3),
        "epoch_with_s": round(epoch_with, 3),
        "overhead_per_epoch_s": round(epoch_with - epoch_without, 3),
        "explain_outputs_s": round(explain, 3),
        "log_maps_s": round(write, 3),
        "picture_and_files_s": round(write - explain, 3),
        "epochs_without_s": [round(s, 3) for s in without],
        "epochs_with_s": [round(s, 3) for s in with_logger],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
