"""The sanity checks' setting: sizes, data and the demo's training recipes.

The classifier, the auxiliary network, the random-label classifier and the
P-TAME explainers, each trained by the demo's recipe on the synthetic shapes
(`keras_ptame.datasets`) with fewer images and epochs (`SETTINGS`).
"""

import time

import numpy as np

# The demo's data and recipes with fewer images and epochs, so that the ten
# P-TAME trainings (one per cascade step and one for the random-label
# classifier) fit in about ten minutes on two CPU cores.
SETTINGS = {
    "image_size": 64,
    "num_classes": 6,
    # The classifier's and auxiliary network's training images (the demo:
    # 5,000 and 5 and 4 epochs), with a "none" class as in the demo.
    "train_count": 2000,
    "classifier_epochs": 5,
    "auxiliary_epochs": 4,
    # P-TAME's training images and epochs at every step (the demo: 5,000
    # images, 3 epochs), the demo's learning rate and loss.
    "explainer_count": 1000,
    "explainer_epochs": 2,
    # The random-label classifier: this many of the classifier's training
    # images, labels permuted, trained until it fits them.
    "shuffled_count": 500,
    "shuffled_epochs": 60,
    "test_count": 64,
    "rise_masks": 500,
    "batch_size": 32,
    "seed": 0,
}
QUICK = {
    "train_count": 256,
    "classifier_epochs": 1,
    "auxiliary_epochs": 1,
    "explainer_count": 64,
    "explainer_epochs": 1,
    "shuffled_count": 64,
    "shuffled_epochs": 2,
    "test_count": 8,
    "rise_masks": 50,
}


# === Training, the demo's recipes ===


