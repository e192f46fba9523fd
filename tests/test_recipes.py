import dataclasses
import json
import math

import keras
import numpy as np
import pytest

import keras_ptame as kp
from keras_ptame.losses.default import default_loss
from keras_ptame.optimizers.default import default_optimizer
from tests.helpers import random_images, tiny_explainer


def test_the_three_classifiers_of_the_paper_have_recipes():
    assert kp.recipes.names() == [
        "resnet_50_imagenet",
        "vgg_16_imagenet",
        "vit_base_patch16_224_imagenet",
    ]


def test_resnet_recipe_has_the_authors_settings():
    recipe = kp.recipes.get("resnet_50_imagenet")
    assert recipe.loss().get_config() == {
        "ce_coeff": 0.161429,
        "area_coeff": 0.838571,
        "smoothness_coeff": 0.0,
        "smoothness_power": 2.0,
        "border": 0.3,
        "area_power": 0.3,
        "deletion_coeff": 0.0,  # the paper's loss: no deletion term
    }
    assert (recipe.epochs, recipe.batch_size, recipe.image_size) == (1, 32, 224)
    optimizer = recipe.optimizer(steps_per_epoch=100)
    assert isinstance(optimizer, kp.optimizers.CyclingAdamW)
    assert optimizer.amsgrad
    assert optimizer.epsilon == 1e-8
    assert optimizer.weight_decay == pytest.approx(0.000242666)


def test_recipe_optimizer_is_the_authors_adamw_under_one_cycle_lr():
    torch = pytest.importorskip("torch")
    recipe = kp.recipes.get("vgg_16_imagenet")
    optimizer = recipe.optimizer(steps_per_epoch=30)
    parameter = torch.nn.Parameter(torch.zeros(1))
    reference = torch.optim.AdamW(
        [parameter], lr=1e-4, weight_decay=recipe.weight_decay, amsgrad=True
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        reference, max_lr=recipe.learning_rate, total_steps=30
    )
    group = reference.param_groups[0]
    assert (optimizer.epsilon, optimizer.beta_2) == (group["eps"], group["betas"][1])
    assert optimizer.weight_decay == group["weight_decay"] and optimizer.amsgrad
    for step in range(30):
        rate = float(keras.ops.convert_to_numpy(optimizer._learning_rate(step)))
        beta_1 = float(keras.ops.convert_to_numpy(optimizer.beta_1(step)))
        assert rate == pytest.approx(group["lr"], rel=1e-6)
        assert beta_1 == pytest.approx(group["betas"][0], rel=1e-6)
        reference.step()
        scheduler.step()


def test_vit_recipe_has_no_border_and_a_larger_area_power():
    loss = kp.recipes.get("vit_base_patch16_224_imagenet").loss()
    assert loss.border == 0.0 and loss.area_power == 0.5


def test_one_cycle_schedule_rises_then_falls():
    schedule = kp.recipes.get("vgg_16_imagenet").schedule(steps_per_epoch=100)
    rates = [float(keras.ops.convert_to_numpy(schedule(step))) for step in range(100)]
    peak = rates.index(max(rates))
    assert 25 <= peak <= 35
    assert max(rates) == pytest.approx(1e-4, rel=1e-3)
    assert rates[0] < max(rates) / 10 and rates[-1] < max(rates) / 10


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(ValueError, match="resnet_50_imagenet"):
        kp.recipes.get("resnet_51")
    with pytest.raises(ValueError, match="steps_per_epoch"):
        kp.recipes.get("vgg_16_imagenet").schedule(0)


def test_recipe_schedule_is_the_shared_one_cycle():
    recipe = kp.recipes.get("resnet_50_imagenet")
    schedule = recipe.schedule(steps_per_epoch=40)
    shared = kp.recipes.one_cycle(recipe.learning_rate, 40 * recipe.epochs)
    for step in (0, 5, 12, 20, 39):
        assert float(keras.ops.convert_to_numpy(schedule(step))) == pytest.approx(
            float(keras.ops.convert_to_numpy(shared(step)))
        )


