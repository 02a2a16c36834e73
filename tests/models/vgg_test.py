"""VGG-small: its parameter count against a hand count of the architecture."""

import itertools

from bnnlab import models
from bnnlab.models import QuantSpec

from param_count import conv3, count

RECU = QuantSpec("recu", "recu_act", "uniform")


def test_vgg_small_hand_count():
    chans = (3, 128, 128, 256, 256, 512, 512)
    convs = sum(conv3(a, b) for a, b in itertools.pairwise(chans))
    bn = 2 * sum(chans[1:])
    alpha = sum(chans[2:])  # conv0 is float and has no α
    fc = 512 * 4 * 4 * 10 + 10  # 8192 → 10 for 32×32 inputs
    assert count(models.get("vgg_small", quant=RECU), 32) == convs + bn + alpha + fc == 4_661_770
