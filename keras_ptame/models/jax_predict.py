"""`predict`'s compiled step under JAX, for an explainer: weights passed through.

Keras' JAX step takes every variable, donated, and returns them all after
each batch in case it changed one; explaining changes none, so the step here
takes them as plain arguments (see `Explaining.make_predict_function`).
"""

import contextlib

import keras
from keras import ops


def nnx_enabled():
    # `keras.config.is_nnx_enabled` is new in Keras 3.11; 3.10 has no NNX.
    return getattr(keras.config, "is_nnx_enabled", lambda: False)()


@contextlib.contextmanager
def weights_kept(model):
    """Under JAX, puts the variables' values back if `predict` fails.

    Keras' JAX `predict` takes them off the model while it runs and puts
    them back after its last batch: a failure (an error, Ctrl-C) would leave
    every variable empty, and every later call failing. The values are
    immutable arrays that no step here donates (see `make_predict_function`).
    """
    jax = keras.config.backend() == "jax" and not nnx_enabled()
    variables = model.variables if jax and model.built else []
    values = [variable.value for variable in variables]
    try:
        yield
    except BaseException:
        for variable, value in zip(variables, values):
            variable.assign(value)
        raise


def jax_predict_function(model):
    """A JAX `predict_function` for a model whose inference changes no variable.

    Keras' contract, `(state, iterator) -> (outputs, state)` over up to
    `steps_per_execution` batches, with the state passed to the compiled
    step as plain arguments (not donated, not returned) and handed back as
    it came, in `_Weights`. (A layer that updated a variable in inference,
    which none of Keras' do, would see its update dropped.)
    """
    import jax

    def explain(trainable, non_trainable, data):
        return model.predict_step((trainable, non_trainable), data)[0]

    compiled = jax.jit(explain)

    def predict_function(state, iterator):
        if not isinstance(state[0], _Weights):
            state = tuple(_Weights(part) for part in state)
        trainable, non_trainable = (part.values for part in state)
        outputs = [compiled(trainable, non_trainable, next(iterator))]
        for _ in range(model.steps_per_execution - 1):
            try:
                data = next(iterator)
            except StopIteration:
                break
            outputs.append(compiled(trainable, non_trainable, data))
        if len(outputs) == 1:
            return outputs[0], state
        joined = keras.tree.map_structure(lambda *x: ops.concatenate(x), *outputs)
        return joined, state

    return predict_function


class _Weights:
    """Variable values handed through `predict` untouched.

    Neither a list nor a tuple on purpose: Keras' JAX `predict` stores its
    state on the model after every batch, and a model walks the lists and
    tuples it is given for new variables to track, ~450 checks a batch here.
    """

    __slots__ = ("values",)

    def __init__(self, values):
        self.values = tuple(values)

    def __iter__(self):
        return iter(self.values)

    def __len__(self):
        return len(self.values)
