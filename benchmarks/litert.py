"""The LiteRT export's size and latency on this machine's CPU.

The paper's setting with random weights (`common.build`: a ResNet-50
classifier explained through a ResNet-18, 224x224): the classifier exported
alone by Keras (`classifier.export(..., format="litert")`) and the explainer
by `kp.export.export_litert`, both run with the LiteRT interpreter
(`ai-edge-litert`, XNNPACK, one thread per core), on requests of 1 and 8
images prepared beforehand. Each figure is the median of `--repeats` rounds
in which the two take turns; the first call of each is not timed. Also the
size of each file, and of the explainer's SavedModel it was converted from.

    KERAS_BACKEND=tensorflow python benchmarks/litert.py
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

from common import build


def folder_size(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(
        os.path.getsize(os.path.join(folder, name))
        for folder, _, names in os.walk(path)
        for name in names
    )


def _runner(path, threads):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=threads)
    # The classifier's one signature, the explainer's float32 one.
    names = list(interpreter.get_signature_list())
    runner = interpreter.get_signature_runner(
        names[0] if len(names) == 1 else "serving_default"
    )
    (argument,) = runner.get_input_details()
    return runner, argument


def measure(paths, images, batch_size, repeats, threads):
    """Median milliseconds an image of each model, on requests of `batch_size`."""
    requests = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
    calls = {}
    for name, path in paths.items():
        runner, argument = _runner(path, threads)

        def send(runner=runner, argument=argument):
            for request in requests:
                runner(**{argument: request})

        send()
        calls[name] = send
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, send in calls.items():
            start = time.perf_counter()
            send()
            times[name].append(time.perf_counter() - start)
    return {
        name: 1000 * statistics.median(t) / len(images) for name, t in times.items()
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    import keras_ptame as kp

    if keras.config.backend() != "tensorflow":
        sys.exit(
            "Run with KERAS_BACKEND=tensorflow (Keras' LiteRT export of the classifier)."
        )
    classifier, explainer = build(args.image_size, "float32")
    size = args.image_size
    images = np.random.default_rng(0).integers(0, 256, (args.images, size, size, 3))
    images = images.astype("float32")
    with tempfile.TemporaryDirectory() as folder:
        paths = {
            "classifier": os.path.join(folder, "classifier.tflite"),
            "explainer": os.path.join(folder, "explainer.tflite"),
        }
        saved = os.path.join(folder, "saved_model")
        classifier.export(paths["classifier"], format="litert", verbose=False)
        kp.export.export_saved_model(explainer, saved)
        kp.export.export_litert(explainer, paths["explainer"])
        sizes = {name: folder_size(path) / 2**20 for name, path in paths.items()}
        sizes["explainer SavedModel"] = folder_size(saved) / 2**20
        rows = {
            batch: measure(paths, images, batch, args.repeats, args.threads)
            for batch in (1, 8)
        }
    print("| file | MiB |\n|---|---|")
    for name, mib in sizes.items():
        print(f"| {name} | {mib:.1f} |")
    print(
        "\n| request | classifier ms/img | explainer ms/img | classifier / explainer |"
        "\n|---|---|---|---|"
    )
    for batch, ms in rows.items():
        ratio = ms["classifier"] / ms["explainer"]
        print(
            f"| {batch} | {ms['classifier']:.1f} | {ms['explainer']:.1f} | {ratio:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
