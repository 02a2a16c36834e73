"""Model summary in the style of larq's ``summary``: per layer the weight and activation bit
widths, parameters, memory as trained and as deployed (bit-packed), MACs, binary operations,
additions (adder layers) and an energy estimate; totals at the bottom.

Energy uses the 45 nm, 0.9 V per-operation table AdderNet papers cite (Horowitz, "Computing's
energy problem", ISSCC 2014): 32-bit float add 0.9 pJ and multiply 3.7 pJ; 8-bit int add
0.03 pJ and multiply 0.2 pJ (the 8-bit figures are an unverified recollection,
docs/addernet.md). The table has no 1-bit entry: a binary MAC (XNOR + popcount-accumulate) is
costed as one 8-bit add, an assumption stated here rather than a measurement.
"""

from __future__ import annotations

import dataclasses
import inspect
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from bnnlab import quant
from bnnlab.layers import adder, quantized

PJ_FLOAT_MAC = 3.7 + 0.9  # fp32 multiply + add
PJ_INT8_MAC = 0.2 + 0.03  # int8 multiply + add (k-bit weights/activations, 2 ≤ k ≤ 8)
PJ_BINARY_MAC = 0.03  # assumption: XNOR + popcount-accumulate ≈ one 8-bit add
PJ_ADDER_MAC = 2 * 0.9  # AdderNet: subtract + accumulate in fp32 (|·| is a sign-bit op)


@dataclasses.dataclass
class Row:
    name: str
    kind: str
    weight_bits: int
    input_bits: int
    params: int
    quantized_params: int  # the kernel entries stored at weight_bits
    macs: int  # per example
    binary_ops: int
    adds: int
    output_shape: tuple[int, ...] = ()  # one example's

    @property
    def memory_trained(self) -> float:
        """Bytes as trained: every parameter in float32."""
        return 4.0 * self.params

    @property
    def memory_deployed(self) -> float:
        """Bytes deployed: quantized kernels at their bit width, everything else float32."""
        return self.quantized_params * self.weight_bits / 8 + 4.0 * (
            self.params - self.quantized_params
        )

    @property
    def energy_pj(self) -> float:
        if self.adds:
            return self.adds / 2 * PJ_ADDER_MAC
        if self.binary_ops:
            return self.binary_ops * PJ_BINARY_MAC
        if max(self.weight_bits, self.input_bits) <= 8:
            return self.macs * PJ_INT8_MAC
        return self.macs * PJ_FLOAT_MAC


@dataclasses.dataclass
class Summary:
    rows: list[Row]
    non_trainable: int = 0  # BatchNorm statistics, quantizer state

    def total(self, field: str) -> float:
        return sum(getattr(r, field) for r in self.rows)

    def energy_unit(self) -> tuple[str, float]:
        """The unit (and pJ per unit) that fits the total: nJ below 1 µJ, µJ below 1 mJ."""
        total = self.total("energy_pj")
        return ("nJ", 1e3) if total < 1e6 else ("µJ", 1e6) if total < 1e9 else ("mJ", 1e9)

    def table(self):
        """The summary as a ``rich`` table (aligned columns, totals in its footer)."""
        from rich import box
        from rich.table import Table

        unit, per = self.energy_unit()
        trained, deployed = self.total("memory_trained"), self.total("memory_deployed")
        macs, binary = self.total("macs"), self.total("binary_ops")
        table = Table(box=box.SIMPLE, show_footer=True, pad_edge=False)
        columns = [
            ("layer", "total", "left"),
            ("output", "", "left"),
            ("W bits", "", "right"),
            ("A bits", "", "right"),
            ("params", f"{int(self.total('params')):,}", "right"),
            ("MB fp32", f"{trained / 1e6:.3f}", "right"),
            ("MB packed", f"{deployed / 1e6:.3f}", "right"),
            ("MMACs", f"{macs / 1e6:.2f}", "right"),
            ("M binary", _mega(binary), "right"),
            ("M adds", _mega(self.total("adds")), "right"),
            (f"energy {unit}", f"{self.total('energy_pj') / per:.3g}", "right"),
        ]
        for name, footer, justify in columns:
            table.add_column(name, footer=footer, justify=justify, no_wrap=True)
        for r in self.rows:
            table.add_row(
                r.name,
                "×".join(map(str, r.output_shape)) if r.output_shape else "",
                _bits(r.weight_bits),
                _bits(r.input_bits),
                f"{r.params:,}",
                f"{r.memory_trained / 1e6:.3f}",
                f"{r.memory_deployed / 1e6:.3f}",
                f"{r.macs / 1e6:.2f}",
                _mega(r.binary_ops),
                _mega(r.adds),
                f"{r.energy_pj / per:.3g}",
            )
        return table

    def notes(self) -> str:
        trained, deployed = self.total("memory_trained"), self.total("memory_deployed")
        macs, binary = self.total("macs"), self.total("binary_ops")
        return (
            f"{int(self.total('params')):,} trainable parameters + {self.non_trainable:,} "
            f"non-trainable values (BatchNorm statistics, quantizer state); memory compression "
            f"{trained / max(deployed, 1):.1f}x; {100 * binary / max(macs, 1):.1f}% of MACs "
            "binary; per example; energy from the 45 nm table (bnnlab.diagnostics.summary)"
        )

    def __str__(self) -> str:
        return f"{render(self.table())}\n{self.notes()}"


