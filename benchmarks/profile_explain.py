"""Where `explain`'s time goes, under JAX: host work against device compute.

    KERAS_BACKEND=jax python benchmarks/profile_explain.py --output profile.md
    KERAS_BACKEND=jax python benchmarks/profile_explain.py --thin --image-size 32

On the models of `speed.py` (`common.build`: ResNet-50 classifier, ResNet-18 auxiliary
network, random weights), or with `--thin` on the same two graphs with 4
channels a layer: the same ~450 variables, hence the same host work per
batch, and almost no compute, so that the host's share shows on a CPU. It
times in one process:
- the public calls: `classifier.predict`, `explainer.explain`,
  `explainer.predict` (the same forward pass without the host-side input
  checks) and `explainer.predict` through Keras' own JAX step, which takes
  every variable, donated, and returns them all after each batch (what
  `explain` ran before issue 12);
- the input check alone;
- each part of the forward pass compiled with `jax.jit` on a batch already
  on the device, with the weights passed as arguments as `predict` passes
  them (closed over, they would be compiled in as constants, which XLA may
  fold): classifier, auxiliary network, decoder for one class, the whole
  explanation with maps at input or at decoder resolution;
- copying one call's maps off the device as `predict` does at its end, as
  float32 and as uint8, and Keras' concatenation of the copies on the host.
Each figure is the median of `--repeats` timed runs after one compiling run:
wall time, and the CPU time of the calling thread (the host work that must
keep up with the device; on a CPU it includes compute run inline).
"""

import argparse
import statistics
import sys
import time

from common import build


def _median_ms(function, repeats):
    """Median (wall, calling thread's CPU) milliseconds of `function()`."""
    function()  # compiles
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.thread_time()
        function()
        wall.append(time.perf_counter() - start)
        cpu.append(time.thread_time() - start_cpu)
    return 1000 * statistics.median(wall), 1000 * statistics.median(cpu)


# === Thin models: the variables of `common.build`'s, almost none of the compute ===


def _conv_bn(x, filters, kernel, stride, name, use_bias=True):
    import keras

    x = keras.layers.Conv2D(
        filters, kernel, stride, "same", use_bias=use_bias, name=name + "_conv"
    )(x)
    return keras.layers.BatchNormalization(name=name + "_bn")(x)


