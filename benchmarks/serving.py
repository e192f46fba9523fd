"""The exported SavedModels' throughput, run as TF Serving runs them.

`speed.py --serving` calls `measure_serving` in a TensorFlow process: the
classifier of `common.build` exported alone (Keras' `export`) and its
explainer exported by `kp.export.export_saved_model`, both loaded back with
`tf.saved_model.load` (the graph TF Serving loads, with its grappler
optimisations, no Keras and no Python layer code), each signature called on
requests of 1, 8 and 32 images prepared beforehand, its outputs copied to
numpy as a server copies them into its reply.

Each figure is the median, over `repeats` rounds, of the wall time of the
same number of images sent in requests of one size; the signatures take
turns within each round, so that a slow spell on a shared machine hits them
alike. The first two calls of each (tracing, warm-up) are not timed.
"""

import statistics
import tempfile
import time

# The explainer's signatures timed, and what each request carries.
SIGNATURES = {
    "serving_default": "float32",
    "explain_uint8": "uint8",
    "explain_uint8_maps": "uint8",
    "explain_encoded": "png",
}


def _requests(images, batch_size, kind):
    """`images` split into requests of `batch_size`, as tensors of `kind`."""
    import tensorflow as tf

    chunks = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
    if kind == "png":
        return [
            tf.stack([tf.io.encode_png(image) for image in chunk]) for chunk in chunks
        ]
    return [tf.constant(chunk.astype(kind)) for chunk in chunks]


def _served_calls(explainer_path, classifier_path, images, batch_size):
    """Per signature, a function that sends every request and copies the replies."""
    import tensorflow as tf

    explainer = tf.saved_model.load(explainer_path)
    classifier = tf.saved_model.load(classifier_path)
    forward = classifier.signatures["serving_default"]
    (input_name,) = forward.structured_input_signature[1]
    calls = {"classifier": (forward, input_name, "float32")}
    for name, kind in SIGNATURES.items():
        argument = "encoded" if kind == "png" else "images"
        calls[name] = (explainer.signatures[name], argument, kind)

    def sender(signature, argument, kind):
        requests = _requests(images, batch_size, kind)

        def send():
            for request in requests:
                reply = signature(**{argument: request})
                {key: value.numpy() for key, value in reply.items()}

        return send

    return {name: sender(*call) for name, call in calls.items()}


def median_seconds(calls, repeats):
    """Median seconds of each call over `repeats` rounds of turns, after two
    untimed calls of each (tracing, warm-up)."""
    for send in calls.values():
        send(), send()  # traces, warms up
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, send in calls.items():
            start = time.perf_counter()
            send()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def measure_serving(classifier, explainer, image_size, batch_sizes, repeats):
    """Rows of img/s per signature and request size (TensorFlow backend).

    `classifier`, `explainer`: `common.build`'s, exported here to a
    temporary folder.
    """
    import numpy as np

    import keras_ptame as kp

    rng = np.random.default_rng(0)
    count = max(batch_sizes)
    images = rng.integers(0, 256, (count, image_size, image_size, 3)).astype("uint8")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        classifier_path, explainer_path = f"{folder}/classifier", f"{folder}/ptame"
        classifier.export(classifier_path, format="tf_saved_model", verbose=False)
        kp.export.export_saved_model(explainer, explainer_path, verbose=0)
        for batch_size in batch_sizes:
            calls = _served_calls(explainer_path, classifier_path, images, batch_size)
            seconds = median_seconds(calls, repeats)
            for name, value in seconds.items():
                rows.append(
                    {
                        "signature": name,
                        "batch_size": batch_size,
                        "ips": count / value,
                        "ratio": seconds["classifier"] / value,
                    }
                )
    return rows


def serving_table(rows):
    head = (
        "| signature | request | img/s | ÷ classifier's SavedModel |\n"
        "|---|---|---|---|\n"
    )
    return head + "\n".join(
        f"| `{r['signature']}` | {r['batch_size']} | {r['ips']:.1f} | {r['ratio']:.2f} |"
        for r in rows
    )
