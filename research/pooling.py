"""2×2 max-pooling that records where each maximum came from.

The switches are what SegNet keeps instead of the encoder activations: one small
integer per pooling window, `dy * 2 + dx` in row-major order, so that the decoder
can put every value back where it was found.
"""

import jax.numpy as jnp


def max_pool_with_switches(x):
  """Max-pools `x: [B, H, W, C]` over 2×2 windows, stride 2.

  Returns `(pooled [B, H/2, W/2, C], switches uint8 [B, H/2, W/2, C])`. Ties go to the
  first position in row-major order (as PyTorch's max_pool2d): a tournament of strict
  comparisons over the four strided views, so the gradient flows to that one position
  only (jax's `max` would spread it over tied positions, common after ReLU) and the
  channels stay the minor axis (no transposes: as fast as a plain max-pool).
  """
  if x.ndim != 4:
    raise ValueError(f'max_pool_with_switches expects [B, H, W, C]; got shape {x.shape}.')
  b, h, w, c = x.shape
  if h % 2 or w % 2:
    raise ValueError(f'2×2 max-pooling needs even height and width; got {h}×{w}.')
  v = x.reshape(b, h // 2, 2, w // 2, 2, c)
  top_right = v[:, :, 0, :, 1] > v[:, :, 0, :, 0]
  top = jnp.where(top_right, v[:, :, 0, :, 1], v[:, :, 0, :, 0])
  bottom_right = v[:, :, 1, :, 1] > v[:, :, 1, :, 0]
  bottom = jnp.where(bottom_right, v[:, :, 1, :, 1], v[:, :, 1, :, 0])
  lower = bottom > top
  pooled = jnp.where(lower, bottom, top)
  switches = jnp.where(lower, 2 + bottom_right, top_right.astype(jnp.int32))
  return pooled, switches.astype(jnp.uint8)


def channel_shared_switches(x):
  """Switches shared by all channels: where the window's summed activation peaks.

  For decoders whose channels do not match the encoder's (FCN upsamples class
  scores, not features), each window keeps one position: the argmax of the
  channel-summed activation. Returns uint8 `[B, H/2, W/2, 1]`.
  """
  return max_pool_with_switches(x.sum(axis=-1, keepdims=True))[1]
