"""Max-unpooling (SegNet): values go back where the matching max-pool found them."""

import jax
import jax.numpy as jnp

from research.upsamplers import base
from research.upsamplers import fixed


@jax.custom_vjp
def max_unpool(x, switches):
  """x: [B, H, W, C], switches uint8 [B, H, W, C|1] -> [B, 2H, 2W, C].

  Built directly as [B, H, 2, W, 2, C], channels minor: no transposes, so as cheap
  as nearest plus one comparison per output.
  """
  b, h, w, c = x.shape
  positions = jnp.arange(4, dtype=switches.dtype).reshape(2, 1, 2, 1)  # dy * 2 + dx
  hit = switches[:, :, None, :, None, :] == positions  # [B, H, 2, W, 2, C|1]
  out = jnp.where(hit, x[:, :, None, :, None, :], jnp.zeros((), x.dtype))
  return fixed.interleave(out)


def _max_unpool_fwd(x, switches):
  return max_unpool(x, switches), switches


def _max_unpool_bwd(switches, g):
  """Gathers each window's cotangent at its switch from the four strided views. The
  autodiff of `where` would materialise a full-size zero-filled cotangent first: 2×
  slower than nearest's backward; this matches it."""
  b, h2, w2, c = g.shape
  v = g.reshape(b, h2 // 2, 2, w2 // 2, 2, c)
  gx = jnp.where(
    switches == 0,
    v[:, :, 0, :, 0],
    jnp.where(
      switches == 1, v[:, :, 0, :, 1], jnp.where(switches == 2, v[:, :, 1, :, 0], v[:, :, 1, :, 1])
    ),
  )
  return gx, None


max_unpool.defvjp(_max_unpool_fwd, _max_unpool_bwd)


class MaxUnpool(base.ParameterFree):
  """Places `x[b, i, j, c]` at window position `switches[b, i, j, c]`; zeros elsewhere.

  `switches` come from `research.pooling.max_pool_with_switches` (per channel, shape
  `[B, H, W, C]`) or `channel_shared_switches` (shape `[B, H, W, 1]`, broadcast).
  """

  kind = 'max_unpool'
  needs = ('switches',)

  def upsample(self, x, guide):
    switches = guide.switches
    b, h, w, c = x.shape
    if switches.shape[:3] != (b, h, w) or switches.shape[3] not in (1, c):
      raise ValueError(
        f'max_unpool switches of shape {switches.shape} do not match x of '
        f'shape {x.shape}; expected [{b}, {h}, {w}, {c} or 1].'
      )
    return max_unpool(x, switches)
