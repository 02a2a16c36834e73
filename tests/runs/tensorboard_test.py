"""TensorBoard: besides the scalars, histograms of the binary layers' latent weights at every
diagnostics step and the run's hyper-parameters with its final metrics (HParams)."""

import pathlib
import struct

import pytest
from tensorboardX.proto import event_pb2

from bnnlab import train

import recipes


def _events(directory: pathlib.Path) -> list:
    """Every Event in the TFRecord event files directly under ``directory``."""
    out = []
    for path in sorted(directory.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            record = data[offset + 12 : offset + 12 + length]  # after length and its CRC
            offset += 12 + length + 4
            event = event_pb2.Event()
            event.ParseFromString(record)
            out.append(event)
    return out


@pytest.mark.slow
def test_histograms_of_binary_layers_and_hparams(tmp_path):
    config = recipes.config("smoke")
    config.progress_bar = False
    result = train.train_and_evaluate(config, tmp_path)
    events = _events(tmp_path / "tensorboard")
    histograms = {
        (v.tag, e.step): v.histo for e in events for v in e.summary.value if v.HasField("histo")
    }
    every = config.diagnostics_every_steps
    expected_steps = list(range(every, config.total_steps + 1, every))
    for layer, size in (("stage1_unit1/conv", 3 * 3 * 16 * 16), ("stage2_unit1/conv", None)):
        steps = sorted(s for tag, s in histograms if tag == f"weights/{layer}")
        assert steps == expected_steps, layer
        if size is not None:
            assert histograms[(f"weights/{layer}", every)].num == size
    assert not any("stem" in tag for tag, _ in histograms)  # float layers are not binary
    hparams = [
        v
        for e in _events(tmp_path / "tensorboard" / "hparams")
        for v in e.summary.value
        if v.metadata.plugin_data.plugin_name == "hparams"
    ]
    assert hparams, "no HParams summary"
    scalars = {
        v.tag: v.simple_value
        for e in _events(tmp_path / "tensorboard" / "hparams")
        for v in e.summary.value
        if v.HasField("simple_value")
    }
    assert scalars["hparam/accuracy"] == pytest.approx(result["accuracy"])
