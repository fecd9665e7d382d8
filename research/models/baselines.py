"""The two ways to label every pixel that came before encoder–decoders (design_costs).

`SlidingWindow`: a small CNN classifies the centre pixel of the patch around every pixel
(Ciresan et al. 2012); nothing is shared between overlapping patches, so the cost is
one patch classification per pixel. It can classify chosen pixels only (`pixels`): that
is how such classifiers were trained, on sampled patches (config.loss.pixels_per_image),
since a dense training step would pay for every pixel's patch. `FullRes`: the U-Net's
depth of 3×3 convolutions (2 per block × (2·depth + 1) blocks) at full resolution, no
downsampling, so every layer pays for every pixel. Neither upsamples: `upsampler` is accepted
(models.build passes it
to every architecture) and unused.
"""

from flax import linen as nn
import jax
import jax.numpy as jnp

from research.models import base
from research.models import layers


class SlidingWindow(base.SegmentationModel):
  """x: [B, H, W, 3] -> [B, H, W, num_classes]: for each pixel, the `patch`×`patch` window
  centred on it (zero padded at the border) goes through two 'VALID' conv pairs with a
  2×2 max-pool between them, then a hidden dense layer and the classifier."""

  upsampler: str = 'nearest'  # unused
  width: int = 32
  patch: int = 16
  hidden: int = 1536

  @nn.compact
  def __call__(self, x, pixels=None):
    """pixels: optional [B, N] flat indices (row · W + column) of the pixels to classify;
    the logits are then [B, N, num_classes], equal to the dense output at those pixels."""
    layers.check_input(x, 1, 'sliding_window')
    b, h, w, c = x.shape
    p = self.patch
    if p < 14 or p % 2:
      raise ValueError(
        f'sliding_window needs an even patch >= 14 (two 3×3 valid convs, a 2×2 '
        f'pool and two more must leave a window); got patch={p}.'
      )
    pad = [(p // 2 - 1, p // 2), (p // 2 - 1, p // 2)]  # the window around a pixel
    if pixels is None:
      # [B, H, W, C·p·p], channel-major within each patch: the window around every pixel.
      patches = jax.lax.conv_general_dilated_patches(
        x, (p, p), (1, 1), pad, dimension_numbers=('NHWC', 'OIHW', 'NHWC')
      )
      z = patches.reshape(b * h * w, c, p, p).transpose(0, 2, 3, 1)  # [B·H·W, p, p, C]
      out_shape = (b, h, w, self.num_classes)
    else:
      padded = jnp.pad(x, [(0, 0), *pad, (0, 0)])
      window = lambda image, i, j: jax.lax.dynamic_slice(image, (i, j, 0), (p, p, c))
      z = jax.vmap(jax.vmap(window, (None, 0, 0)))(padded, pixels // w, pixels % w)
      out_shape = (*pixels.shape, self.num_classes)
      z = z.reshape(-1, p, p, c)  # [B·N, p, p, C]
    for i, features in enumerate((self.width,) * 2 + (2 * self.width,) * 2):
      if i == 2:  # two 'VALID' 3×3 convolutions on each side of a 2×2 max-pool
        z = nn.max_pool(z, (2, 2), (2, 2))
      conv = layers.Conv(
        features,
        (3, 3),
        padding='VALID',
        dtype=self.dtype,
        conv_impl=self.conv_impl,
        name=f'conv{i}',
      )
      z = nn.relu(conv(z))
    z = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name='hidden')(z.reshape(len(z), -1)))
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name='head')(z)
    return logits.reshape(out_shape).astype(jnp.float32)


class FullRes(base.SegmentationModel):
  """x: [B, H, W, 3] -> [B, H, W, num_classes]: 2·(2·depth + 1) 3×3 conv/GroupNorm/ReLU
  layers of `width` channels at full resolution (the U-Net's count for this depth), then
  a 1×1 head."""

  upsampler: str = 'nearest'  # unused
  width: int = 54
  depth: int = 4

  @nn.compact
  def __call__(self, x):
    layers.check_input(x, 1, 'fullres')
    for block in range(2 * self.depth + 1):
      x = layers.ConvBlock(self.width, 2, self.dtype, self.conv_impl, name=f'block{block}')(x)
    return layers.Conv(
      self.num_classes, (1, 1), dtype=self.dtype, conv_impl=self.conv_impl, name='head'
    )(x).astype(jnp.float32)