def render(table) -> str:
    """A ``rich`` table as plain text (no colour, no wrapping, no blank lines), for logs."""
    import io

    from rich.console import Console

    out = io.StringIO()
    Console(file=out, width=250, color_system=None, soft_wrap=False).print(table)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines() if line.strip())


def _bits(bits: int) -> str:
    return "fp32" if bits >= 32 else str(bits)


def _mega(n: float) -> str:
    return f"{n / 1e6:.2f}" if n else "-"


def _precision(q) -> int:
    q = quant.resolve(q)
    return 32 if q is None else q.precision


def _call_kwargs(model) -> dict:
    try:
        parameters = inspect.signature(type(model).__call__).parameters
    except (TypeError, ValueError):
        return {}
    return {"train": False} if "train" in parameters else {}


def summary(model, input_shape, *, print_fn=print, **call_kwargs) -> Summary:
    """Builds (and prints) the summary of ``model`` for one input of ``input_shape``.

    ``input_shape`` is one example's shape, e.g. ``(32, 32, 3)``. Works for bnnlab models and
    for plain Linen models (their Conv/Dense are float unless wrapped by ``quantize_model``).
    """
    records: list[Row] = []
    rules = getattr(model, "rule_for", None)

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        module = context.module
        if context.method_name != "__call__" or not isinstance(
            module, (quantized.QuantConv, quantized.QuantDense, nn.Conv, nn.Dense, adder.AdderConv)
        ):
            return out
        path = "/".join(module.path)
        if isinstance(module, (quantized.QuantConv, quantized.QuantDense)):
            kernel_q, input_q = module._quantizers()
        elif rules is not None and rules(path) is not None:
            rule = model.rules[rules(path)]
            kernel_q, input_q = rule.kernel, rule.inputs
        else:
            kernel_q = input_q = None
        params = module.variables.get("params", {})
        kernel = params["kernel"]
        n_params = sum(x.size for x in jax.tree.leaves(params))
        if isinstance(module, (quantized.QuantConv, nn.Conv, adder.AdderConv)):
            macs = math.prod(out.shape[1:]) * math.prod(kernel.shape[:-1])
        else:
            macs = math.prod(out.shape[1:]) * kernel.shape[0]
        w_bits, a_bits = _precision(kernel_q), _precision(input_q)
        records.append(
            Row(
                name=path,
                kind=type(module).__name__,
                weight_bits=w_bits,
                input_bits=a_bits,
                params=n_params,
                quantized_params=kernel.size if w_bits < 32 else 0,
                macs=macs,
                binary_ops=macs if w_bits == 1 and a_bits == 1 else 0,
                # An adder "MAC" is a subtraction and an accumulation: two additions.
                adds=2 * macs if isinstance(module, adder.AdderConv) else 0,
                output_shape=tuple(out.shape[1:]),
            )
        )
        return out

    shape = (1, *input_shape)
    kwargs = {**_call_kwargs(model), **call_kwargs}
    with nn.intercept_methods(record):
        variables = jax.eval_shape(
            lambda: model.init(jax.random.key(0), jnp.zeros(shape, jnp.float32), **kwargs)
        )
    counted = sum(r.params for r in records)
    total = sum(x.size for x in jax.tree.leaves(variables.get("params", {})))
    if total > counted:
        records.append(
            Row("other (BatchNorm, activations, …)", "other", 32, 32, total - counted, 0, 0, 0, 0)
        )
    non_trainable = sum(
        x.size
        for c, v in variables.items()
        if c in ("batch_stats", quantized.STATE_COLLECTION)
        for x in jax.tree.leaves(v)
    )
    result = Summary(records, non_trainable)
    if print_fn is not None:
        print_fn(str(result))
    return result
