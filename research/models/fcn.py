"""FCN-32s / 16s / 8s (Long et al. 2015) with a VGG-style encoder.

Differences from the paper, on purpose:
- The paper upsamples FCN-32s's class scores with one ×32 deconvolution (kernel 64,
  bilinear-initialised), and 16s/8s's last step with one ×16/×8. Here every ×2^k step
  is k chained ×2 steps of the chosen upsampler (its own parameters per step), so that
  all upsamplers, including max-unpooling with the switches of each matching pool, are
  compared on the same footing. With `bilinear` the chain equals one bilinear ×2^k
  resize up to border handling.
- Upsampling acts on the K class-score maps, as in the paper, so every upsampler is
  asked for K output channels; `bilinear_additive` therefore sums groups of one
  channel and coincides with `bilinear` here (it differs in U-Net and SegNet).
- Max-unpooling needs one switch per window, but the scores' channels are not the
  pool's channels: FCN uses channel-shared switches (the argmax of the window's summed
  activation, `research.pooling.channel_shared_switches`).
- The encoder is VGG-16's layout (2, 2, 3, 3, 3 convolutions; widths w, 2w, 4w, 8w, 8w)
  with GroupNorm, and fc6/fc7 are a 3×3 and a 1×1 convolution of width 16w: a scaled-down
  VGG trained from scratch rather than an ImageNet-pretrained one.
- The pools are `pool`'s (base.PoolingModel; max by default). With index pooling, the
  indexnet upsampler needs indices shared by all channels (holistic index blocks), for
  the same reason as the switches above.
- score_pool4 and score_pool3 start at zero, as in the paper, so 16s/8s start out as 32s.
"""

from typing import Tuple

from flax import linen as nn
import jax.numpy as jnp

from research import upsamplers
from research.models import base
from research.models import layers


class FCN(base.PoolingModel):
  skips: int = 2  # 0: FCN-32s, 1: FCN-16s, 2: FCN-8s
  stage_convs: Tuple[int, ...] = (2, 2, 3, 3, 3)  # VGG-16's convolutions per stage

  total_stride = 32
  FEATURE_FIELDS = frozenset({'skip'})  # stage features; and what `pool` leaves

  def pool_kind(self) -> str:
    """As base.PoolingModel's, refusing per-channel indices for an upsampler that uses them:
    the scores' K channels are not the pool's."""
    pool = super().pool_kind()
    options = dict(self.pool_options or {})
    if (
      pool == 'index'
      and options.get('indexnet', 'holistic') != 'holistic'
      and 'indices' in upsamplers.get(self.upsampler).needs
    ):
      raise ValueError(
        f"fcn upsamples {self.num_classes} class-score maps, not the pool's "
        f'channels, so {self.upsampler} needs channel-shared indices: '
        f"pool_options indexnet='holistic' (got {options['indexnet']!r})."
      )
    return pool

  @nn.compact
  def __call__(self, x):  # x: [B, H, W, 3] -> [B, H, W, num_classes]
    name = {0: 'fcn32s', 1: 'fcn16s', 2: 'fcn8s'}[self.skips]
    layers.check_input(x, self.total_stride, name)
    if len(self.stage_convs) != 5:
      raise ValueError(
        f'{name} has five pooling stages; stage_convs must have 5 entries, '
        f'got {tuple(self.stage_convs)}.'
      )
    stages, pools, pooled = [], [], []
    for i, n in enumerate(self.stage_convs):
      x = layers.ConvBlock(
        self.width * min(2**i, 8), n, self.dtype, self.conv_impl, name=f'stage{i + 1}'
      )(x)
      stages.append(x)  # stage1 .. stage5, before pooling
      x, fields = self.downsample(x, f'pool{i + 1}', channel_shared=True)
      pooled.append(fields)
      pools.append(x)  # pool1 .. pool5
    x = layers.ConvBlock(16 * self.width, 1, self.dtype, self.conv_impl, name='fc6')(x)
    x = nn.relu(
      layers.Conv(16 * self.width, (1, 1), dtype=self.dtype, conv_impl=self.conv_impl, name='fc7')(
        x
      )
    )
    k = self.num_classes
    score = layers.Conv(k, (1, 1), dtype=self.dtype, conv_impl=self.conv_impl, name='score_fr')(
      x
    )  # 1/32
    level = 5  # current scores are at 1/2^level
    for _ in range(self.skips):  # fuse pool4 (16s), then pool3 (8s)
      score = self._up(score, stages[level - 1], pooled[level - 1], f'up{level}')
      level -= 1
      score = score + layers.Conv(
        k,
        (1, 1),
        kernel_init=nn.initializers.zeros,
        dtype=self.dtype,
        conv_impl=self.conv_impl,
        name=f'score_pool{level}',
      )(pools[level - 1])
    while level > 0:
      score = self._up(score, stages[level - 1], pooled[level - 1], f'up{level}')
      level -= 1
    return score.astype(jnp.float32)

  def _up(self, x, skip, fields, name):
    guide = upsamplers.Guide(skip=skip, **fields)
    return layers.Upsample(
      self.upsampler, self.upsampler_options, features=self.num_classes, name=name
    )(x, guide)
