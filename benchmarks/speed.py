"""Speed of P-TAME against the bare classifier, on every backend, in one run.

The paper's setting with random weights (weights do not change the timing): a
ResNet-50 classifier explained through a ResNet-18 auxiliary network tapped
after its four stages, 224x224 images, batches of 32.

For each backend it measures, on the same inputs and through the same Keras
machinery (`predict` / `fit`, compiled as the backend allows):
- the bare classifier's forward pass (`classifier.predict`),
- `explain` (one classifier pass for the class, one auxiliary pass, the
  decoder for one class per image), and again with `dtype="uint8"` (the
  same maps as uint8, made on the device),
- a training step (`fit` with `removal_check=0`: two classifier passes, a
  backward pass through the classifier to the input, one auxiliary pass, the
  decoder for the batch's classes; the removal check runs once an epoch),
and reports images per second, the ratios against the bare classifier and the
peak memory of training.

    python benchmarks/speed.py                      # all three backends
    python benchmarks/speed.py --backends jax --batch-size 8 --image-size 112
    python benchmarks/speed.py --scaling            # time vs batch and image size
    python benchmarks/speed.py --backends jax --steps-per-execution 8
    python benchmarks/speed.py --serving            # + the SavedModels (serving.py)
    python benchmarks/speed.py --onednn             # + TensorFlow with oneDNN on

Each backend runs in its own process (Keras picks its backend at import).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

from common import build
from serving import measure_serving, serving_table

BACKENDS = ("tensorflow", "jax", "torch")


# === Timing ===


def _seconds(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def peak_memory_mb(backend):
    """Peak accelerator memory if there is one, else the process's peak RSS."""
    try:
        if backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform != "cpu":
                return device.memory_stats()["peak_bytes_in_use"] / 2**20, "device"
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                return torch.cuda.max_memory_allocated() / 2**20, "device"
        elif backend == "tensorflow":
            import tensorflow as tf

            if tf.config.list_physical_devices("GPU"):
                return tf.config.experimental.get_memory_info("GPU:0")[
                    "peak"
                ] / 2**20, "device"
    except Exception:  # noqa: BLE001 - memory stats are best effort
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "host RSS"


def device_name(backend):
    try:
        if backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform != "cpu":
                return str(device.device_kind)
        if backend == "torch":
            import torch

            if torch.cuda.is_available():
                return torch.cuda.get_device_name(0)
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                return gpus[0].name
    except Exception:  # noqa: BLE001
        pass
    return f"CPU ({os.cpu_count()} cores, {platform.machine()})"


