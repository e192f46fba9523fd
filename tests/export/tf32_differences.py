"""Measures what `ROUNDOFF_MULTIPLES` in `keras_ptame/export/verification.py`
rests on: how far an explainer in emulated TF32 is from its SavedModel in
float32, in units of TF32's unit roundoff 2^-11.

    KERAS_BACKEND=jax python -m tests.export.tf32_differences            # tiny
    KERAS_BACKEND=jax python -m tests.export.tf32_differences --large --gain 20

Tiny: the two tiny keras-hub ResNet presets at 32 pixels. `--large`: a
ResNet-50 classifier through a ResNet-18 at 224 pixels, random weights,
the classifier's head multiplied by `--gain` (20 gives logits up to about
14, softmax scores near 0.4, where a score moves most with its logit).
Each: four training steps, an export in float32, then `explain_outputs`
with every convolution and matmul input rounded to TF32
(`tests/helpers/precision.py`) against the SavedModel's.
"""

import argparse
import os
import tempfile

import keras
import numpy as np

import keras_ptame as kp
from keras_ptame import export
from keras_ptame.demo import TINY_IMAGE_SIZE, save_tiny_presets
from keras_ptame.demo.tiny_presets import imagenet_resnet_classifier
from keras_ptame.utils.tf_runtime import import_tensorflow
from tests.helpers import random_images
from tests.helpers.precision import emulated_tf32

TF32 = 2.0**-11


def _save_resnet(directory, block_type, blocks, seed, gain, size):
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512],
        stackwise_num_blocks=blocks,
        stackwise_num_strides=[1, 2, 2, 2],
        block_type=block_type,
    )
    classifier = imagenet_resnet_classifier(backbone, size, num_classes=1000)
    kernel = classifier.output_dense.kernel
    kernel.assign(kernel * gain)
    classifier.save_to_preset(directory)
    return directory


def measure(large=False, gain=1.0, seed=0):
    """The largest differences, in units of 2^-11, as a dict."""
    scratch = tempfile.mkdtemp()
    if large:
        size, batch = 224, 2
        presets = (
            _save_resnet(
                f"{scratch}/r50", "bottleneck_block", [3, 4, 6, 3], 0, gain, size
            ),
            _save_resnet(f"{scratch}/r18", "basic_block", [2, 2, 2, 2], 1, 1.0, size),
        )
    else:
        size, batch = TINY_IMAGE_SIZE, 4
        presets = save_tiny_presets(os.path.join(scratch, "presets"))
    keras.utils.set_random_seed(seed)
    explainer = kp.PTAME(
        kp.Backbone.from_preset(presets[0]),
        kp.AuxiliaryExtractor.from_preset(presets[1]),
    )
    explainer.compile(optimizer=keras.optimizers.AdamW(1e-3))
    images = random_images(4 * batch, size=size, seed=seed)
    explainer.fit(images, epochs=1, batch_size=batch, verbose=0)
    path = export.export_saved_model(explainer, f"{scratch}/model", verify=False)
    tf = import_tensorflow()
    probes = export.probe_images((size, size))
    with emulated_tf32(explainer):
        expected = explainer.explain_outputs(probes)
        logits = keras.ops.convert_to_numpy(explainer.backbone(probes))
    served = tf.saved_model.load(path).signatures["explain_classes"]
    got = served(
        images=tf.constant(probes, tf.float32),
        classes=tf.constant(expected["classes"], tf.int32),
    )
    units = {
        key: float(np.max(np.abs(got[key].numpy() - expected[key]))) / TF32
        for key in ("maps", "scores", "evidence")
    }
    float32_logits = keras.ops.convert_to_numpy(explainer.backbone(probes))
    scale = float(np.max(np.abs(float32_logits)))
    units["logits"] = float(np.max(np.abs(logits - float32_logits))) / TF32 / scale
    units["largest logit"] = scale
    return units


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true")
    parser.add_argument("--gain", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    units = measure(args.large, args.gain, args.seed)
    print(
        f"KERAS_BACKEND={keras.config.backend()}, in units of 2^-11: "
        + ", ".join(f"{key} {value:.3g}" for key, value in units.items())
    )


if __name__ == "__main__":
    main()
