"""SegNet-style encoder–decoder (Badrinarayanan et al. 2017).

The encoder's pools record switches; each decoder stage upsamples with the chosen
upsampler (`max_unpool` with those switches is SegNet proper; the others ignore them),
then convolves. No skip connections carry features: only the switches cross over,
which is SegNet's point (memory) and why the upsampler matters so much here. Stage
layout follows VGG-16 (2, 2, 3, 3, 3 convolutions) truncated to `depth` stages.
"""

from flax import linen as nn
import jax.numpy as jnp

from research import upsamplers
from research.models import base
from research.models import layers

_STAGES = (2, 2, 3, 3, 3)


class SegNet(base.PoolingModel):
  upsampler: str = 'max_unpool'
  depth: int = 4

  # SegNet's point: only what the pools leave (the switches) crosses over.
  FEATURE_FIELDS = frozenset()

  @property
  def total_stride(self):
    return 2**self.depth

  @nn.compact
  def __call__(self, x):  # x: [B, H, W, 3] -> [B, H, W, num_classes]
    if not 1 <= self.depth <= len(_STAGES):
      raise ValueError(f'segnet depth must be in 1..{len(_STAGES)}; got {self.depth}.')
    layers.check_input(x, self.total_stride, 'segnet')
    widths = [self.width * min(2**i, 8) for i in range(self.depth)]
    pooled = []
    for i in range(self.depth):
      x = layers.ConvBlock(widths[i], _STAGES[i], self.dtype, self.conv_impl, name=f'enc{i}')(x)
      x, fields = self.downsample(x, f'pool{i}')
      pooled.append(fields)
    for i in reversed(range(self.depth)):
      guide = upsamplers.Guide(**pooled[i])
      x = layers.Upsample(self.upsampler, self.upsampler_options, name=f'up{i}')(x, guide)
      # The decoder's last conv of each stage narrows to the next (shallower) stage's width.
      x = layers.ConvBlock(widths[i], _STAGES[i] - 1, self.dtype, self.conv_impl, name=f'dec{i}')(x)
      x = layers.ConvBlock(
        widths[max(i - 1, 0)], 1, self.dtype, self.conv_impl, name=f'dec{i}_out'
      )(x)
    self.sow('intermediates', base.DECODER_FEATURES, x)  # the evaluator's checkerboard
    return layers.Conv(
      self.num_classes, (1, 1), dtype=self.dtype, conv_impl=self.conv_impl, name='head'
    )(x).astype(jnp.float32)
