"""U-Net (Ronneberger et al. 2015): `depth` poolings, concatenation skips.

Each decoder step: a 1×1 convolution to the skip's width (the paper's up-convolution
halves the channels; here that halving is separated from the upsampling so that every
upsampler sees the same input), the chosen ×2 upsampler (max-unpooling with the
switches of the matching pool, whose channels now match), concatenation with the
skip, then two 3×3 convolutions. 'SAME' padding, so output size equals input size.
"""

from flax import linen as nn
import jax.numpy as jnp

from research import upsamplers
from research.models import base
from research.models import layers


class UNet(base.PoolingModel):
  depth: int = 4

  FEATURE_FIELDS = frozenset({'skip'})  # and what `pool` leaves (base.PoolingModel)
  SKIP_LIKE_X = True  # the 1×1 reduce gives x the skip's width

  @property
  def total_stride(self):
    return 2**self.depth

  @nn.compact
  def __call__(self, x):  # x: [B, H, W, 3] -> [B, H, W, num_classes]
    layers.check_input(x, self.total_stride, 'unet')
    skips, pooled = [], []
    for level in range(self.depth):
      x = layers.ConvBlock(
        self.width * 2**level, 2, self.dtype, self.conv_impl, name=f'down{level}'
      )(x)
      skips.append(x)
      x, fields = self.downsample(x, f'pool{level}')
      pooled.append(fields)
    x = layers.ConvBlock(
      self.width * 2**self.depth, 2, self.dtype, self.conv_impl, name='bottleneck'
    )(x)
    for level in reversed(range(self.depth)):
      c = self.width * 2**level
      x = layers.Conv(c, (1, 1), dtype=self.dtype, conv_impl=self.conv_impl, name=f'reduce{level}')(
        x
      )
      guide = upsamplers.Guide(skip=skips[level], **pooled[level])
      x = layers.Upsample(self.upsampler, self.upsampler_options, name=f'up{level}')(x, guide)
      x = jnp.concatenate([x, skips[level]], axis=-1)
      x = layers.ConvBlock(c, 2, self.dtype, self.conv_impl, name=f'dec{level}')(x)
    self.sow('intermediates', base.DECODER_FEATURES, x)  # the evaluator's checkerboard
    return layers.Conv(
      self.num_classes, (1, 1), dtype=self.dtype, conv_impl=self.conv_impl, name='head'
    )(x).astype(jnp.float32)
