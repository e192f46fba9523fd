"""The size of the images an explainer takes, checked before any compiled call."""

import keras


class ImageSized:
    """`PTAME`'s image size: a mixin of `PTAME`.

    Reads `backbone`, `extractor` (their `fixed_input_size`) and
    `_built_size`, and builds the explainer on first use.
    """

    @property
    def input_size(self):
        """`(height, width)` of the images this explainer takes, or `None`.

        The size its classifier or auxiliary network was built for, if one of
        them accepts only one size; otherwise the size the explainer itself
        was built (and trained) on; `None` if neither is known yet.
        """
        for part in (self.backbone, self.extractor):
            if part.fixed_input_size is not None:
                return part.fixed_input_size
        return self._built_size

    def ensure_built(self, shape):
        """Checks the image size the networks accept, and builds on first use.

        Args:
            shape: the shape of a batch of images, `(B, H, W, 3)`.

        Raises:
            ValueError: a network accepts only another size.

        Checked here, on the host, because a size error raised inside a
        compiled `predict` or `fit` is opaque, and on JAX leaves the model's
        variables detached. Under TensorFlow, a new size also starts new
        compiled functions: Keras would retrace the old ones with the size
        left open, and `keras.ops.image.resize` (the maps' upsampling) needs
        it known.
        """
        size = tuple(shape)[1:3]
        if keras.config.backend() == "tensorflow" and None not in size:
            if getattr(self, "_traced_size", size) != size:
                self.train_function = self.predict_function = None
                self.test_function = None
            self._traced_size = size
        # A network whose preprocessor resizes to its size takes any size.
        for part in (self.backbone, self.extractor):
            expected = part.fixed_input_size
            if expected is not None and expected != size:
                name = getattr(part.network, "name", part.name)
                raise ValueError(
                    f"`images` must be {expected[0]}x{expected[1]} pixels, the size "
                    f"`{name}` was built for. Received: images of size "
                    f"{size[0]}x{size[1]}. Resize them first."
                )
        if not self.built:
            self.build((None, *tuple(shape)[1:]))
