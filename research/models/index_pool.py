"""IndexNet's encoder side (Lu et al., ICCV 2019): pooling with learned indices.

`IndexPool` runs an index block on the feature x: [B, 2H, 2W, C] before pooling, pools
with the softmax-normalised indices and returns the sigmoid ones for the decoder's
`research.upsamplers.indexnet.IndexUnpool` (the definitions are there). Index blocks as
the official implementation (poppinace/indexnet_matting, scripts/hlindex.py), whose
class defaults are `indexnet='holistic'`, `index_mode='o2o'`, `use_nonlinear=False`,
`use_context=False` (its matting model uses depthwise m2o, nonlinear, context):
- holistic: one block C -> 4 logits, indices shared by all channels ([..., 1]);
- depthwise: four branches (`index1`..`index4`, one per window position) C -> C each,
  depthwise (o2o: channel c from channel c only) or full (m2o);
- a branch is a conv with kernel 2 (use_context: 4, padding 1), stride 2, no bias, or
  with use_nonlinear conv -> norm -> ReLU6 -> 1×1 conv (holistic: C -> 2C -> 4).
Deviation: the official norm is BatchNorm; the lab's models are stateless, so it is
GroupNorm here (`layers.GroupNorm`, `layers.groups(width)` groups, eps 1e-6).
Initialisation as the official model: every conv N(0, 2 / (k² · out_channels)).

`from_torch_state_dict` converts an official index block's state_dict: holistic
'indexnet.weight' (linear) or 'indexnet.{0,1,3}.*' (nonlinear), depthwise
'indexnet{n}.0.weight' (+ 'indexnet{n}.{1,3}.*'), n = 1..4, into params {'indexnet' or
'index{n}': {'conv0', 'norm1', 'conv3'}}: conv weight [O, I/g, k, k] -> kernel
[k, k, I/g, O], norm weight/bias -> scale/bias. BatchNorm's running statistics have no
counterpart: a state_dict holding them is refused unless `drop_batch_norm_stats=True`
(the block then normalises with per-image group statistics instead).
"""

from typing import Any

from flax import linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from research.models import layers
from research.upsamplers import indexnet

BLOCKS = ('holistic', 'depthwise')
MODES = ('o2o', 'm2o')


def _conv_init():
  """N(0, 2 / (k² · out_channels)), the official `_initialize_weights` (fan-out He)."""
  return nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


class _DepthwiseConv(nn.Module):
  """nn.Conv with one k×k filter per channel (feature_group_count = C), same parameter and
  initialisation, computed as a sum of k² strided slices times per-channel weights:
  XLA:CPU's grouped convolution took ~45× longer than the holistic block's (bench shape)."""

  kernel_size: int
  stride: int
  padding: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):  # x: [B, H, W, C] -> [B, Ho, Wo, C]
    k, s, p = self.kernel_size, self.stride, self.padding
    c = x.shape[-1]
    kernel = self.param('kernel', _conv_init(), (k, k, 1, c), jnp.float32).astype(self.dtype)
    x = jnp.pad(x.astype(self.dtype), ((0, 0), (p, p), (p, p), (0, 0)))
    ho, wo = (x.shape[1] - k) // s + 1, (x.shape[2] - k) // s + 1
    out = 0
    for dy in range(k):
      for dx in range(k):
        out = (
          out
          + x[:, dy : dy + s * (ho - 1) + 1 : s, dx : dx + s * (wo - 1) + 1 : s] * kernel[dy, dx, 0]
        )
    return out


class _Branch(nn.Module):
  """One strided conv (kernel 2, or 4 with context), or conv -> GroupNorm -> ReLU6 -> 1×1."""

  hidden: int
  out: int
  depthwise: bool  # one filter per channel in both convs (o2o), else full convs
  nonlinear: bool
  context: bool
  dtype: Any = jnp.float32

  def conv(self, features, k, stride, pad, name):
    if self.depthwise:
      return _DepthwiseConv(k, stride, pad, self.dtype, name=name)
    return nn.Conv(
      features,
      (k, k),
      strides=stride,
      padding=((pad, pad), (pad, pad)),
      use_bias=False,
      kernel_init=_conv_init(),
      dtype=self.dtype,
      name=name,
    )

  @nn.compact
  def __call__(self, x):  # x: [B, 2H, 2W, C] -> [B, H, W, out]
    k, p = (4, 1) if self.context else (2, 0)
    first = self.hidden if self.nonlinear else self.out
    x = self.conv(first, k, 2, p, 'conv0')(x)
    if not self.nonlinear:
      return x
    x = layers.GroupNorm(layers.groups(first), dtype=self.dtype, name='norm1')(x)
    x = jnp.clip(x, 0, 6)  # ReLU6
    return self.conv(self.out, 1, 1, 0, 'conv3')(x)


