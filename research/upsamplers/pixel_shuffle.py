"""Sub-pixel convolution (Shi et al. 2016): a conv to 4·F channels, then depth-to-space.

`icnr=True` initialises the four sub-pixel kernels identically (Aitken et al. 2017), so
at initialisation the output is a nearest-neighbour upsampling, free of checkerboard.
"""

from flax import linen as nn
import jax.numpy as jnp

from research.upsamplers import base


def depth_to_space(x):
  """[B, H, W, 4F] -> [B, 2H, 2W, F]; channel (dy * 2 + dx) * F + f goes to (2i + dy, 2j + dx)."""
  b, h, w, c4 = x.shape
  f = c4 // 4
  x = x.reshape(b, h, w, 2, 2, f).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, 2 * h, 2 * w, f)


class PixelShuffle(base.Upsampler):
  kernel_size: int = 3
  icnr: bool = False

  kind = 'pixel_shuffle'

  @nn.compact
  def __call__(self, x, guide=None):  # x: [B, H, W, C]
    self.check(x, guide)
    f = self.features or x.shape[-1]
    base_init = nn.initializers.lecun_normal()
    if self.icnr:

      def init(key, shape, dtype):
        return jnp.tile(base_init(key, shape[:-1] + (f,), dtype), (1, 1, 1, 4))
    else:
      init = base_init
    k = self.kernel_size
    y = nn.Conv(4 * f, (k, k), padding='SAME', kernel_init=init, name='conv')(x)
    return depth_to_space(y)
