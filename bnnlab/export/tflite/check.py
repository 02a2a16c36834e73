"""A ``.tflite`` file run in LCE's interpreter against the bnnlab export it was written from.

The file encodes the export's forward pass op by op, so its reference is that forward pass run
op by op (``jax.disable_jit``): each float op rounds once, as TFLite's do. The export's usual
jitted call can differ from it by an ulp where XLA:CPU fuses a multiply and an add into one
FMA; where such an ulp decides a sign (a residual sum exactly 0 op by op, −1.2e-7 fused), the
jitted and op-by-op predictions part. ``jit_ties`` counts those images: bnnlab disagreeing with
itself, not the file with bnnlab; every other image must agree with both.
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import numpy as np

from bnnlab.export import inputs, runtime
from bnnlab.export.tflite import lce


@dataclasses.dataclass(frozen=True)
class Agreement:
    examples: int
    same_argmax: int  # the file vs the export op by op
    max_abs_diff: float  # the same pair
    max_abs_logit: float
    jit_ties: int  # images whose jitted and op-by-op bnnlab predictions differ
    same_argmax_jitted: int  # the file vs the jitted export, over the other images

    @property
    def exact(self) -> bool:
        return (
            self.same_argmax == self.examples
            and self.same_argmax_jitted == self.examples - self.jit_ties
            and self.max_abs_diff <= 1e-5 * max(self.max_abs_logit, 1.0)
        )

    def __str__(self) -> str:
        ties = f" ({self.jit_ties} where bnnlab's jitted call differs from itself)" * (
            self.jit_ties > 0
        )
        return (
            f"LCE interpreter vs the export: {self.same_argmax}/{self.examples} predictions "
            f"equal op by op, {self.same_argmax_jitted}/{self.examples - self.jit_ties} equal to "
            f"the jitted export{ties}; max |logit diff| {self.max_abs_diff:.3g} (max |logit| "
            f"{self.max_abs_logit:.3g})"
        )


def file_batch(path) -> int:
    """The batch size of a ``.tflite`` file's input."""
    import tflite

    model = tflite.Model.GetRootAs(pathlib.Path(path).read_bytes(), 0)
    graph = model.Subgraphs(0)
    return int(graph.Tensors(graph.Inputs(0)).Shape(0))


def op_by_op(packed: runtime.PackedModel, images) -> np.ndarray:
    """The export's logits with every op run on its own (the arithmetic the file encodes)."""
    x = inputs.validate(images, packed.input_shape, packed.manifest.get("input"), check_range=True)
    with jax.disable_jit():
        return np.asarray(packed._forward(packed._float, packed._packed, x, backend="xla"))


def against_export(
    path, packed: runtime.PackedModel, images, reference: bool = True, threads: int = 1
) -> Agreement:
    """Runs ``images`` (unit pixels as the file takes them) through the file in LCE and
    through ``packed``, op by op and jitted."""
    images = np.asarray(images, np.float32)
    got = lce.run(path, images, reference=reference, threads=threads)
    eager = op_by_op(packed, images)
    jitted = np.asarray(packed(images))
    ties = eager.argmax(-1) != jitted.argmax(-1)
    return Agreement(
        examples=len(images),
        same_argmax=int((got.argmax(-1) == eager.argmax(-1)).sum()),
        max_abs_diff=float(np.abs(got - eager).max()),
        max_abs_logit=float(np.abs(eager).max()),
        jit_ties=int(ties.sum()),
        same_argmax_jitted=int((got.argmax(-1) == jitted.argmax(-1))[~ties].sum()),
    )
