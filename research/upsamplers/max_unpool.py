"""Max-unpooling (SegNet): values go back where the matching max-pool found them."""
from typing import Optional

from flax import linen as nn
import jax.numpy as jnp

from research.upsamplers import fixed


class MaxUnpool(nn.Module):
  """Places `x[b, i, j, c]` at window position `switches[b, i, j, c]`; zeros elsewhere.

  `switches` come from `research.pooling.max_pool_with_switches` (per channel, shape
  `[B, H, W, C]`) or `channel_shared_switches` (shape `[B, H, W, 1]`, broadcast).
  """
  features: Optional[int] = None

  @nn.compact
  def __call__(self, x, switches=None):  # x: [B, H, W, C]
    fixed.check_input(x, self.features, 'max_unpool')
    if switches is None:
      raise ValueError('max_unpool needs the switches of the matching max-pool: '
                       'call it as module(x, switches=switches).')
    b, h, w, c = x.shape
    if switches.shape[:3] != (b, h, w) or switches.shape[3] not in (1, c):
      raise ValueError(f'max_unpool switches of shape {switches.shape} do not match x of '
                       f'shape {x.shape}; expected [{b}, {h}, {w}, {c} or 1].')
    # Built directly as [B, H, 2, W, 2, C], channels minor: no transposes, so as cheap as
    # nearest plus one comparison per output.
    positions = jnp.arange(4, dtype=switches.dtype).reshape(2, 1, 2, 1)  # dy * 2 + dx
    hit = switches[:, :, None, :, None, :] == positions  # [B, H, 2, W, 2, C|1]
    out = jnp.where(hit, x[:, :, None, :, None, :], jnp.zeros((), x.dtype))
    return fixed.interleave(out)
