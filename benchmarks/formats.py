"""The one-file exports' size and latency on this machine's CPU: LiteRT and ONNX.

The paper's setting with random weights (`common.build`: a ResNet-50
classifier explained through a ResNet-18, 224x224). For each format the
classifier exported alone by Keras (`classifier.export(..., format=...)`)
and the explainer by `kp.export.export_litert` / `export_onnx`, both run by
the format's runtime (the LiteRT interpreter of `ai-edge-litert` with
XNNPACK, ONNX Runtime's CPU provider; one thread per core), on requests of 1
and 8 images prepared beforehand. Each figure is the median of `--repeats`
rounds in which the two take turns; the first two calls of each are not
timed.
Also the size of each file, and of the explainer's SavedModel they are
converted from.

    KERAS_BACKEND=tensorflow python benchmarks/formats.py
"""

import argparse
import os
import sys
import tempfile

from common import build
from serving import median_seconds


def folder_size(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(
        os.path.getsize(os.path.join(folder, name))
        for folder, _, names in os.walk(path)
        for name in names
    )


def _runner(path, threads):
    """`(send, input name)` for the model at `path`, by its runtime."""
    if path.endswith(".onnx"):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(
            path, options, providers=["CPUExecutionProvider"]
        )
        argument = session.get_inputs()[0].name
        return lambda **request: session.run(None, request), argument
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

        calls[name] = send
    seconds = median_seconds(calls, repeats)
    return {name: 1000 * value / len(images) for name, value in seconds.items()}


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
        saved = os.path.join(folder, "saved_model")
        kp.export.export_saved_model(explainer, saved)
        sizes = {"explainer SavedModel": folder_size(saved) / 2**20}
        rows = []
        for suffix, export in ((".tflite", "litert"), (".onnx", "onnx")):
            paths = {
                name: os.path.join(folder, name + suffix)
                for name in ("classifier", "explainer")
            }
            classifier.export(paths["classifier"], format=export, verbose=False)
            explainer.export(paths["explainer"], format=export, verbose=0)
            sizes.update(
                {f"{name}{suffix}": folder_size(p) / 2**20 for name, p in paths.items()}
            )
            for batch in (1, 8):
                ms = measure(paths, images, batch, args.repeats, args.threads)
                rows.append((export, batch, ms))
    print("| file | MiB |\n|---|---|")
    for name, mib in sizes.items():
        print(f"| {name} | {mib:.1f} |")
    print(
        "\n| format | request | classifier ms/img | explainer ms/img "
        "| classifier / explainer |\n|---|---|---|---|---|"
    )
    for export, batch, ms in rows:
        ratio = ms["classifier"] / ms["explainer"]
        print(
            f"| {export} | {batch} | {ms['classifier']:.1f} "
            f"| {ms['explainer']:.1f} | {ratio:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
