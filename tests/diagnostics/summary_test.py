"""The model summary (``bnnlab.summary``) against a hand count: MACs, binary ops, parameters,
memory and energy, for a model-zoo ResNet and a rule-quantized Flax model."""

import pytest

import bnnlab
from bnnlab import models
from bnnlab.diagnostics import summary as summary_lib
from bnnlab.models import QuantSpec


def test_cifar_resnet18_summary_matches_hand_count():
    model = models.get("resnet18_cifar", quant=QuantSpec("recu", "recu_act", "uniform"))
    result = bnnlab.summary(model, (32, 32, 3), print_fn=None)
    # MACs per 32×32 image: H·W of the output × (3·3·C_in) × C_out for every conv.
    stem = 32 * 32 * 27 * 64
    binary, kernels, cin, size = 0, 0, 64, 32
    for c in (64, 128, 256, 512):
        for block in range(2):
            first = block == 0 and c != 64
            size = size // 2 if first else size
            binary += size * size * 9 * cin * c + size * size * 9 * c * c
            kernels += 9 * cin * c + 9 * c * c
            cin = c
    fc = 512 * 10
    assert result.total("macs") == stem + binary + fc == 549_131_264
    assert result.total("binary_ops") == binary == 547_356_672
    assert result.total("params") == 11_005_002
    # Deployed: binary kernels at 1 bit, everything else (stem, α, BN, FC) in float32.
    float_params = 11_005_002 - kernels
    assert result.total("memory_deployed") == pytest.approx(kernels / 8 + 4 * float_params)
    assert result.total("memory_trained") == 4 * 11_005_002
    energy = binary * summary_lib.PJ_BINARY_MAC + (stem + fc) * summary_lib.PJ_FLOAT_MAC
    assert result.total("energy_pj") == pytest.approx(energy)
    text = str(result)
    assert "stage4_block2/conv2" in text and "memory compression 30.3x" in text


def test_summary_of_a_rule_quantized_flax_model():
    import flax.linen as nn

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Conv(8, (3, 3))(x)
            x = nn.Conv(8, (3, 3))(x)
            return nn.Dense(10)(x.mean((1, 2)))

    qmodel = bnnlab.quantize_model(
        Net(), [bnnlab.Rule("Conv_1", "ste_sign", "ste_sign"), bnnlab.Rule(".*")]
    )
    rows = {r.name: r for r in bnnlab.summary(qmodel, (8, 8, 3), print_fn=None).rows}
    assert (rows["Conv_1"].weight_bits, rows["Conv_1"].input_bits) == (1, 1)
    assert rows["Conv_0"].weight_bits == 32 and rows["Conv_1"].binary_ops == 64 * 72 * 8


def test_the_printed_table_is_aligned_with_shapes_counts_and_a_fitting_energy_unit():
    model = models.get("resnet18_cifar", quant=QuantSpec("recu", "recu_act", "uniform"), width=0.25)
    printed = []
    result = bnnlab.summary(model, (8, 8, 1), print_fn=printed.append)
    lines = printed[0].splitlines()
    header = next(line for line in lines if "params" in line and "layer" in line)
    starts = ("stem/", "stage", "head/", "other", "total")
    rows = [line for line in lines if line.lstrip().startswith(starts)]
    assert len(rows) == len(result.rows) + 1 == 19 + 1
    # Right-justified columns end where their header ends, on every row.
    for column, value_of in (("params", lambda r: f"{r.params:,}"), ("MMACs", None)):
        end = header.index(column) + len(column)
        for line, row in zip(rows, result.rows, strict=False):
            if value_of is not None:
                assert line[:end].endswith(value_of(row)), (column, line)
            assert line[end : end + 1] in ("", " "), (column, line)
    assert "8×8×16" in rows[0] and "1×1×128" in rows[-4]
    assert rows[-1].split()[1] == f"{int(result.total('params')):,}"
    # The energy of this small model is tens of nJ: the unit is nJ, and no binary layer reads 0.
    assert "energy nJ" in header and result.energy_unit() == ("nJ", 1e3)
    binary_rows = [line for line in rows if line.lstrip().startswith("stage")]
    assert all(line.split()[-1] not in ("0", "0.00") for line in binary_rows)
    assert "trainable parameters" in lines[-1] and "non-trainable" in lines[-1]
