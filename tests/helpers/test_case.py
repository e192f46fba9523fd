"""The checks every public layer, model, loss and optimiser goes through.

In the spirit of keras-hub's `TestCase` (`run_serialization_test`,
`run_layer_test`, `run_model_saving_test`), as plain functions for pytest:

- `run_serialization_test`: `get_config` -> `from_config` and
  `serialize_keras_object` -> JSON -> `deserialize_keras_object` give an
  object of the same class whose whole config is the same;
- `run_layer_test`: an eager and a symbolic call (output shapes), the weight
  counts, a revived layer with the same weights gives the same outputs, and
  the layer saved to a `.keras` file and loaded gives the same outputs;
- `run_model_saving_test`: a model (or layer) saved and loaded gives the same
  outputs, through any call (`explain` for an explainer);
- `run_loss_test`: a revived loss gives the same values.

Each runs under the backend the suite runs on (`KERAS_BACKEND`).
"""

import json
import os

import keras
import numpy as np

# Keras' own scope for `safe_mode`, which `deserialize_keras_object` and
# `load_model` enter; a direct `from_config` call needs it too (a torch
# module inside a layer is only revived with `safe_mode=False`).
from keras.src.saving.serialization_lib import SafeModeScope


def _config_json(config):
    # As a `.keras` file stores it: JSON, keys sorted, tuples as lists.
    return json.dumps(config, sort_keys=True, indent=1)


def run_serialization_test(instance, safe_mode=True):
    """Revives `instance` twice and checks each has its class and whole config.

    Args:
        instance: a Keras layer, model, loss, optimiser or schedule, or a
            class registered with `keras.saving.register_keras_serializable`.
        safe_mode: passed to `deserialize_keras_object`. Defaults to `True`,
            what `keras.saving.load_model` uses.

    Returns:
        The object revived by `deserialize_keras_object`.
    """
    config = instance.get_config()
    expected = _config_json(config)
    with SafeModeScope(safe_mode):
        revived = type(instance).from_config(json.loads(expected))
    assert type(revived) is type(instance)
    assert _config_json(revived.get_config()) == expected
    serialized = _config_json(keras.saving.serialize_keras_object(instance))
    revived = keras.saving.deserialize_keras_object(
        json.loads(serialized), safe_mode=safe_mode
    )
    assert type(revived) is type(instance)
    assert _config_json(revived.get_config()) == expected
    assert _config_json(keras.saving.serialize_keras_object(revived)) == serialized
    return revived


def assert_outputs_equal(actual, expected, atol=1e-5):
    """Same structure, and each output close to the expected one."""
    actual, expected = keras.tree.flatten(actual), keras.tree.flatten(expected)
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(got),
            keras.ops.convert_to_numpy(want),
            rtol=atol,
            atol=atol,
        )


def run_model_saving_test(
    model, inputs, directory, call=None, safe_mode=True, atol=1e-5
):
    """Saves `model` to a `.keras` file, loads it, and compares the outputs.

    Args:
        model: a built Keras model or layer.
        inputs: what `call` takes.
        directory: a folder to write the file in (pytest's `tmp_path`).
        call: optional `call(model, inputs)` giving the outputs to compare.
            Defaults to calling the model.
        safe_mode: passed to `keras.saving.load_model`. Defaults to `True`.
        atol: tolerance of the comparison. Defaults to `1e-5`.

    Returns:
        The loaded object.
    """
    call = call or (lambda m, x: m(x))
    expected = call(model, inputs)
    path = os.path.join(str(directory), f"{model.name}.keras")
    keras.saving.save_model(model, path)
    loaded = keras.saving.load_model(path, safe_mode=safe_mode)
    assert type(loaded) is type(model)
    assert _config_json(loaded.get_config()) == _config_json(model.get_config())
    if getattr(model, "compiled", False):
        assert _config_json(loaded.get_compile_config()) == _config_json(
            model.get_compile_config()
        )
    assert_outputs_equal(call(loaded, inputs), expected, atol)
    return loaded


