"""2×2 max-pooling that records where each maximum came from.

The switches are what SegNet keeps instead of the encoder activations: one small
integer per pooling window, `dy * 2 + dx` in row-major order, so that the decoder
can put every value back where it was found.
"""
import jax.numpy as jnp


def _windows(x):
  """[B, H, W, C] -> [B, H/2, W/2, C, 4], window positions in row-major order."""
  b, h, w, c = x.shape
  if h % 2 or w % 2:
    raise ValueError(f'2×2 max-pooling needs even height and width; got {h}×{w}.')
  x = x.reshape(b, h // 2, 2, w // 2, 2, c)
  return x.transpose(0, 1, 3, 5, 2, 4).reshape(b, h // 2, w // 2, c, 4)


def max_pool_with_switches(x):
  """Max-pools `x: [B, H, W, C]` over 2×2 windows, stride 2.

  Returns `(pooled [B, H/2, W/2, C], switches uint8 [B, H/2, W/2, C])`. Ties go to the
  first position in row-major order (as PyTorch's max_pool2d), and the gradient flows
  to that one position only: taking the pooled value through the switch, rather than
  from `max`, keeps jax from spreading it over tied positions (common after ReLU).
  """
  if x.ndim != 4:
    raise ValueError(f'max_pool_with_switches expects [B, H, W, C]; got shape {x.shape}.')
  windows = _windows(x)
  switches = jnp.argmax(windows, axis=-1)  # first maximum on ties
  pooled = jnp.take_along_axis(windows, switches[..., None], axis=-1)[..., 0]
  return pooled, switches.astype(jnp.uint8)


def channel_shared_switches(x):
  """Switches shared by all channels: where the window's summed activation peaks.

  For decoders whose channels do not match the encoder's (FCN upsamples class
  scores, not features), each window keeps one position: the argmax of the
  channel-summed activation. Returns uint8 `[B, H/2, W/2, 1]`.
  """
  return max_pool_with_switches(x.sum(axis=-1, keepdims=True))[1]