def measure(
    batch_size,
    image_size,
    batches,
    dtype,
    skip_train=False,
    warmup=3,
    repeats=3,
    steps_per_execution=1,
    resolution="input",
):
    """Runs in the process of one backend; returns a dict of figures.

    Each figure is the median, over `repeats` rounds, of the wall time of one
    whole call over `batches` batches, so that per-call set-up is shared out
    as it is in real use and asynchronous dispatch is waited for (the calls
    return host arrays). The classifier, `explain` and training take turns
    within each round, so that a slow spell on a shared machine hits them
    alike. Before timing, each runs `warmup` calls on `steps_per_execution`
    batches: the first compiles, and TensorFlow's first few calls after
    tracing still run at about half speed. `steps_per_execution` runs that
    many batches per compiled call, for the classifier and the explainer
    alike (Keras' `compile` option: less host work per batch).
    """
    import keras
    import numpy as np

    backend = keras.config.backend()
    classifier, explainer = build(image_size, dtype)
    rng = np.random.default_rng(0)
    shape = (batch_size * batches, image_size, image_size, 3)
    images = rng.integers(0, 256, shape).astype("float32")
    warm = images[: batch_size * steps_per_execution]
    classifier.compile(steps_per_execution=steps_per_execution)
    explainer.compile(
        optimizer=keras.optimizers.AdamW(1e-4, amsgrad=True),
        steps_per_execution=steps_per_execution,
    )

    from keras_ptame.models.tf_data import arrays_dataset

    def batches(x):
        # Under TensorFlow, the classifier gets its batches as the explainer's
        # `fit` and `predict` make them (tf.data untuned, see `tf_data`);
        # Keras' own pipeline has it run at half speed in spells, which would
        # flatter the ratios.
        if backend == "tensorflow":
            return arrays_dataset(x, batch_size), None
        return x, batch_size

    calls = {
        "forward": lambda x: classifier.predict(*batches(x), verbose=0),
        "explain": lambda x: explainer.explain(
            x, batch_size=batch_size, resolution=resolution
        ),
        # Issue 27: the same maps as uint8, made on the device.
        "explain_uint8": lambda x: explainer.explain(
            x, batch_size=batch_size, resolution=resolution, dtype="uint8"
        ),
    }
    if not skip_train:
        # The training steps alone: the removal check that ends each epoch
        # (`removal_check=256` images explained and twice classified) is
        # paid once an epoch, not once a batch, and would dominate calls of
        # a few batches.
        calls["train"] = lambda x: explainer.fit(
            x, batch_size=batch_size, epochs=1, verbose=0, removal_check=0
        )
    for call in calls.values():
        for _ in range(warmup):
            call(warm)
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            times[name].append(_seconds(lambda call=call: call(images)))
    seconds = {name: float(np.median(values)) for name, values in times.items()}
    forward, explain = seconds["forward"], seconds["explain"]
    count = len(images)
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    result = {
        "backend": backend
        if backend != "tensorflow" or onednn is None
        else f"tensorflow (TF_ENABLE_ONEDNN_OPTS={onednn})",
        "device": device_name(backend),
        "dtype": dtype,
        "batch_size": batch_size,
        "image_size": image_size,
        "steps_per_execution": steps_per_execution,
        "resolution": resolution,
        "classifier_ips": count / forward,
        "explain_ips": count / explain,
        "explain_ratio": forward / explain,
        "explain_ms_per_image": 1000 * explain / count,
        "explain_uint8_ips": count / seconds["explain_uint8"],
        "explain_uint8_ratio": forward / seconds["explain_uint8"],
    }
    if not skip_train:
        memory, where = peak_memory_mb(backend)
        result.update(
            {
                "train_ips": count / seconds["train"],
                "train_ratio": forward / seconds["train"],
                "train_peak_mb": memory,
                "memory_kind": where,
                "jit_compile": bool(explainer.jit_compile),
            }
        )
    return result


# === Driver ===


def run_backend(backend, args, extra, **variables):
    env = dict(os.environ, KERAS_BACKEND=backend, **variables)
    command = [sys.executable, __file__, "--_child", json.dumps(extra)]
    keys = ("batch_size", "image_size", "batches", "dtype", "warmup", "repeats")
    for key in (*keys, "steps_per_execution", "resolution"):
        command += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        sys.stderr.write(done.stderr[-3000:])
        return {"backend": backend, "error": done.stderr.strip().splitlines()[-1:]}
    return [json.loads(line) for line in lines]


def table(rows):
    head = (
        "| backend | device | steps / call | maps at | classifier img/s "
        "| explain img/s | explain / classifier | uint8 maps img/s | uint8 / classifier "
        "| train img/s | train / classifier | train peak MiB |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['backend']} | failed: {r['error']} |" + " |" * 10)
            continue
        lines.append(
            f"| {r['backend']} | {r['device']} | {r.get('steps_per_execution', 1)} "
            f"| {r.get('resolution', 'input')} | {r['classifier_ips']:.1f} "
            f"| {r['explain_ips']:.1f} | {r['explain_ratio']:.2f} "
            f"| {r['explain_uint8_ips']:.1f} | {r['explain_uint8_ratio']:.2f} "
            f"| {r.get('train_ips', float('nan')):.1f} "
            f"| {r.get('train_ratio', float('nan')):.2f} "
            f"| {r.get('train_peak_mb', float('nan')):.0f} ({r.get('memory_kind', '')}) |"
        )
    return head + "\n".join(lines)


