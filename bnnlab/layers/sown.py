"""What bnnlab's layers sow, by name: the contract between the layers that write these Flax
collections and the training step and diagnostics that read them.

A collection is only collected when the caller makes it mutable in ``model.apply``; otherwise
``sow`` is a no-op, so layers pay nothing for it in ordinary training and inference.
"""

# Collected by the training step while flip tracking is on: per binary layer, the codes its
# forward pass computed with (``bnnlab.diagnostics.tracking``).
TRACKING = "tracking"
KERNEL_CODES = "kernel_positive"  # bool, True where a weight quantized to its positive code

# Collected by the diagnostics step: statistics of binarised inputs (Flax's usual collection).
INTERMEDIATES = "intermediates"
INPUT_BALANCE = "input_positive_fraction"  # fraction of +1 in a layer's binarised input
