"""Cost of explaining k classes per image (`explain(top_k=k)`) against one
classifier pass, in one run.

The setting of `speed.py` (`common.build`: a 1000-class ResNet-50 explained
through a ResNet-18 tapped after its four stages, random weights, which do
not change the timing), on one backend, at a smaller image size by default so
that a CPU runs it in minutes. Each figure is the median, over `--repeats`
rounds of one whole call over
`--batches` batches (`classifier.predict`, `explainer.explain`), after
`--warmup` one-batch calls each (the first compiles: `predict` holds one
compiled step, for the options of its last call, so a new `k` compiles anew),
each call's rounds in a row, the classifier's before and after them all. The
maps' memory is that of the arrays `explain` returns, per image (float32).

    python benchmarks/top_k_cost.py                       # JAX, 112x112, k = 1, 5, 1000
    KERAS_BACKEND=torch python benchmarks/top_k_cost.py --image-size 224
    python benchmarks/top_k_cost.py --ks 1 5 --resolutions input
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

from common import build  # noqa: E402


def _seconds(call):
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def make_calls(classifier, explainer, args):
    """`{name: call(images) -> array}`: the classifier, the default explain
    (one class per image) and `top_k=k` at each resolution asked."""
    batch = args.batch_size
    calls = {
        "classifier forward": lambda x: classifier.predict(
            x, batch_size=batch, verbose=0
        ),
        "explain (default, k=1)": lambda x: explainer.explain(x, batch_size=batch),
    }
    for resolution in args.resolutions:
        for k in args.ks:
            calls[f"explain top_k={k}, maps at {resolution}"] = (
                lambda x, k=k, resolution=resolution: explainer.explain(
                    x, batch_size=batch, top_k=k, resolution=resolution
                )
            )
    return calls


def measure(args):
    import keras
    import numpy as np

    classifier, explainer = build(args.image_size, "float32")
    shape = (args.batch_size * args.batches, args.image_size, args.image_size, 3)
    images = np.random.default_rng(0).integers(0, 256, shape).astype("float32")
    warm = images[: args.batch_size]
    calls = make_calls(classifier, explainer, args)
    # Each call is timed in a run of its own: `predict` holds one compiled
    # step, for the last options, so alternating k would compile every call.
    # The classifier is timed first and last, around them all.
    order = [*calls, "classifier forward"]
    per_image, times = {}, {name: [] for name in calls}
    for name in order:
        for _ in range(args.warmup):
            out = calls[name](warm)
        per_image[name] = out.nbytes / len(warm) / 2**20
        for _ in range(args.repeats):
            times[name].append(_seconds(lambda name=name: calls[name](images)))
    seconds = {name: statistics.median(values) for name, values in times.items()}
    forward = seconds["classifier forward"]
    rows = []
    for name in calls:
        rows.append(
            (
                name,
                1000 * seconds[name] / len(images),
                seconds[name] / forward,
                per_image[name],
            )
        )
    return keras.config.backend(), rows


def table(rows):
    lines = [
        "| call | ms / image | time / classifier pass | returned MiB / image |",
        "|---|---|---|---|",
    ]
    for name, ms, ratio, mib in rows:
        lines.append(f"| {name} | {ms:.1f} | {ratio:.2f} | {mib:.3f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 5, 1000])
    parser.add_argument(
        "--resolutions",
        nargs="+",
        default=["input", "decoder"],
        choices=["input", "decoder"],
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    backend, rows = measure(args)
    print(
        f"{backend}, {args.image_size}x{args.image_size} images, {args.batches} "
        f"batches of {args.batch_size} per call, median of {args.repeats} rounds "
        f"(wall time {time.perf_counter() - start:.0f} s)"
    )
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