def scaling_table(rows):
    head = "| backend | batch | image | explain ms/image | classifier ms/image |\n|---|---|---|---|---|\n"
    return head + "\n".join(
        f"| {r['backend']} | {r['batch_size']} | {r['image_size']} "
        f"| {r['explain_ms_per_image']:.2f} | {1000 / r['classifier_ips']:.2f} |"
        for r in rows
        if "error" not in r
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument(
        "--batches", type=int, default=8, help="batches per timed call (after warm-up)"
    )
    parser.add_argument(
        "--warmup", type=int, default=3, help="untimed one-batch calls before timing"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed rounds; the median is reported"
    )
    parser.add_argument("--dtype", default="float32", help="or mixed_bfloat16")
    parser.add_argument(
        "--steps-per-execution",
        type=int,
        default=1,
        help="batches per compiled call (Keras' compile option)",
    )
    parser.add_argument(
        "--resolution",
        choices=("input", "decoder"),
        default="input",
        help="where explain returns its maps: at the images' size or the decoder's",
    )
    parser.add_argument(
        "--scaling", action="store_true", help="time vs batch and image size"
    )
    parser.add_argument(
        "--serving",
        action="store_true",
        help="also time the exported SavedModels, loaded as TF Serving loads them",
    )
    parser.add_argument(
        "--onednn",
        action="store_true",
        help="also time TensorFlow with oneDNN's kernels on (TF_ENABLE_ONEDNN_OPTS=1; "
        "TensorFlow turns them on by itself only on CPUs with AVX512-VNNI, AVX-VNNI or "
        "AMX)",
    )
    parser.add_argument(
        "--output", help="also write the table(s) to this Markdown file"
    )
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._child is not None:
        extra = json.loads(args._child)
        if extra.get("serving"):
            return _serving_child(args, extra["serving"])
        for batch, size in extra.get("grid", [[args.batch_size, args.image_size]]):
            result = measure(
                batch,
                size,
                args.batches,
                args.dtype,
                skip_train=bool(extra.get("grid")),
                warmup=args.warmup,
                repeats=args.repeats,
                steps_per_execution=args.steps_per_execution,
                resolution=args.resolution,
            )
            print(json.dumps(result), flush=True)
        return 0

    rows = []
    for backend in args.backends:
        print(f"... {backend}", file=sys.stderr, flush=True)
        rows.extend(_as_list(run_backend(backend, args, {})))
    if args.onednn and "tensorflow" in args.backends:
        print("... tensorflow, oneDNN on", file=sys.stderr, flush=True)
        rows.extend(
            _as_list(run_backend("tensorflow", args, {}, TF_ENABLE_ONEDNN_OPTS="1"))
        )
    report = table(rows)
    if args.scaling:
        grid = [[1, 224], [8, 224], [32, 224], [8, 112], [8, 320]]
        scaled = []
        for backend in args.backends:
            print(f"... scaling {backend}", file=sys.stderr, flush=True)
            scaled.extend(_as_list(run_backend(backend, args, {"grid": grid})))
        report += "\n\n" + scaling_table(scaled)
    if args.serving:
        print("... serving (tensorflow)", file=sys.stderr, flush=True)
        served = _as_list(run_backend("tensorflow", args, {"serving": [1, 8, 32]}))
        report += "\n\n" + (
            serving_table(served) if "error" not in served[0] else str(served[0])
        )
    print(report)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(report + "\n")
    return 0


def _serving_child(args, batch_sizes):
    """The SavedModels' rows (`serving.measure_serving`), printed as JSON lines."""
    import numpy as np

    classifier, explainer = build(args.image_size, args.dtype)
    explainer.explain(np.zeros((1, args.image_size, args.image_size, 3), "uint8"))
    for row in measure_serving(
        classifier, explainer, args.image_size, batch_sizes, args.repeats
    ):
        print(json.dumps(row), flush=True)
    return 0


def _as_list(value):
    return value if isinstance(value, list) else [value]


if __name__ == "__main__":
    sys.exit(main())