def thin_resnet50(image_size, width=4):
    """ResNet-50's graph (bottleneck blocks 3-4-6-3, 320 variables), narrow."""
    import keras

    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.ReLU()(_conv_bn(inputs, width, 7, 2, "conv1"))
    x = keras.layers.MaxPooling2D(3, 2, "same")(x)
    for stage, blocks in enumerate([3, 4, 6, 3], start=2):
        for block in range(blocks):
            name = f"conv{stage}_block{block + 1}"
            stride = 2 if stage > 2 and block == 0 else 1
            shortcut = x
            if block == 0:
                shortcut = _conv_bn(x, 4 * width, 1, stride, name + "_0")
            y = keras.layers.ReLU()(_conv_bn(x, width, 1, stride, name + "_1"))
            y = keras.layers.ReLU()(_conv_bn(y, width, 3, 1, name + "_2"))
            y = _conv_bn(y, 4 * width, 1, 1, name + "_3")
            x = keras.layers.ReLU()(keras.layers.Add()([shortcut, y]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    logits = keras.layers.Dense(1000)(x)
    return keras.Model(inputs, logits, name="thin_resnet50")


def thin_resnet18(image_size, width=4):
    """`common.resnet18_features`' graph (stages stage1..stage4), narrow."""
    import keras

    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.ReLU()(_conv_bn(x, width, 7, 2, "stem", use_bias=False))
    x = keras.layers.MaxPooling2D(3, 2, "same")(x)
    for stage, stride in enumerate([1, 2, 2, 2], start=1):
        for index, step in enumerate((stride, 1)):
            name = f"s{stage}{'ab'[index]}"
            filters = width * stage
            y = _conv_bn(x, filters, 3, step, name + "_1", use_bias=False)
            y = _conv_bn(keras.layers.ReLU()(y), filters, 3, 1, name + "_2", False)
            shortcut = x
            if step != 1 or x.shape[-1] != filters:
                shortcut = _conv_bn(x, filters, 1, step, name + "_down", False)
            x = keras.layers.ReLU()(keras.layers.Add()([y, shortcut]))
        x = keras.layers.Identity(name=f"stage{stage}")(x)
    return keras.Model(inputs, x, name="thin_resnet18")


def _build(image_size, thin):
    if not thin:
        return build(image_size, "float32")
    import keras_ptame as kp

    classifier = thin_resnet50(image_size)
    explainer = kp.PTAME(
        kp.Backbone(classifier),
        kp.AuxiliaryExtractor(
            thin_resnet18(image_size), layer_names=[f"stage{i}" for i in range(1, 5)]
        ),
    )
    return classifier, explainer


# === Timed calls ===


def _weights_as_arguments(model, function):
    """`function` jitted with `model`'s variables passed in, not closed over."""
    import jax
    import keras

    variables = model.variables

    def run(values, batch):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return function(batch)

    compiled = jax.jit(run)
    values = [v.value for v in variables]
    return lambda batch: compiled(values, batch)


def _device_parts(classifier, explainer, batch):
    """Jitted parts of the explanation on a device batch, as timed callables."""
    import jax
    from keras import ops

    classes = ops.zeros((batch.shape[0], 1), "int32")

    def raw_maps(x):
        return explainer.decoder(explainer.extractor(x), classes=classes)

    parts = {
        "classifier": (classifier, lambda x: classifier(x, training=False)),
        "auxiliary network": (explainer, explainer.extractor),
        "auxiliary + decoder, maps at decoder resolution": (explainer, raw_maps),
        "whole explanation, maps at input resolution": (
            explainer,
            explainer.explain_batch,
        ),
        "whole explanation, maps at decoder resolution": (
            explainer,
            lambda x: explainer.explain_batch(x, None, "decoder"),
        ),
    }
    timed = {}
    for name, (model, function) in parts.items():
        compiled = _weights_as_arguments(model, function)
        timed[f"{name} (jit, device)"] = lambda f=compiled: jax.block_until_ready(
            f(batch)
        )
    return timed


def _host_copies(batches, image_size, batch_size):
    """Copying maps off the device as `predict` does, as timed callables.

    One call's maps, `batches` arrays `(batch_size, H, W)` on the device,
    copied to host memory one by one (`np.asarray`, as `predict` does at its
    end), as float32 and as uint8; and Keras' `np.concatenate` of the copies.
    Each timed run copies fresh device arrays: a JAX array keeps its first
    host copy.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    shape = (batch_size, image_size, image_size)
    maps = [jnp.full(shape, 0.5, "float32") + i for i in range(batches)]
    fresh = jax.jit(lambda m: m * 1.0)
    as_uint8 = jax.jit(lambda m: (m * 255).astype("uint8"))
    copies = [np.asarray(m) for m in maps]

    def copy(convert):
        outputs = [convert(m) for m in maps]
        return [np.asarray(o) for o in outputs]

    return {
        "maps of a call to host memory, float32 (host)": lambda: copy(fresh),
        "maps of a call to host memory, uint8 (host)": lambda: copy(as_uint8),
        "concatenating a call's float32 maps (host, numpy)": lambda: np.concatenate(
            copies
        ),
    }


def _public_calls(classifier, explainer, images, batch_size):
    import keras

    from keras_ptame.utils.validation import check_images

    explainer.explain(images[:batch_size])  # builds, compiles its own step
    own_step = explainer.predict_function
    # Keras' own JAX step, kept aside: `predict` runs whichever is set.
    keras.Model.make_predict_function(explainer, force=True)
    keras_step = explainer.predict_function

    def explainer_predict(step):
        explainer.predict_function = step
        return explainer.predict(images, batch_size=batch_size, verbose=0)

    def explain():
        explainer.predict_function = own_step
        return explainer.explain(images, batch_size=batch_size)

    return {
        "classifier.predict (public)": lambda: classifier.predict(
            images, batch_size=batch_size, verbose=0
        ),
        "explainer.explain (public)": explain,
        "explainer.predict (no input checks)": lambda: explainer_predict(own_step),
        "explainer.predict, Keras' own JAX step": lambda: explainer_predict(keras_step),
        "input check alone (host, numpy)": lambda: check_images(images),
    }


def profile(batch_size, image_size, batches, repeats, thin=False):
    """Rows `(what, wall ms per image, calling thread's CPU ms per image)`."""
    import jax
    import numpy as np

    classifier, explainer = _build(image_size, thin)
    explainer.mark_trained()  # random weights, timed alike: no warning
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch_size * batches, image_size, image_size, 3))
    images = images.astype("float32")
    rows = []
    for name, f in _public_calls(classifier, explainer, images, batch_size).items():
        wall, cpu = _median_ms(f, repeats)
        rows.append((name, wall / len(images), cpu / len(images)))
    batch = jax.device_put(images[:batch_size])
    for name, f in _device_parts(classifier, explainer, batch).items():
        wall, cpu = _median_ms(f, repeats)
        rows.append((name, wall / batch_size, cpu / batch_size))
    for name, f in _host_copies(batches, image_size, batch_size).items():
        wall, cpu = _median_ms(f, repeats)
        rows.append((name, wall / len(images), cpu / len(images)))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--thin", action="store_true", help="4-channel models: host work alone"
    )
    parser.add_argument("--output", help="a Markdown file for the table")
    args = parser.parse_args(argv)
    import keras

    if keras.config.backend() != "jax":
        print("Run with KERAS_BACKEND=jax.", file=sys.stderr)
        return 2
    rows = profile(
        args.batch_size, args.image_size, args.batches, args.repeats, args.thin
    )
    import jax

    models = "thin (4-channel) models" if args.thin else "ResNet-50 + ResNet-18"
    lines = [
        f"`profile_explain.py`, {jax.devices()[0].device_kind}, {models}, "
        f"{args.batches} batches of {args.batch_size} at "
        f"{args.image_size}x{args.image_size} per call:",
        "",
        "| what | ms per image | host CPU ms per image |",
        "|---|---|---|",
        *(f"| {name} | {ms:.3f} | {cpu:.3f} |" for name, ms, cpu in rows),
    ]
    text = "\n".join(lines)
    print(text)
    if args.output:
        with open(args.output, "w") as file:
            file.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