def test_one_cycle_warms_up_then_decays_to_almost_nothing():
    schedule = kp.recipes.one_cycle(2e-3, total_steps=50, warmup_fraction=0.2)
    rates = [float(keras.ops.convert_to_numpy(schedule(step))) for step in range(51)]
    assert rates[0] == pytest.approx(2e-3 / 25, rel=1e-3)
    # The warm-up ends at step 0.2 * 50 - 1, as in PyTorch.
    assert rates.index(max(rates)) == 9
    assert max(rates) == pytest.approx(2e-3, rel=1e-3)
    # PyTorch's final_div_factor: the last rate is the first one / 1e4.
    assert rates[-2] == pytest.approx(2e-3 / 25 / 1e4, rel=1e-5)
    assert rates[-1] == rates[-2]  # past the end it stays there
    # A cosine warm-up, not a linear one.
    low, high = 2e-3 / 25, 2e-3
    cosine = (high + low) / 2 - (high - low) / 2 * math.cos(math.pi * 5 / 9)
    assert rates[5] == pytest.approx(cosine, rel=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"peak": 1e-3, "total_steps": 0}, "total_steps"),
        ({"peak": 1e-3, "total_steps": 2.5}, "total_steps"),
        ({"peak": 0.0, "total_steps": 10}, "peak"),
        ({"peak": 1e-3, "total_steps": 10, "warmup_fraction": 1.5}, "warmup"),
    ],
)
def test_one_cycle_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kp.recipes.one_cycle(**kwargs)


# Issue 22, cases 8, 11 and 12
@pytest.mark.parametrize(
    "change, message",
    [
        ({"ce_coeff": float("nan")}, r"`ce_coeff` must be a finite number >= 0"),
        ({"learning_rate": float("inf")}, r"`learning_rate` must be a finite"),
        ({"learning_rate": 0.0}, r"learning_rate=0.0"),
        ({"epochs": "2"}, r"`epochs` must be a positive integer.*epochs='2'"),
        ({"batch_size": 2.5}, r"`batch_size` must be a positive integer"),
        ({"warmup_fraction": 1.5}, r"`warmup_fraction` must be .*<= 1"),
    ],
)
def test_a_recipe_with_a_bad_number_is_refused_naming_the_file_and_field(
    tmp_path, change, message
):
    fields = json.loads(kp.recipes.get("resnet_50_imagenet").to_json())
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps({**fields, **change}))
    with pytest.raises(ValueError, match=rf"recipe.json.*{message}"):
        kp.recipes.load(str(path))
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(kp.recipes.get("resnet_50_imagenet"), **change)


# Issue 22, cases 11 and 12
def test_a_recipe_file_that_lacks_a_field_or_is_not_json_is_refused_by_name(
    tmp_path,
):
    fields = json.loads(kp.recipes.get("resnet_50_imagenet").to_json())
    del fields["ce_coeff"]
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(fields))
    with pytest.raises(ValueError, match=r"recipe.json' lacks the fields \['ce_coeff'"):
        kp.recipes.load(str(path))
    path.write_text('{"name": "x", "ce_coeff": ')
    with pytest.raises(ValueError, match="recipe.json' is not valid JSON"):
        kp.recipes.load(str(path))


# Issue 23: any keras-hub classifier trains: its recipe when there is one, the defaults otherwise.
def test_for_classifier_gives_the_recipe_or_the_package_defaults(tmp_path):
    assert kp.recipes.for_classifier("vgg_16_imagenet") is kp.recipes.get(
        "vgg_16_imagenet"
    )
    path = tmp_path / "tuned.json"
    path.write_text(kp.recipes.get("resnet_50_imagenet").to_json())
    assert kp.recipes.for_classifier(str(path)) == kp.recipes.get("resnet_50_imagenet")

    recipe = kp.recipes.for_classifier("efficientnet_b0_ra_imagenet")
    assert isinstance(recipe, kp.recipes.DefaultRecipe)
    assert (recipe.name, recipe.epochs, recipe.batch_size) == (
        "efficientnet_b0_ra_imagenet",
        1,
        32,
    )
    # The same settings as compile() without an optimizer or a loss.
    assert recipe.loss().get_config() == default_loss().get_config()
    optimizer = recipe.optimizer(steps_per_epoch=10)
    expected = default_optimizer()
    assert type(optimizer) is type(expected)
    for key in ("learning_rate", "amsgrad", "epsilon", "weight_decay"):
        assert optimizer.get_config()[key] == expected.get_config()[key]
    with pytest.raises(ValueError, match="name"):
        kp.recipes.for_classifier(None)


# Issue 23: the defaults train a tiny explainer as a recipe does.
def test_default_recipe_trains_an_explainer():
    recipe = kp.recipes.for_classifier("some_other_classifier")
    explainer = tiny_explainer()
    explainer.compile(optimizer=recipe.optimizer(steps_per_epoch=2), loss=recipe.loss())
    images = random_images(4)
    history = explainer.fit(images, epochs=recipe.epochs, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
