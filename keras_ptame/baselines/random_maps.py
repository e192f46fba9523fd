import numpy as np
from keras import ops

from keras_ptame.utils.maps import normalize_maps
from keras_ptame.utils.validation import check_images


class RandomMaps:
    """Random saliency maps: a floor that every explainer should beat.

    Each map is uniform noise on a `resolution` x `resolution` grid,
    upsampled bilinearly, so that it has blobs of the size real maps have
    (`resolution=None` gives independent noise per pixel). The class is
    ignored.

    Args:
        resolution: optional int. Grid cells per side. Defaults to `7`.
        seed: int. Seed of the noise; the same images get the same maps.
            Defaults to `0`.

    Examples:
    ```python
    import numpy as np
    from keras_ptame.baselines import RandomMaps

    images = np.zeros((2, 16, 16, 3), "uint8")
    maps = RandomMaps(seed=0).explain(images)   # (2, 16, 16) in [0, 1]
    ```
    """

    def __init__(self, resolution=7, seed=0):
        if resolution is not None and (
            not isinstance(resolution, (int, np.integer)) or resolution < 1
        ):
            raise ValueError(
                "`resolution` must be a positive integer or None. "
                f"Received: resolution={resolution!r}"
            )
        self.resolution = resolution
        self.seed = seed

    def explain(self, images, classes=None):
        """Random maps `(N, H, W)` in [0, 1], one per image; `classes` is ignored."""
        images = check_images(images)
        count, height, width = images.shape[:3]
        rng = np.random.default_rng(self.seed)
        if self.resolution is None:
            return normalize_maps(rng.random((count, height, width)))
        grid = rng.random((count, self.resolution, self.resolution, 1)).astype(
            "float32"
        )
        maps = ops.image.resize(
            ops.convert_to_tensor(grid), (height, width), interpolation="bilinear"
        )
        return normalize_maps(ops.convert_to_numpy(maps)[..., 0])
