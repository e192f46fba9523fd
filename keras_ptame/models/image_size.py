"""The size of the images an explainer takes, checked before any compiled call."""

import keras

from keras_ptame.utils.validation import check_image_shape


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

    @property
    def input_channels(self):
        """The channel count of the images this explainer takes, or `None`.

        Learnt when it is built, from the images (1 for grayscale, 3 for
        RGB, 4 or more for multispectral images); before that, the count
        its classifier (or else its auxiliary network) declares, if any.
        """
        channels = getattr(self, "_built_channels", None)
        if channels is None and not self.built:
            channels = self.backbone.input_channels or self.extractor.input_channels
        return channels

    def ensure_built(self, shape):
        """Checks the image size the networks accept, and builds on first use.

        Args:
            shape: the shape of a batch of images, `(B, H, W, C)`.

        Raises:
            ValueError: a network accepts only another size, or the
                explainer was built for another channel count.

        Checked here, on the host, because a size error raised inside a
        compiled `predict` or `fit` is opaque, and on JAX leaves the model's
        variables detached. Under TensorFlow, a new size also starts new
        compiled functions: Keras would retrace the old ones with the size
        left open, and `keras.ops.image.resize` (the maps' upsampling) needs
        it known.
        """
        if self.built:
            check_image_shape(shape, channels=self.input_channels)
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