class IndexPool(nn.Module):
  """Encoder side: x: [B, 2H, 2W, C] -> (pooled [B, H, W, C], decoder indices
  [B, 2H, 2W, 1 (holistic) or C (depthwise)]). Options as the official index blocks."""

  indexnet: str = 'holistic'  # holistic | depthwise
  index_mode: str = 'o2o'  # o2o | m2o, depthwise only
  use_nonlinear: bool = False
  use_context: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    if x.ndim != 4:
      raise ValueError(f'IndexPool expects x of shape [B, H, W, C]; got shape {x.shape}.')
    b, h2, w2, c = x.shape
    if h2 % 2 or w2 % 2:
      raise ValueError(
        f'IndexPool pools 2×2 windows and needs even height and width; got {h2}×{w2}.'
      )
    if self.indexnet not in BLOCKS or self.index_mode not in MODES:
      raise ValueError(
        f'IndexPool indexnet must be one of {", ".join(BLOCKS)} and index_mode '
        f'one of {", ".join(MODES)}; got {self.indexnet!r}, {self.index_mode!r}.'
      )
    options = dict(nonlinear=self.use_nonlinear, context=self.use_context, dtype=self.dtype)
    if self.indexnet == 'holistic':
      logits = _Branch(2 * c, 4, False, name='indexnet', **options)(x)[..., None, :]  # [B,H,W,1,4]
    else:
      depthwise = self.index_mode == 'o2o'
      logits = jnp.stack(
        [_Branch(c, c, depthwise, name=f'index{n}', **options)(x) for n in range(1, 5)], axis=-1
      )  # [B, H, W, C, 4]
    y = jax.nn.sigmoid(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)))
    z = jax.nn.softmax(y, axis=-1)
    pooled = indexnet.index_pool(x, indexnet.to_windows(z).astype(x.dtype))
    return pooled, indexnet.to_windows(y).astype(x.dtype)


def from_torch_state_dict(state_dict, drop_batch_norm_stats: bool = False) -> dict:
  """An official index block's state_dict (HolisticIndexBlock, DepthwiseO2OIndexBlock or
  DepthwiseM2OIndexBlock; tensors or arrays) -> IndexPool params."""
  arrays = {
    k: np.asarray(v.detach().cpu().numpy() if hasattr(v, 'detach') else v)
    for k, v in state_dict.items()
  }
  stats = sorted(
    k
    for k in arrays
    if k.rsplit('.', 1)[-1] in ('running_mean', 'running_var', 'num_batches_tracked')
  )
  if stats and not drop_batch_norm_stats:
    raise ValueError(
      f'BatchNorm statistics {stats[:3]} have no counterpart in IndexPool '
      f'(GroupNorm); pass drop_batch_norm_stats=True to convert without them.'
    )
  for k in stats:
    del arrays[k]

  def kernel(key):  # [O, I/g, k, k] -> [k, k, I/g, O]
    return arrays.pop(key).transpose(2, 3, 1, 0)

  def branch(prefix, holistic):
    if holistic and f'{prefix}.weight' in arrays:  # linear holistic: a bare Conv2d
      return {'conv0': {'kernel': kernel(f'{prefix}.weight')}}
    if not holistic and f'{prefix}.1.weight' not in arrays:  # linear depthwise: Sequential(conv)
      return {'conv0': {'kernel': kernel(f'{prefix}.0.weight')}}
    return {
      'conv0': {'kernel': kernel(f'{prefix}.0.weight')},
      'norm1': {'scale': arrays.pop(f'{prefix}.1.weight'), 'bias': arrays.pop(f'{prefix}.1.bias')},
      'conv3': {'kernel': kernel(f'{prefix}.3.weight')},
    }

  try:
    if any(k.startswith('indexnet.') for k in arrays):
      params = {'indexnet': branch('indexnet', holistic=True)}
    else:
      params = {f'index{n}': branch(f'indexnet{n}', holistic=False) for n in range(1, 5)}
  except KeyError as e:
    raise ValueError(
      f'Not an IndexNet index block state_dict: missing {e}; got {sorted(state_dict)}.'
    ) from None
  if arrays:
    raise ValueError(f'Unexpected keys in an IndexNet index block state_dict: {sorted(arrays)}.')
  return params
