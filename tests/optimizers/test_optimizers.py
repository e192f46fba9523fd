"""`OneCycle` and `CyclingAdamW` against PyTorch's `OneCycleLR` and `AdamW`.

PyTorch itself is the reference (it is installed beside every backend): its
scheduler and optimiser run on a dummy parameter and the Keras ones must give
the same learning rates, `beta_1` values and updates.
"""

import keras
import numpy as np
import pytest

import keras_ptame as kp
from keras_ptame.optimizers import CyclingAdamW, OneCycle
from tests.helpers.test_case import run_serialization_test

torch = pytest.importorskip("torch")

# float32 arithmetic against PyTorch's float64 schedule: a few roundings.
SCHEDULE_RTOL = 1e-6


def torch_schedule(peak, total_steps, **kwargs):
    """PyTorch's learning rates and beta_1 for every step of a run."""
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([parameter], lr=peak, amsgrad=True)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=peak, total_steps=total_steps, **kwargs
    )
    rates, betas = [], []
    for _ in range(total_steps):
        group = optimizer.param_groups[0]
        rates.append(group["lr"])
        betas.append(group["betas"][0])
        optimizer.step()
        scheduler.step()
    return np.array(rates), np.array(betas)


def keras_values(schedule, steps):
    return np.array([float(schedule(step)) for step in range(steps)])


@pytest.mark.parametrize(
    "total_steps, warmup_fraction",
    [(37, 0.3), (1000, 0.3), (10, 0.25), (3, 0.3), (2, 0.3), (1, 0.3), (50, 0.0)],
)
def test_one_cycle_is_torch_s_one_cycle_lr(total_steps, warmup_fraction):
    rates, betas = torch_schedule(1e-4, total_steps, pct_start=warmup_fraction)
    learning_rate = OneCycle.learning_rate(1e-4, total_steps, warmup_fraction)
    beta_1 = OneCycle.beta_1(total_steps, warmup_fraction)
    np.testing.assert_allclose(
        keras_values(learning_rate, total_steps), rates, rtol=SCHEDULE_RTOL, atol=0
    )
    np.testing.assert_allclose(
        keras_values(beta_1, total_steps), betas, rtol=SCHEDULE_RTOL, atol=0
    )


def test_one_cycle_shape():
    schedule = OneCycle.learning_rate(2e-3, total_steps=100)
    values = keras_values(schedule, 100)
    np.testing.assert_allclose(values[0], 2e-3 / 25, rtol=1e-6)
    assert int(np.argmax(values)) == 29  # warm-up ends at step 0.3 * 100 - 1
    np.testing.assert_allclose(values.max(), 2e-3, rtol=1e-6)
    np.testing.assert_allclose(values[-1], 2e-3 / 25 / 1e4, rtol=1e-5)
    # Past the end the value stays where the run ended (PyTorch raises).
    np.testing.assert_allclose(float(schedule(500)), values[-1], rtol=1e-6)
    beta_1 = keras_values(OneCycle.beta_1(100), 100)
    np.testing.assert_allclose(
        [beta_1[0], beta_1.min(), beta_1[-1]], [0.95, 0.85, 0.95]
    )


def test_one_cycle_runs_compiled():
    schedule = OneCycle.learning_rate(1e-3, total_steps=20)
    steps = keras.ops.arange(20)
    if keras.config.backend() == "jax":
        import jax

        values = jax.jit(schedule)(steps)
    elif keras.config.backend() == "tensorflow":
        import tensorflow as tf

        values = tf.function(schedule, jit_compile=True)(steps)
    else:
        values = schedule(steps)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(values), keras_values(schedule, 20), rtol=1e-6
    )


def test_one_cycle_serializes():
    schedule = OneCycle.beta_1(total_steps=12, warmup_fraction=0.4)
    revived = run_serialization_test(schedule)
    np.testing.assert_array_equal(keras_values(revived, 14), keras_values(schedule, 14))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"total_steps": 0}, "total_steps"),
        ({"total_steps": 2.5}, "total_steps"),
        ({"total_steps": True}, "total_steps"),
        ({"total_steps": 10, "warmup_fraction": 1.5}, "warmup_fraction"),
        ({"total_steps": 10, "initial_value": float("nan")}, "initial_value"),
    ],
)
def test_one_cycle_rejects_bad_arguments(kwargs, message):
    arguments = {"initial_value": 1.0, "peak_value": 2.0, "final_value": 0.0}
    with pytest.raises(ValueError, match=message):
        OneCycle(**{**arguments, **kwargs})


# === CyclingAdamW ===


def _gradients(steps, shape, seed=0):
    """Gradients over many decades, so that epsilon's placement shows."""
    rng = np.random.default_rng(seed)
    scales = 10.0 ** rng.uniform(-9, 0, size=shape)
    return [(rng.normal(size=shape) * scales).astype("float32") for _ in range(steps)]


def torch_adamw_run(initial, gradients, peak, weight_decay, **schedule):
    parameter = torch.nn.Parameter(torch.from_numpy(initial.copy()))
    optimizer = torch.optim.AdamW(
        [parameter], lr=peak, weight_decay=weight_decay, amsgrad=True
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=peak, total_steps=len(gradients), **schedule
    )
    for gradient in gradients:
        parameter.grad = torch.from_numpy(gradient)
        optimizer.step()
        scheduler.step()
    return parameter.detach().numpy()


