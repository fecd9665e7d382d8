"""Resize-convolution (Odena et al. 2016): nearest ×2, then a 3×3 convolution.

Every output pixel sees the same number of input pixels, so no checkerboard by design.
"""

from flax import linen as nn

from research.upsamplers import base
from research.upsamplers import fixed


class ResizeConv(base.Upsampler):
  kernel_size: int = 3

  kind = 'resize_conv'

  @nn.compact
  def __call__(self, x, guide=None):  # x: [B, H, W, C]
    self.check(x, guide)
    up = fixed.nearest_2x(x)
    k = self.kernel_size
    return nn.Conv(self.features or x.shape[-1], (k, k), padding='SAME', name='conv')(up)