def _symbolic(inputs):
    return keras.tree.map_structure(
        lambda x: keras.KerasTensor(
            (None, *keras.ops.shape(x)[1:]), keras.backend.standardize_dtype(x.dtype)
        ),
        inputs,
    )


def _check_shapes(outputs, expected_output_shape):
    shapes = [tuple(keras.ops.shape(x)) for x in keras.tree.flatten(outputs)]
    if isinstance(outputs, dict):
        assert sorted(outputs) == sorted(expected_output_shape)
        # `keras.tree.flatten` orders a dict by key.
        expected = [tuple(expected_output_shape[key]) for key in sorted(outputs)]
    elif isinstance(outputs, (list, tuple)):
        expected = [tuple(shape) for shape in expected_output_shape]
    else:
        expected = [tuple(expected_output_shape)]
    assert shapes == expected, f"output shapes {shapes}, expected {expected}"


def _check_symbolic_call(layer, inputs, outputs):
    """A call on symbolic inputs gives the eager outputs' shapes and dtypes."""
    symbolic = keras.tree.flatten(layer(_symbolic(inputs)))
    eager = keras.tree.flatten(outputs)
    assert len(symbolic) == len(eager)
    for spec, value in zip(symbolic, eager, strict=True):
        assert tuple(spec.shape[1:]) == tuple(keras.ops.shape(value)[1:])
        assert spec.dtype == keras.backend.standardize_dtype(value.dtype)


def run_layer_test(
    layer,
    inputs,
    directory,
    expected_output_shape=None,
    expected_num_trainable_weights=None,
    expected_num_non_trainable_weights=None,
    safe_mode=True,
    atol=1e-5,
):
    """Everything a layer (or model) of the package must do to be saved.

    Calls `layer` on `inputs` (eagerly and symbolically), checks its output
    shapes and weight counts when given, revives it from its config (whole
    config equal, and with its weights copied, equal outputs), and saves and
    loads it as a `.keras` file (equal outputs).

    Args:
        layer: a Keras layer or model.
        inputs: its call's inputs (a tensor, or a list of them).
        directory: a folder for the `.keras` file (pytest's `tmp_path`).
        expected_output_shape: optional shape, or structure of shapes,
            batch size included. Defaults to `None` (not checked).
        expected_num_trainable_weights: optional int. Defaults to `None`.
        expected_num_non_trainable_weights: optional int. Defaults to `None`.
        safe_mode: for deserialising and loading. Defaults to `True`.
        atol: tolerance of the output comparisons. Defaults to `1e-5`.

    Returns:
        The layer revived from its serialised config, with the weights.
    """
    outputs = layer(inputs)
    if expected_output_shape is not None:
        _check_shapes(outputs, expected_output_shape)
    if expected_num_trainable_weights is not None:
        assert len(layer.trainable_weights) == expected_num_trainable_weights
    if expected_num_non_trainable_weights is not None:
        assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights
    _check_symbolic_call(layer, inputs, outputs)
    revived = run_serialization_test(layer, safe_mode=safe_mode)
    revived(inputs)  # builds its weights
    assert [w.shape for w in revived.weights] == [w.shape for w in layer.weights]
    for target, source in zip(revived.weights, layer.weights, strict=True):
        target.assign(keras.ops.convert_to_numpy(source))
    assert_outputs_equal(revived(inputs), outputs, atol)
    run_model_saving_test(layer, inputs, directory, safe_mode=safe_mode, atol=atol)
    return revived


def run_loss_test(loss, args, safe_mode=True, atol=1e-6):
    """A revived loss has the whole config and gives the same value on `args`.

    Returns:
        The revived loss.
    """
    revived = run_serialization_test(loss, safe_mode=safe_mode)
    assert_outputs_equal(revived(*args), loss(*args), atol)
    return revived
