"""Tracing the explainer's serving signatures into a SavedModel (TensorFlow)."""

import keras

SIGNATURES = (
    "serving_default",
    "explain_classes",
    "explain_top_k",
    "explain_encoded",
    "explain_uint8",
    "explain_uint8_maps",
)
# The channel counts that image files decode to (grayscale, RGB): only an
# explainer of such images gets `explain_encoded`. A 4-channel PNG is RGBA
# (alpha, not a fourth band), and multispectral formats are not decoded by
# `tf.io`: those explainers take pixels through the other signatures.
ENCODED_CHANNELS = (1, 3)


def exported_signatures(channels):
    """The signatures exported for an explainer of `channels`-channel images."""
    if channels in ENCODED_CHANNELS:
        return SIGNATURES
    return tuple(name for name in SIGNATURES if name != "explain_encoded")


def write_saved_model(explainer, path, image_size):
    """Traces the signatures and writes the SavedModel (TensorFlow backend).

    Not atomic by itself: `export_saved_model` calls it on a staging path.
    """
    import tensorflow as tf

    if keras.config.backend() != "tensorflow":
        raise RuntimeError(
            "`write_saved_model` traces TensorFlow graphs and needs "
            f"KERAS_BACKEND=tensorflow. Received: {keras.config.backend()!r}"
        )
    functions = _serving_functions(explainer, image_size)
    serve, serve_classes, serve_top_k, serve_encoded, serve_uint8_maps = functions
    height, width = image_size
    # The explainer's own channel count (learnt when it was built).
    shape = (None, height, width, explainer.input_channels)
    float_images = tf.TensorSpec(shape, tf.float32, name="images")
    uint8_images = tf.TensorSpec(shape, tf.uint8, name="images")
    classes_spec = tf.TensorSpec((None,), tf.int32, name="classes")
    encoded_spec = tf.TensorSpec((None,), tf.string, name="encoded")
    k_spec = tf.TensorSpec((), tf.int32, name="k")
    root = tf.__internal__.tracking.AutoTrackable()
    # The `tf.Variable`s themselves (not their Keras wrappers) must hang off
    # the saved object: TF1-style loaders (TF Serving, `saved_model_cli`)
    # find a function's captured variables only through them.
    root.variables = [variable.value for variable in explainer.variables]
    root.serving_default = serve
    root.explain_classes = serve_classes
    root.explain_top_k = serve_top_k
    root.explain_uint8_maps = serve_uint8_maps
    signatures = {
        "serving_default": serve.get_concrete_function(float_images),
        "explain_classes": serve_classes.get_concrete_function(
            float_images, classes_spec
        ),
        "explain_top_k": serve_top_k.get_concrete_function(float_images, k_spec),
        # A quarter of the float payload, for gRPC clients that hold uint8.
        "explain_uint8": serve.get_concrete_function(uint8_images),
        # And a quarter of the maps' bytes in the reply.
        "explain_uint8_maps": serve_uint8_maps.get_concrete_function(uint8_images),
    }
    if "explain_encoded" in exported_signatures(explainer.input_channels):
        root.explain_encoded = serve_encoded
        signatures["explain_encoded"] = serve_encoded.get_concrete_function(
            encoded_spec
        )
    # Traced for uint8 as well, so that Python callers of the loaded
    # functions may pass either.
    serve_classes.get_concrete_function(uint8_images, classes_spec)
    serve_top_k.get_concrete_function(uint8_images, k_spec)
    tf.saved_model.save(root, path, signatures=signatures)
    return path


