"""Where `explain`'s time goes, under JAX: host work against device compute.

    KERAS_BACKEND=jax python benchmarks/profile_explain.py --output profile.md

On the models of `speed.py` (ResNet-50 classifier, ResNet-18 auxiliary
network, random weights), it times in one process: the public calls
(`classifier.predict`, `explainer.explain`), `explainer.predict` (the same
forward pass without the host-side input checks), the input check alone, and
each part of the forward pass compiled with `jax.jit` on arrays already on the
device (classifier, auxiliary network, decoder for one class, the whole
explanation with maps at input or at decoder resolution). Each figure is the
median of `--repeats` timed runs after one compiling run.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _median_ms(function, repeats):
    function()  # compiles
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _device_parts(classifier, explainer, batch):
    """Jitted parts of the explanation on a device batch, as timed callables."""
    import jax
    from keras import ops

    features = jax.jit(lambda x: explainer.extractor(x))
    classes = ops.zeros((batch.shape[0], 1), "int32")

    def raw_maps(x):
        return explainer.decoder(explainer.extractor(x), classes=classes)

    parts = {
        "classifier (jit, device)": jax.jit(lambda x: classifier(x, training=False)),
        "auxiliary network (jit, device)": features,
        "auxiliary + decoder, maps at decoder resolution (jit, device)": jax.jit(
            raw_maps
        ),
        "whole explanation, maps at input resolution (jit, device)": jax.jit(
            lambda x: explainer.explain_batch(x)["maps"]
        ),
    }
    return {
        name: (lambda f=f: jax.block_until_ready(f(batch))) for name, f in parts.items()
    }


def profile(batch_size, image_size, batches, repeats):
    import jax
    import numpy as np
    from speed import build

    from keras_ptame.validation import check_images

    classifier, explainer = build(image_size, "float32")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch_size * batches, image_size, image_size, 3))
    images = images.astype("float32")
    explainer.explain(images[:batch_size])  # builds
    count = len(images)
    host = {
        "classifier.predict (public)": lambda: classifier.predict(
            images, batch_size=batch_size, verbose=0
        ),
        "explainer.explain (public)": lambda: explainer.explain(
            images, batch_size=batch_size
        ),
        "explainer.predict (no input checks)": lambda: explainer.predict(
            images, batch_size=batch_size, verbose=0
        ),
        "input check alone (host, numpy)": lambda: check_images(images),
    }
    rows = [(name, _median_ms(f, repeats) / count) for name, f in host.items()]
    batch = jax.device_put(images[:batch_size])
    for name, f in _device_parts(classifier, explainer, batch).items():
        rows.append((name, _median_ms(f, repeats) / batch_size))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", help="a Markdown file for the table")
    args = parser.parse_args(argv)
    import keras

    if keras.config.backend() != "jax":
        print("Run with KERAS_BACKEND=jax.", file=sys.stderr)
        return 2
    rows = profile(args.batch_size, args.image_size, args.batches, args.repeats)
    import jax

    lines = [
        f"`profile_explain.py`, {jax.devices()[0].device_kind}, batches of "
        f"{args.batch_size} at {args.image_size}x{args.image_size}:",
        "",
        "| what | ms per image |",
        "|---|---|",
        *(f"| {name} | {ms:.3f} |" for name, ms in rows),
    ]
    text = "\n".join(lines)
    print(text)
    if args.output:
        with open(args.output, "w") as file:
            file.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
