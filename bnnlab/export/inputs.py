"""What an export accepts: images as the dataset gives them, preprocessed by the export itself
exactly as in evaluation, and checked before they reach the model.

An export records how its run preprocessed test images (``manifest["input"]``: the
``bnnlab.data.augment`` normalisation name, its mean/std, the interval ``[lo, hi]`` that unit
pixels map into, the eval transform and image size). Calling it:

- **pixels** (the default): uint8 in 0–255, or floats in [0, 1] (the embedded digits, TFDS
  images decoded to unit floats). The export applies the run's eval preprocessing (resize,
  ``augment.normalize``), so raw test images give the run's accuracy. Floats outside [0, 1]
  are refused: already normalised images need ``normalized=True``.
- **normalized=True**: images already preprocessed as in training; values must lie in
  ``[lo, hi]``.

Either way ``InvalidImages`` refuses non-real dtypes (integers other than uint8 pixels,
booleans, complex), NaN or ±inf, values outside the expected range (beyond a margin of 1e-3 of
its width; ``check_inputs=False`` skips only this check, for out-of-distribution inputs on
purpose) and a wrong shape. Under the caller's ``jax.jit`` (tracers) only dtype and shape are
checked, and pixels go through the same preprocessing in ``jax.numpy``. An export written
without a normalisation (``export.export`` called without one) takes images as they are.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bnnlab.data import augment

RANGE_MARGIN = 1e-3


class InvalidImages(ValueError):
    """Images an export cannot take: wrong dtype, not finite, or outside the trained range."""


def spec(normalization: str, transform: str = "", image_size: int | None = None) -> dict:
    """The manifest's ``input`` entry for a run whose test images went through
    ``augment.eval_preprocess(…, transform, normalization, image_size)``."""
    mean, std = augment.NORMALIZATIONS[normalization]
    lo, hi = augment.input_range(normalization)
    return dict(
        normalization=normalization,
        mean=list(mean),
        std=list(std),
        range=[lo, hi],
        transform=transform,
        image_size=image_size,
    )


def _how(input_spec: dict | None) -> str:
    if not input_spec:
        return "as the model was trained on"
    name = input_spec["normalization"]
    return (
        f"(x − {input_spec['mean']}) / {input_spec['std']} per channel of unit pixels x, i.e. "
        f"bnnlab.data.augment.normalize(augment.to_unit_float(pixels), {name!r})"
    )


@jax.jit
def _stats(images):
    finite = jnp.isfinite(images)
    return (
        jnp.sum(~finite),
        jnp.min(jnp.where(finite, images, jnp.inf)),
        jnp.max(jnp.where(finite, images, -jnp.inf)),
    )


def _check_values(images, want, what: str, check_range: bool, hint: str) -> None:
    if images.size == 0 or isinstance(images, jax.core.Tracer):
        return  # inside the caller's jit the values are unknown: dtype and shape only
    bad, lo, hi = (float(v) for v in jax.device_get(_stats(jnp.asarray(images, jnp.float32))))
    if bad:
        raise InvalidImages(f"{int(bad)} of {images.size} image values are NaN or infinite.")
    if check_range and want is not None:
        want_lo, want_hi = want
        margin = RANGE_MARGIN * (want_hi - want_lo)
        if lo < want_lo - margin or hi > want_hi + margin:
            raise InvalidImages(
                f"Image values span [{lo:.4g}, {hi:.4g}], outside [{want_lo:.4g}, {want_hi:.4g}], "
                f"the range of {what}. {hint}Pass check_inputs=False to run out-of-range "
                "images on purpose."
            )


def _pixels_to_model(images, input_spec: dict):
    """The run's eval preprocessing of pixel images (NumPy, or jax.numpy under a jit)."""
    if not isinstance(images, jax.core.Tracer):
        batch = {"image": np.asarray(images), "label": np.zeros(len(images), np.int32)}
        out = augment.eval_preprocess(
            batch,
            transform=input_spec.get("transform", ""),
            normalization=input_spec["normalization"],
            image_size=input_spec.get("image_size"),
        )
        return jnp.asarray(out["image"], jnp.float32)
    x = images.astype(jnp.float32) / 255.0 if images.dtype == jnp.uint8 else images
    size = input_spec.get("image_size")
    if size and x.shape[1] != size:
        factor = size // x.shape[1]
        if input_spec.get("transform") == "imagenet" or factor * x.shape[1] != size:
            raise InvalidImages(
                f"Under jax.jit an export resizes pixels only by whole factors; pass images "
                f"of {size}×{size} preprocessed as in training with normalized=True."
            )
        x = jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)
    mean = jnp.asarray(input_spec["mean"], jnp.float32)
    std = jnp.asarray(input_spec["std"], jnp.float32)
    return (x - mean) / std


def validate(
    images,
    input_shape: tuple[int, ...],
    input_spec: dict | None,
    check_range: bool,
    normalized: bool = False,
):
    """The model's float32 input for ``images``, or ``InvalidImages`` saying what is wrong."""
    dtype = np.dtype(getattr(images, "dtype", None) or np.asarray(images).dtype)
    pixels = bool(input_spec) and not normalized
    if not jnp.issubdtype(dtype, jnp.floating) and not (pixels and dtype == np.uint8):
        if pixels:
            want = "pixels (uint8 in 0–255, or floats in [0, 1])"
        else:
            want = f"floating-point images normalised {_how(input_spec)}"
        hint = " (raw pixels? call without normalized=True)" if dtype == np.uint8 else ""
        raise InvalidImages(f"Expected {want}; got dtype {dtype}{hint}.")
    if not isinstance(images, jax.core.Tracer):
        images = np.asarray(images)
    if images.ndim != 4:
        raise InvalidImages(f"Expected a batch of images (batch, H, W, C), got {images.shape}.")
    if pixels:
        if dtype != np.uint8:
            _check_values(
                images,
                (0.0, 1.0),
                "pixels",
                check_range,
                "Images already normalised as in training need normalized=True. ",
            )
        elif not isinstance(images, jax.core.Tracer):
            _check_values(images, None, "pixels", False, "")
        images = _pixels_to_model(images, input_spec)
    shape = tuple(images.shape)
    if shape[1:] != tuple(input_shape):
        raise InvalidImages(
            f"Expected images of shape (batch, {', '.join(map(str, input_shape))})"
            + (" after the recorded resize" if pixels and input_spec.get("image_size") else "")
            + f", got {shape}."
        )
    images = jnp.asarray(images, jnp.float32)
    if not pixels:
        want = input_spec["range"] if input_spec else None
        _check_values(images, want, f"the training images ({_how(input_spec)})", check_range, "")
    return images
