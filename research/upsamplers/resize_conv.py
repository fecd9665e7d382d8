"""Resize-convolution (Odena et al. 2016): nearest ×2, then a 3×3 convolution.

Every output pixel sees the same number of input pixels, so no checkerboard by design.
"""
from typing import Optional

from flax import linen as nn

from research.upsamplers import fixed


class ResizeConv(nn.Module):
  features: Optional[int] = None
  kernel_size: int = 3

  @nn.compact
  def __call__(self, x, switches=None):  # x: [B, H, W, C]
    up = fixed.Nearest()(x)
    k = self.kernel_size
    return nn.Conv(self.features or x.shape[-1], (k, k), padding='SAME', name='conv')(up)
