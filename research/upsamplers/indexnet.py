"""IndexNet (Lu et al., ICCV 2019): learned indices for pooling and the matching upsampling.

An index block (`research.models.index_pool.IndexPool`, encoder side) looks at the feature
x: [B, 2H, 2W, C] before pooling and predicts four logits per 2×2 window, per channel or
shared by all channels. With y = sigmoid(logits) and z = softmax of y over the window,
the encoder pools `4 · avgpool(z ⊙ x)` (the z-weighted sum of each window, `index_pool`)
and hands y to the decoder, whose ×2 step (`IndexUnpool`, registry name 'indexnet') is
`y ⊙ nearest(x)` (`index_unpool`; the official decoder multiplies by no extra factor).
Entry k of a window's four sits at (2i + k // 2, 2j + k % 2), the order of the max-pool
switches: one-hot y and z are max-unpooling and max-pooling, uniform z is average pooling.
Official implementation: poppinace/indexnet_matting, scripts/hlindex.py (index blocks)
and scripts/hlmobilenetv2.py (pooling and decoder use).
"""

from flax import linen as nn

from research.upsamplers import base
from research.upsamplers import fixed


def to_windows(y):
  """[B, H, W, C', 4] -> [B, 2H, 2W, C']: entry k of window (i, j) goes to
  (2i + k // 2, 2j + k % 2) (a pixel shuffle)."""
  b, h, w, c, _ = y.shape
  return y.reshape(b, h, w, c, 2, 2).transpose(0, 1, 4, 2, 5, 3).reshape(b, 2 * h, 2 * w, c)


def index_pool(x, z):
  """x: [B, 2H, 2W, C], encoder indices z: [B, 2H, 2W, C|1] -> [B, H, W, C]: the z-weighted
  sum of each 2×2 window (the official `4 · avg_pool2d(z ⊙ x)`)."""
  b, h2, w2, c = x.shape
  prod = (x * z).reshape(b, h2 // 2, 2, w2 // 2, 2, c)
  return prod.sum(axis=(2, 4))


def index_unpool(x, indices):
  """x: [B, H, W, C], decoder indices: [B, 2H, 2W, C|1] -> [B, 2H, 2W, C]:
  indices ⊙ nearest(x)."""
  return indices * fixed.nearest_2x(x)


class IndexUnpool(base.Upsampler):
  """Decoder side: indices ⊙ nearest(x), indices from the matching `IndexPool`."""

  kind = 'indexnet'
  needs = ('indices',)
  keeps_channels = True

  @nn.compact
  def __call__(self, x, guide=None):  # x: [B, H, W, C]
    indices = self.check(x, guide).indices
    b, h, w, c = x.shape
    if indices.shape[:3] != (b, 2 * h, 2 * w) or indices.shape[3] not in (1, c):
      raise ValueError(
        f'indexnet indices of shape {indices.shape} do not match x of shape '
        f'{x.shape}; expected [{b}, {2 * h}, {2 * w}, {c} or 1].'
      )
    return index_unpool(x, indices.astype(x.dtype))