def _serving_functions(explainer, image_size):
    """The `tf.function`s behind the signatures: images, images and classes,
    images and `k`, encoded image files, images to uint8 maps."""
    import tensorflow as tf

    channels = explainer.input_channels

    def outputs(images, classes=None, top_k=None, maps_dtype=tf.float32):
        result = explainer.explain_batch(
            tf.cast(images, tf.float32), classes, top_k=top_k, dtype=maps_dtype.name
        )
        return {
            "classes": tf.cast(result["classes"], tf.int32),
            "scores": tf.cast(result["scores"], tf.float32),
            "maps": tf.cast(result["maps"], maps_dtype),
            "evidence": tf.cast(result["evidence"], tf.float32),
            "flat": tf.cast(result["flat"], tf.bool),
            "misranked": tf.cast(result["misranked"], tf.bool),
        }

    @tf.function(autograph=False)
    def serve(images):
        return outputs(_checked_images(images, image_size, channels))

    @tf.function(autograph=False)
    def serve_classes(images, classes):
        images = _checked_images(images, image_size, channels)
        return outputs(images, _checked_classes(classes, images, explainer.num_classes))

    @tf.function(autograph=False)
    def serve_top_k(images, k):
        images = _checked_images(images, image_size, channels)
        return outputs(images, top_k=_checked_k(k, explainer.num_classes))

    def decode(data):
        image = tf.io.decode_image(data, channels=channels, expand_animations=False)
        return tf.image.resize(tf.cast(image, tf.float32), image_size, "bilinear")

    @tf.function(autograph=False)
    def serve_encoded(encoded):
        # Checked at run time: a loaded signature does not check its inputs.
        encoded = tf.ensure_shape(encoded, (None,))
        with tf.control_dependencies([_assert_not_empty(encoded, "encoded")]):
            encoded = tf.identity(encoded)
        spec = tf.TensorSpec((*image_size, channels), tf.float32)
        return outputs(tf.map_fn(decode, encoded, fn_output_signature=spec))

    @tf.function(autograph=False)
    def serve_uint8_maps(images):
        images = _checked_images(images, image_size, channels)
        return outputs(images, maps_dtype=tf.uint8)

    return serve, serve_classes, serve_top_k, serve_encoded, serve_uint8_maps


def _checked_images(images, image_size, channels=3):
    """`images` asserted `(B, H, W, channels)` and in [0, 255] inside the graph.

    A loaded signature (`tf.saved_model.load(path).signatures[...]`, TF
    Serving) runs whatever tensor it is fed: its declared shape is not
    checked, and a rank-2 or rank-3 tensor aborts the process inside the
    convolutions. `tf.ensure_shape` is a run-time op (a static assert would
    be folded away against the declared shape); a bad request gets an
    `InvalidArgumentError` instead.
    """
    import tensorflow as tf

    images = tf.ensure_shape(images, (None, *image_size, channels))
    checks = [_assert_not_empty(images, "images")]
    if images.dtype != tf.uint8:
        # NaN fails both comparisons, so it is refused too.
        message = "`images` must hold raw pixels in [0, 255] (not NaN or infinite)"
        checks += [
            tf.debugging.assert_greater_equal(
                images, tf.constant(0, images.dtype), message=message
            ),
            tf.debugging.assert_less_equal(
                images, tf.constant(255, images.dtype), message=message
            ),
        ]
    with tf.control_dependencies(checks):
        return tf.identity(images)


def _assert_not_empty(tensor, name):
    """An assert that `tensor` holds at least one item (an empty batch fails
    deep inside the convolutions with a message about filter depths)."""
    import tensorflow as tf

    return tf.debugging.assert_positive(
        tf.shape(tensor)[0], message=f"`{name}` must hold at least one item"
    )


def _checked_classes(classes, images, num_classes):
    """`classes` as int32, asserted in range and one per image inside the graph.

    An out-of-range class would otherwise read another class's map (negative
    indices wrap around), which is worse than an error.
    """
    import tensorflow as tf

    classes = tf.cast(tf.ensure_shape(classes, (None,)), tf.int32)
    checks = [
        tf.debugging.assert_non_negative(
            classes, message="`classes` must be non-negative"
        ),
        tf.debugging.assert_less(
            classes,
            tf.constant(int(num_classes), tf.int32),
            message=f"`classes` must be below num_classes={num_classes}",
        ),
        tf.debugging.assert_equal(
            tf.shape(classes)[0],
            tf.shape(images)[0],
            message="`classes` must hold one class per image",
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(classes)


def _checked_k(k, num_classes):
    """`k` as a scalar int32, asserted in [1, num_classes] inside the graph
    (`tf.math.top_k` would refuse a larger `k` with a message about the
    input's last dimension, and take 0 without complaint)."""
    import tensorflow as tf

    k = tf.cast(tf.ensure_shape(k, ()), tf.int32)
    message = f"`k` must be in [1, num_classes={num_classes}]"
    checks = [
        tf.debugging.assert_positive(k, message=message),
        tf.debugging.assert_less_equal(
            k, tf.constant(int(num_classes), tf.int32), message=message
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(k)
