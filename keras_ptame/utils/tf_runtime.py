"""TensorFlow in a process whose Keras backend may be another one.

Under JAX and PyTorch, TensorFlow still serves them: `tf.data` pipelines
(`kp.data`, `kp.datasets.shapes_dataset`), and the export check, which loads
the SavedModel back and runs it. Every such path imports TensorFlow through
`import_tensorflow`, which hides the GPU from it first.
"""

import warnings

import keras

# Whether `import_tensorflow` has hidden the GPU (it does so once).
_GPU_HIDDEN = False


def import_tensorflow():
    """Imports TensorFlow, hiding the GPU from it under JAX or PyTorch.

    The first TensorFlow operation starts TensorFlow's runtime in the
    process; unless it is told otherwise, TensorFlow then reserves nearly all
    free GPU memory although it only serves another backend (feeding data,
    checking an export on a CPU), and JAX or PyTorch run out of memory. So
    when Keras' backend is not TensorFlow, the GPU is hidden from TensorFlow
    once, before its runtime starts (as JAX training code does when tf.data
    feeds it). Under the TensorFlow backend nothing changes: TensorFlow is
    the backend and keeps the GPU. If TensorFlow's runtime was started before
    (by other code in the process), its devices can no longer change: a
    warning says so.

    Returns:
        The `tensorflow` module.
    """
    global _GPU_HIDDEN
    import tensorflow as tf

    if _GPU_HIDDEN or keras.config.backend() == "tensorflow":
        return tf
    _GPU_HIDDEN = True
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError as error:
        # TensorFlow's runtime already started; its visible devices are fixed.
        if tf.config.get_visible_devices("GPU"):
            warnings.warn(
                "TensorFlow already holds the GPU, so it may reserve GPU memory "
                f"that Keras' {keras.config.backend()} backend needs ({error}). "
                "Build `kp.data` or `kp.datasets` pipelines (or export) before "
                "other code runs TensorFlow, or call "
                "`tf.config.set_visible_devices([], 'GPU')` first.",
                stacklevel=2,
            )
    return tf
