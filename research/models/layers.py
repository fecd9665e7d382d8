"""Building blocks shared by the architectures."""
from typing import Any, Optional

from flax import linen as nn
import jax.numpy as jnp

from research import upsamplers


def check_input(x, stride: int, arch: str):
  """Clear errors for the two ways an image batch can be wrong for an architecture."""
  if x.ndim != 4 or x.shape[-1] < 1:
    raise ValueError(f'{arch} expects images of shape [B, H, W, C]; got shape {x.shape}.')
  h, w = x.shape[1:3]
  if h % stride or w % stride:
    raise ValueError(f'{arch} has a total stride of {stride}: image size {h}×{w} is not '
                     f'divisible by {stride}. Use a size that is a multiple of {stride} '
                     f'(e.g. {max(stride, (h // stride) * stride)} or {(h // stride + 1) * stride}).')


def groups(features: int) -> int:
  """GroupNorm's group count: the largest divisor of `features` up to 8 (8 for the usual
  power-of-two widths)."""
  return max(g for g in range(1, 9) if features % g == 0)


class ConvBlock(nn.Module):
  """`num_convs` × (3×3 conv, GroupNorm, ReLU). GroupNorm keeps the model stateless
  (no batch statistics to sync across devices) and trains well from scratch."""
  features: int
  num_convs: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    for i in range(self.num_convs):
      x = nn.Conv(self.features, (3, 3), padding='SAME', use_bias=False, dtype=self.dtype,
                  name=f'conv{i}')(x)
      x = nn.GroupNorm(num_groups=groups(self.features), dtype=self.dtype, name=f'norm{i}')(x)
      x = nn.relu(x)
    return x


class Upsample(nn.Module):
  """One ×2 step with the chosen upsampler; `features` (None: the upsampler's default)
  is passed to it, options forwarded as they are."""
  upsampler: str
  options: Optional[dict] = None
  features: Optional[int] = None

  @nn.compact
  def __call__(self, x, switches=None):
    options = dict(self.options or {})
    if self.features is not None:
      options['features'] = self.features
    return upsamplers.build(self.upsampler, name='up', **options)(x, switches=switches)
