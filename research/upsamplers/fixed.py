"""Parameter-free unpooling: nearest neighbour and bed of nails."""
from typing import Optional

from flax import linen as nn
import jax.numpy as jnp


def check_input(x, features: Optional[int], name: str):
  """Rank check shared by all upsamplers; fixed ones cannot change the channel count."""
  if x.ndim != 4:
    raise ValueError(f'{name} expects x of shape [B, H, W, C]; got shape {x.shape}.')
  if features is not None and features != x.shape[-1]:
    raise ValueError(f'{name} has no parameters and keeps the {x.shape[-1]} input channels; '
                     f'got features={features} (use None or {x.shape[-1]}).')


def interleave(x):
  """[B, H, 2, W, 2, C] -> [B, 2H, 2W, C]: the 2×2 block of each input pixel."""
  b, h, _, w, _, c = x.shape
  return x.reshape(b, 2 * h, 2 * w, c)


class Nearest(nn.Module):
  """Each input pixel fills its 2×2 output block."""
  features: Optional[int] = None

  @nn.compact
  def __call__(self, x, switches=None):  # x: [B, H, W, C]
    check_input(x, self.features, 'nearest')
    b, h, w, c = x.shape
    return interleave(jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c)))


class BedOfNails(nn.Module):
  """Each input pixel at the top-left of its 2×2 block, zeros elsewhere."""
  features: Optional[int] = None

  @nn.compact
  def __call__(self, x, switches=None):  # x: [B, H, W, C]
    check_input(x, self.features, 'bed_of_nails')
    x = x[:, :, None, :, None, :]
    return interleave(jnp.pad(x, ((0, 0), (0, 0), (0, 1), (0, 0), (0, 1), (0, 0))))
