"""TF32 on a CPU: every convolution and matmul input rounded to TF32.

An NVIDIA GPU since Ampere (A100, L4, H100) runs float32 convolutions and
matmuls on its tensor cores in TF32 by default under JAX, PyTorch's cuDNN
convolutions and TensorFlow: each input is rounded to 10 mantissa bits (1 + 10
significant bits, unit roundoff 2^-11), the products are accumulated in
float32. `emulated_tf32` does the same to the current backend's kernels on a
CPU: Keras' layers (`Conv2D`, `Dense`, `EinsumDense`, `DepthwiseConv2D`, ...)
and `keras.ops` all reach them through `keras.src.backend.nn` and
`keras.src.backend.numpy`, which are patched.
"""

import contextlib

import keras
from keras.src import backend

# The kernels that multiply and accumulate, by the module that holds them.
_KERNELS = {
    "nn": ("conv", "depthwise_conv", "separable_conv", "conv_transpose"),
    "numpy": ("matmul", "einsum", "tensordot", "dot", "inner", "outer"),
}
# float32 carries 23 stored mantissa bits, TF32 10: 13 are dropped.
_DROPPED_BITS = 13


def round_to_tf32(x):
    """`x` rounded to the nearest TF32 value (ties away from zero, as the
    GPUs' `cvt.rna.tf32.f32` does), still as float32; other dtypes as they are."""
    x = keras.ops.convert_to_tensor(x)
    if keras.backend.standardize_dtype(x.dtype) != "float32":
        return x
    bits = keras.ops.view(x, "int32")
    # Sign and magnitude: adding half of the dropped part to the magnitude
    # bits rounds the magnitude to nearest (a carry moves into the exponent).
    half = 1 << (_DROPPED_BITS - 1)
    bits = keras.ops.bitwise_and(bits + half, -(1 << _DROPPED_BITS))
    return keras.ops.view(bits, "float32")


def _rounding_inputs(kernel):
    def rounded(*args, **kwargs):
        args = [_round_tensor(a) for a in args]
        kwargs = {k: _round_tensor(v) for k, v in kwargs.items()}
        return kernel(*args, **kwargs)

    return rounded


def _round_tensor(value):
    # Operands are tensors; strides, paddings and equations pass through.
    if isinstance(value, (str, int, float, tuple, list, type(None))):
        return value
    return round_to_tf32(value)


@contextlib.contextmanager
def emulated_tf32(*models):
    """Runs the current backend's convolutions and matmuls in emulated TF32.

    `models`' compiled `predict` steps are dropped on entry and on exit, so
    that `predict` (and `explain`) traces them again with or without the
    rounding.
    """
    patched = []
    try:
        for module_name, names in _KERNELS.items():
            module = getattr(backend, module_name)
            for name in names:
                if hasattr(module, name):
                    kernel = getattr(module, name)
                    patched.append((module, name, kernel))
                    setattr(module, name, _rounding_inputs(kernel))
        _drop_compiled(models)
        yield
    finally:
        for module, name, kernel in reversed(patched):
            setattr(module, name, kernel)
        _drop_compiled(models)


def _drop_compiled(models):
    for model in models:
        model.predict_function = None