def make_data(settings):
    """Training images (with the demo's "none" class) and held-out images."""
    from keras_ptame import demo
    from keras_ptame.datasets import synthetic

    config = demo.DemoConfig(
        image_size=settings["image_size"],
        num_classes=settings["num_classes"],
        train_count=settings["train_count"],
        test_count=settings["test_count"],
        seed=settings["seed"],
    )
    images, labels, _ = config.draw_shapes()
    test_images, test_labels, test_masks = config.draw_shapes(held_out=True)
    # The "none" class as the demo draws it (`demo.phases._make_data`).
    none = synthetic.make_negatives(
        max(1, settings["train_count"] // settings["num_classes"]),
        image_size=settings["image_size"],
        num_classes=settings["num_classes"],
        seed=settings["seed"] + 20_000,
    )
    return {
        "explainer_images": images[: settings["explainer_count"]],
        "images": np.concatenate([images, none]),
        "labels": np.concatenate(
            [labels, np.full(len(none), settings["num_classes"], "int32")]
        ),
        "test": (test_images, test_labels, test_masks),
    }


def train_network(part, images, labels, epochs, settings, seed_offset=0):
    """The demo's classifier or auxiliary CNN, trained by the demo's recipe;
    returns it and its accuracy on its training images."""
    import keras

    from keras_ptame import demo
    from keras_ptame.recipes import one_cycle

    keras.utils.set_random_seed(settings["seed"] + seed_offset)
    build = demo.build_classifier if part == "classifier" else demo.build_auxiliary
    model = build(settings["image_size"], settings["num_classes"] + 1)
    steps = -(-len(images) // settings["batch_size"]) * epochs
    # A wrapper sharing the layers keeps `model` itself uncompiled.
    trainer = keras.Model(model.inputs, model.outputs)
    trainer.compile(
        optimizer=keras.optimizers.Adam(one_cycle(3e-3, steps)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    trainer.fit(
        images,
        labels,
        epochs=epochs,
        batch_size=settings["batch_size"],
        shuffle=True,
        verbose=0,
    )
    predicted = model.predict(images, batch_size=128, verbose=0).argmax(-1)
    return model, float(np.mean(predicted == labels))


def ptame_maker(auxiliary, images, settings):
    """`make_explainer` for P-TAME: the demo's recipe, trained on `images`
    for each classifier it is given (the same classifier object reuses its
    explainer); notes each one's training time in `.seconds` and keeps
    each classifier's explainer in `.trained`."""
    trained, seconds = {}, []

    def make_explainer(classifier):
        if id(classifier) in trained:
            return trained[id(classifier)][1]
        clock = time.perf_counter()
        explainer = train_ptame(classifier, auxiliary, images, settings)
        # The classifier is kept beside its explainer, so that its id is not
        # reused by another.
        trained[id(classifier)] = (classifier, explainer)
        seconds.append(time.perf_counter() - clock)
        return explainer

    make_explainer.seconds = seconds
    make_explainer.trained = trained
    return make_explainer


def train_ptame(classifier, auxiliary, images, settings, decoder=None):
    """A P-TAME explainer trained by the demo's recipe on `images`; with
    `decoder` (the decoder's initial weights), built and given those weights
    before training, the random state at training's start being the same as
    without (`--decoder-seeds`)."""
    import keras_ptame as kp
    from keras_ptame import demo
    from keras_ptame.recipes import one_cycle_adamw

    explainer = new_ptame(classifier, auxiliary, settings, settings["seed"] + 2)
    if decoder is not None:
        explainer.build((None,) + tuple(images.shape[1:]))
        explainer.decoder.set_weights(decoder)
    epochs = settings["explainer_epochs"]
    steps = -(-len(images) // settings["batch_size"]) * epochs
    explainer.compile(
        optimizer=one_cycle_adamw(
            demo.DemoConfig().explainer_learning_rate,
            steps,
            demo.EXPLAINER_WEIGHT_DECAY,
        ),
        loss=kp.PerturbationLoss(**demo.LOSS),
    )
    explainer.fit(
        images,
        epochs=epochs,
        batch_size=settings["batch_size"],
        shuffle=True,
        verbose=0,
    )
    return explainer


def new_ptame(classifier, auxiliary, settings, seed):
    """An untrained P-TAME explainer, the random state seeded with `seed`."""
    import keras

    import keras_ptame as kp
    from keras_ptame import demo

    keras.utils.set_random_seed(seed)
    return kp.PTAME(
        classifier,
        kp.AuxiliaryExtractor(auxiliary, layer_names=demo.AUXILIARY_LAYERS),
        num_classes=settings["num_classes"] + 1,
    )


# === The checks' networks ===


def train_networks(settings, data, log):
    """The classifier, the auxiliary network and the random-label classifier,
    with their accuracies."""
    log("Training the classifier and the auxiliary network...")
    images, labels = data["images"], data["labels"]
    classifier, train_accuracy = train_network(
        "classifier", images, labels, settings["classifier_epochs"], settings
    )
    auxiliary, _ = train_network(
        "auxiliary", images, labels, settings["auxiliary_epochs"], settings, 1
    )
    test_images, test_labels, _ = data["test"]

    def held_out(model):
        predicted = model.predict(test_images, verbose=0).argmax(-1)
        return float(np.mean(predicted == test_labels))

    log(f"  classifier: train accuracy {train_accuracy:.3f}")
    log("Training the same architecture on permuted labels...")
    rng = np.random.default_rng(settings["seed"] + 30_000)
    chosen = rng.permutation(len(images))[: settings["shuffled_count"]]
    permuted = rng.permutation(labels[chosen])
    shuffled, shuffled_accuracy = train_network(
        "classifier",
        images[chosen],
        permuted,
        settings["shuffled_epochs"],
        settings,
        seed_offset=3,
    )
    log(f"  random-label classifier: train accuracy {shuffled_accuracy:.3f}")
    networks = {"classifier": classifier, "auxiliary": auxiliary, "shuffled": shuffled}
    # The random-label classifier's images and labels, for `--auxiliary-variants`.
    networks["shuffled_data"] = (images[chosen], permuted)
    return networks, {
        "classifier_train_accuracy": train_accuracy,
        "classifier_held_out_accuracy": held_out(classifier),
        "random_label_train_accuracy": shuffled_accuracy,
        "random_label_held_out_accuracy": held_out(shuffled),
    }
