"""What an export accepts: the images the model was trained on, checked before they reach it.

An export records how its training images were normalised (``manifest["input"]``: the
``bnnlab.data.augment`` normalisation name, its mean/std, and the interval ``[lo, hi]`` that
maps unit pixels into). A call is refused with ``InvalidImages`` when the images

- are not real floating point (uint8 pixels, integers, booleans, complex numbers): the model
  takes normalised floats, so raw pixels would give confident nonsense;
- hold NaN or ±inf;
- fall outside ``[lo, hi]`` (beyond a margin of 1e-3 of its width, for rounding in user
  preprocessing): pixels in 0–255, or normalised twice. Out-of-distribution inputs on purpose
  (noise, adversarial probes) pass with ``check_inputs=False``.

Under the caller's ``jax.jit`` (images are tracers) only the dtype and shape can be checked.
An export written without a normalisation (``export.export`` called without one) has no
recorded range; its dtype and finiteness are still checked.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bnnlab.data import augment

RANGE_MARGIN = 1e-3


class InvalidImages(ValueError):
    """Images an export cannot take: wrong dtype, not finite, or outside the trained range."""


def spec(normalization: str) -> dict:
    """The manifest's ``input`` entry for images normalised with ``normalization``."""
    mean, std = augment.NORMALIZATIONS[normalization]
    lo, hi = augment.input_range(normalization)
    return dict(normalization=normalization, mean=list(mean), std=list(std), range=[lo, hi])


def _how(input_spec: dict | None) -> str:
    if not input_spec:
        return "normalised as in training"
    name = input_spec["normalization"]
    return (
        f"normalised as in training: x / 255 per pixel, then (x − {input_spec['mean']}) / "
        f"{input_spec['std']} per channel, i.e. bnnlab.data.augment.normalize("
        f"augment.to_unit_float(pixels), {name!r})"
    )


@jax.jit
def _stats(images):
    finite = jnp.isfinite(images)
    return (
        jnp.sum(~finite),
        jnp.min(jnp.where(finite, images, jnp.inf)),
        jnp.max(jnp.where(finite, images, -jnp.inf)),
    )


def validate(images, input_shape: tuple[int, ...], input_spec: dict | None, check_range: bool):
    """``images`` as a float32 array, or ``InvalidImages`` saying what is wrong."""
    dtype = np.dtype(getattr(images, "dtype", None) or np.asarray(images).dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        hint = " (raw pixels?)" if jnp.issubdtype(dtype, jnp.integer) else ""
        raise InvalidImages(
            f"Expected floating-point images {_how(input_spec)}; got dtype {dtype}{hint}."
        )
    shape = tuple(np.shape(images))
    if len(shape) != 4 or shape[1:] != tuple(input_shape):
        raise InvalidImages(
            f"Expected images of shape (batch, {', '.join(map(str, input_shape))}), got {shape}."
        )
    images = jnp.asarray(images, jnp.float32)
    if images.size == 0 or isinstance(images, jax.core.Tracer):
        return images  # inside the caller's jit the values are unknown: dtype and shape only
    bad, lo, hi = (float(v) for v in jax.device_get(_stats(images)))
    if bad:
        raise InvalidImages(f"{int(bad)} of {images.size} image values are NaN or infinite.")
    if check_range and input_spec:
        want_lo, want_hi = input_spec["range"]
        margin = RANGE_MARGIN * (want_hi - want_lo)
        if lo < want_lo - margin or hi > want_hi + margin:
            raise InvalidImages(
                f"Image values span [{lo:.4g}, {hi:.4g}], outside [{want_lo:.4g}, {want_hi:.4g}], "
                f"the range of the training images ({_how(input_spec)}). Pass "
                "check_inputs=False to run out-of-range images on purpose."
            )
    return images
