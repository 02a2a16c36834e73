"""Small JPEG-encoded test images, for the ImageNet input path that decodes encoded records."""

import io

import numpy as np
from PIL import Image


def jpeg(h, w, seed, quality=95):
    """A smooth colour image with texture, JPEG-encoded (natural-image-like for the codec)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * xx + seed), np.cos(5 * yy), np.sin(4 * (xx + yy))], -1)
    image = np.clip(127 + 100 * base + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="JPEG", quality=quality)
    return out.getvalue()
