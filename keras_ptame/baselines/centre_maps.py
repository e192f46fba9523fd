import numpy as np

from keras_ptame.utils.maps import normalize_maps
from keras_ptame.utils.validation import check_images


class CentreMaps:
    """The centre prior: the same Gaussian bump, centred, for every image.

    Photographed objects sit near the middle of the frame, so this map
    already scores well on localisation; an explainer is only informative
    where it beats it. The class is ignored.

    Args:
        sigma: float. Standard deviation of the Gaussian as a fraction of
            the image's height and width. Defaults to `0.25`.

    Examples:
    ```python
    import numpy as np
    from keras_ptame.baselines import CentreMaps

    maps = CentreMaps().explain(np.zeros((2, 16, 16, 3), "uint8"))   # peak at the centre
    ```
    """

    def __init__(self, sigma=0.25):
        if not sigma > 0:
            raise ValueError(f"`sigma` must be positive. Received: sigma={sigma}")
        self.sigma = float(sigma)

    def explain(self, images, classes=None):
        """The centre map `(N, H, W)` in [0, 1] for each image; `classes` is ignored."""
        images = check_images(images)
        count, height, width = images.shape[:3]
        # Pixel centres in [-0.5, 0.5], so the bump is centred for odd and
        # even sizes alike.
        y = (np.arange(height) + 0.5) / height - 0.5
        x = (np.arange(width) + 0.5) / width - 0.5
        bump = np.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * self.sigma**2))
        return normalize_maps(np.broadcast_to(bump, (count, height, width)))
