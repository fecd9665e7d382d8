"""Bilinear additive upsampling (Wojna et al. 2017): bilinear ×2, then sum channel groups.

Parameter-free and channel-reducing: every `C / features` consecutive channels are
summed, so a decoder gets fewer channels without a learned projection.
"""

from research.upsamplers import base
from research.upsamplers import bilinear


class BilinearAdditive(base.ParameterFree):
  """`features` output channels (default C / group_size); C must divide evenly."""

  group_size: int = 4

  kind = 'bilinear_additive'
  keeps_channels = False  # it sums channel groups: fewer channels out, still no weights

  def upsample(self, x, guide):  # x: [B, H, W, C] -> [B, 2H, 2W, features]
    b, h, w, c = x.shape
    f = self.features or c // self.group_size
    if f < 1 or c % f:
      raise ValueError(
        f'bilinear_additive sums groups of channels: {c} input channels '
        f'cannot be split into {f} output channels (features must divide {c}).'
      )
    up = bilinear.bilinear_2x(x)
    return up.reshape(b, 2 * h, 2 * w, f, c // f).sum(axis=-1)
