"""Fixed bilinear ×2 upsampling (half-pixel centres, as `align_corners=False`)."""
from typing import Optional

from flax import linen as nn
import jax

from research.upsamplers import fixed


def bilinear_2x(x):
  """[B, H, W, C] -> [B, 2H, 2W, C]."""
  b, h, w, c = x.shape
  return jax.image.resize(x, (b, 2 * h, 2 * w, c), method='bilinear')


class Bilinear(nn.Module):
  features: Optional[int] = None

  @nn.compact
  def __call__(self, x, switches=None):  # x: [B, H, W, C]
    fixed.check_input(x, self.features, 'bilinear')
    return bilinear_2x(x)
