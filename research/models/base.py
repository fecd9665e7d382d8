"""What every segmentation architecture has: the fields `models.build` fills, and what its
encoder hands the decoder's upsamplers."""

from typing import Any, ClassVar, Optional

from flax import linen as nn
import jax.numpy as jnp

from research import pooling
from research import upsamplers
from research.models import index_pool

# The name under which an architecture sows (collection 'intermediates') its last decoder
# feature map, before the classifier: where the evaluator scores checkerboard artifacts.
DECODER_FEATURES = 'decoder_features'


class SegmentationModel(nn.Module):
  """Images [B, H, W, 3] -> logits [B, H, W, num_classes], float32.

  `upsampler` names the registered ×2 upsampler used at every decoder step, built with
  `upsampler_options`; `guide_fields()` says which `upsamplers.Guide` fields the encoder
  fills for it (None: the architecture does not upsample). `conv_impl` says whose
  convolutions the architecture's layers run (layers.Conv: 'auto', 'xla' or 'onednn').
  """

  num_classes: int
  upsampler: str = 'transpose_conv'
  upsampler_options: Optional[dict] = None
  width: int = 16
  dtype: Any = jnp.float32
  conv_impl: str = 'auto'

  GUIDE_FIELDS: ClassVar[Optional[frozenset]] = None
  # Whether the skip it hands an upsampler has the channels of the upsampled x (U-Net: both
  # the level's width; FCN: x holds the class scores).
  SKIP_LIKE_X: ClassVar[bool] = False

  def guide_fields(self) -> Optional[frozenset]:
    return self.GUIDE_FIELDS


# The encoders' 2×2 downsampling options, and the Guide field each leaves for the decoder.
POOLS = {'max': frozenset({'switches'}), 'avg': frozenset(), 'index': frozenset({'indices'})}


def avg_pool(x):
  """x: [B, 2H, 2W, C] -> [B, H, W, C], the mean of each 2×2 window."""
  b, h2, w2, c = x.shape
  return x.reshape(b, h2 // 2, 2, w2 // 2, 2, c).mean(axis=(2, 4))


class PoolingModel(SegmentationModel):
  """An architecture whose encoder downsamples by 2×2 pooling, of the kind `pool` says:

  - 'max': max-pooling; the decoder gets its switches (the architectures as published);
  - 'avg': average pooling; nothing to hand on;
  - 'index': IndexNet's learned index pooling (`index_pool.IndexPool`, configured by
    `pool_options`: indexnet, index_mode, use_nonlinear, use_context); the decoder gets
    its sigmoid indices.

  None (the default) is 'index' for an upsampler that needs indices (IndexNet pairs the
  two) and 'max' for every other, so existing models are unchanged. `FEATURE_FIELDS` are
  the Guide fields the architecture gives whatever the pool (U-Net's and FCN's skips).
  """

  pool: Optional[str] = None
  pool_options: Optional[dict] = None

  FEATURE_FIELDS: ClassVar[frozenset] = frozenset()

  def pool_kind(self) -> str:
    """The pool in use, after checking `pool` and `pool_options`."""
    pool = self.pool
    if pool is None:
      pool = 'index' if 'indices' in upsamplers.get(self.upsampler).needs else 'max'
    if pool not in POOLS:
      raise ValueError(f'pool must be one of {", ".join(POOLS)}; got {pool!r}.')
    options = dict(self.pool_options or {})
    if options and pool != 'index':
      raise ValueError(
        f'pool_options configure the index pooling (pool=index); got {options} with pool={pool}.'
      )
    valid = sorted(set(index_pool.IndexPool.__dataclass_fields__) - {'parent', 'name', 'dtype'})
    unknown = sorted(set(options) - set(valid))
    if unknown:
      raise ValueError(
        f"pool_options has unknown option(s) {unknown}; IndexPool's options "
        f'are: {", ".join(valid)}.'
      )
    return pool

  def guide_fields(self) -> frozenset:
    return self.FEATURE_FIELDS | POOLS[self.pool_kind()]

  def downsample(self, x, name: str, channel_shared: bool = False):
    """x: [B, 2H, 2W, C] -> (pooled [B, H, W, C], the Guide fields the pool leaves, as a
    dict). `channel_shared`: max-pool switches shared by all channels (one per window)."""
    pool = self.pool_kind()
    if pool == 'max':
      pooled, switches = pooling.max_pool_with_switches(x)
      if channel_shared:
        switches = pooling.channel_shared_switches(x)
      return pooled, {'switches': switches}
    if pool == 'avg':
      return avg_pool(x), {}
    pooled, indices = index_pool.IndexPool(
      **dict(self.pool_options or {}), dtype=self.dtype, name=name
    )(x)
    return pooled, {'indices': indices}