def keras_run(optimizer, initial, gradients):
    variable = keras.Variable(initial)
    for gradient in gradients:
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(gradient), variable)])
    return keras.ops.convert_to_numpy(variable)


def authors_optimizer(peak, steps, weight_decay):
    return CyclingAdamW(
        learning_rate=OneCycle.learning_rate(peak, steps),
        beta_1=OneCycle.beta_1(steps),
        weight_decay=weight_decay,
        amsgrad=True,
    )


def test_cycling_adamw_computes_torch_s_adamw_under_one_cycle_lr():
    steps, shape = 10, (64,)
    initial = np.random.default_rng(1).normal(size=shape).astype("float32")
    gradients = _gradients(steps, shape)
    # A large rate so that the moves, not the starting point, dominate.
    expected = torch_adamw_run(initial, gradients, peak=0.1, weight_decay=0.1)
    actual = keras_run(authors_optimizer(0.1, steps, 0.1), initial, gradients)
    moved = np.abs(expected - initial)
    assert moved.min() > 1e-4
    # Within a few float32 roundings of the variables (about 1 in size).
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)
    # Keras' AdamW (epsilon before the bias correction, constant beta_1)
    # misses the same reference by far more.
    keras_adamw = keras.optimizers.AdamW(
        OneCycle.learning_rate(0.1, steps), weight_decay=0.1, amsgrad=True, epsilon=1e-8
    )
    other = keras_run(keras_adamw, initial, gradients)
    assert np.abs(other - expected).max() > 1e-2


def test_constant_beta_1_without_amsgrad_is_torch_s_adamw():
    steps, shape = 8, (32,)
    initial = np.random.default_rng(2).normal(size=shape).astype("float32")
    gradients = _gradients(steps, shape, seed=5)
    parameter = torch.nn.Parameter(torch.from_numpy(initial.copy()))
    reference = torch.optim.AdamW([parameter], lr=0.05, betas=(0.8, 0.99))
    for gradient in gradients:
        parameter.grad = torch.from_numpy(gradient)
        reference.step()
    optimizer = CyclingAdamW(learning_rate=0.05, beta_1=0.8, beta_2=0.99)
    actual = keras_run(optimizer, initial, gradients)
    np.testing.assert_allclose(actual, parameter.detach().numpy(), rtol=0, atol=1e-6)


def _tiny_model():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((5,))
    outputs = keras.layers.Dense(3)(keras.layers.Dense(4, activation="relu")(inputs))
    return keras.Model(inputs, outputs)


def test_compiled_training_equals_eager_updates():
    # beta_1 is read from the step counter inside the compiled step.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 5)).astype("float32")
    y = rng.normal(size=(12, 3)).astype("float32")
    results = []
    for jit_compile in (False, keras.config.backend() != "torch"):
        model = _tiny_model()
        model.compile(
            optimizer=authors_optimizer(0.05, 6, 0.01),
            loss="mse",
            jit_compile=jit_compile,
            run_eagerly=not jit_compile,
        )
        model.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0)
        assert int(model.optimizer.iterations) == 6
        results.append([keras.ops.convert_to_numpy(w) for w in model.weights])
    for eager, compiled in zip(*results):
        np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-6)


def test_config_round_trip_keeps_the_schedules():
    optimizer = authors_optimizer(1e-4, 40, 0.13)
    revived = run_serialization_test(optimizer)
    assert isinstance(revived.beta_1, OneCycle)
    assert revived.epsilon == 1e-8 and revived.amsgrad
    # The revived optimiser makes the same updates.
    initial = np.random.default_rng(2).normal(size=(16,)).astype("float32")
    updated = []
    for each in (optimizer, revived):
        variable = keras.Variable(initial)
        for gradient in _gradients(3, (16,)):
            each.apply_gradients([(keras.ops.convert_to_tensor(gradient), variable)])
        updated.append(keras.ops.convert_to_numpy(variable))
    np.testing.assert_array_equal(updated[1], updated[0])
    assert not np.allclose(updated[0], initial)


def test_rejects_bad_betas():
    with pytest.raises(ValueError, match="beta_1"):
        CyclingAdamW(beta_1=1.0)
    with pytest.raises(ValueError, match="beta_2"):
        CyclingAdamW(beta_2=-0.1)


def test_exported_from_the_package():
    assert kp.optimizers.CyclingAdamW is CyclingAdamW
    assert kp.optimizers.OneCycle is OneCycle


def test_a_saved_explainer_resumes_with_its_schedules(tmp_path):
    from tests.helpers import random_images, tiny_explainer, weights_of

    images = random_images(8, seed=4)
    explainer = tiny_explainer()
    recipe = kp.recipes.get("resnet_50_imagenet")
    explainer.compile(optimizer=recipe.optimizer(steps_per_epoch=4))
    explainer.fit(images, epochs=1, batch_size=4, verbose=0)
    path = str(tmp_path / "explainer.keras")
    explainer.save(path)
    restored = keras.saving.load_model(path)  # safe_mode=True
    optimizer = restored.optimizer
    assert isinstance(optimizer, CyclingAdamW)
    assert optimizer.get_config() == explainer.optimizer.get_config()
    assert isinstance(optimizer.beta_1, OneCycle)
    assert int(optimizer.iterations) == 2
    # Both go on from step 2 of the same run: the same weights after.
    for model in (explainer, restored):
        model.fit(images, epochs=1, batch_size=4, shuffle=False, verbose=0)
    for a, b in zip(weights_of(explainer.decoder), weights_of(restored.decoder)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
