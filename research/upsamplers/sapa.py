"""SAPA (Lu et al., NeurIPS 2022): similarity-aware point affiliation.

Each fine output p = (2i + r1, 2j + r2) takes a softmax-weighted sum of the coarse
decoder feature x over the k×k window (k = `up_kernel`) around its source pixel (i, j);
the weights are the similarities between a query from the fine encoder feature
(guide.skip) at p and keys from x in the window:

    out[p] = Σ_t softmax_t(sim(q[p], k[(i, j) + offset(t)])) · x[(i, j) + offset(t)]

As the official CUDA ops (poppinace/sapa, sapa/src/cuda): taps outside the map have
similarity 0 (they keep a share of the softmax) and value 0; there is no 1/√d scaling;
the values are x itself. Two registered variants:

- `sapa_i` (`SAPAI`): the paper's inner-product similarity, q = LN(skip), k = LN(x)
  with a LayerNorm without learned scale or bias, so it has no parameters. The official
  code has only SAPA-B; LayerNorm on both features is what the official module applies
  before any similarity, kept here parameter-free. Without projections q and k must
  have the same width: skip must have x's C channels (U-Net: yes; FCN: no).
- `sapa_b` (`SAPAB`): the official `SAPA` module, the bilinear (low-rank) similarity
  q = W_q·LN_y(skip) + b_q, k = W_k·LN_x(x) + b_k in `embedding_dim` dimensions, LayerNorms
  with scale and bias (eps 1e-5, torch's default). skip may have any width (fits U-Net
  and FCN). Initialisation as the official `_init_weights`: weights normal(0, 0.02)
  (timm's trunc_normal_ cuts at ±2 absolute, i.e. ±100σ: no cut in practice), zero
  biases, LayerNorm scale 1 and bias 0.

Both keep x's C channels: `features` must be None or C.

`from_torch_state_dict(state_dict)` converts the official `SAPA` state dict, keys
`norm_y.{weight,bias}`, `norm_x.{weight,bias}`, `q.{weight,bias}`, `k.{weight,bias}`
(torch Linear weights [out, in]), to `SAPAB`'s params.
"""

from flax import linen as nn
import jax
import jax.numpy as jnp

from research.upsamplers import base
from research.upsamplers import reassembly

_EPS = 1e-5  # torch.nn.LayerNorm's default


def attend(q, k, x, up_kernel: int):
  """softmax over the window of q·k, applied to x: q [B, 2H, 2W, E], k [B, H, W, E],
  x [B, H, W, C] -> [B, 2H, 2W, C]."""
  weights = jax.nn.softmax(reassembly.window_similarity(q, k, up_kernel), axis=-1)
  return reassembly.reassemble(x, weights)


class _SAPA(base.Upsampler):
  """What both variants check: skip's shape, and that `features` keeps C."""

  up_kernel: int = 5

  needs = ('skip',)

  def check_sapa(self, x, guide, same_channels: bool):
    guide = self.check(x, guide)
    reassembly.check_skip(self.kind, x, guide.skip, same_channels)
    return guide.skip


class SAPAI(_SAPA):
  kind = 'sapa_i'
  keeps_channels = True
  skip_like_x = True

  @nn.compact
  def __call__(self, x, guide):  # x: [B, H, W, C], guide.skip: [B, 2H, 2W, C]
    skip = self.check_sapa(x, guide, same_channels=True)
    norm = dict(epsilon=_EPS, use_scale=False, use_bias=False, use_fast_variance=False)
    q = nn.LayerNorm(name='norm_y', **norm)(skip)
    k = nn.LayerNorm(name='norm_x', **norm)(x)
    return attend(q, k, x, self.up_kernel)


class SAPAB(_SAPA):
  embedding_dim: int = 64
  qkv_bias: bool = True

  kind = 'sapa_b'
  keeps_channels = True

  @nn.compact
  def __call__(self, x, guide):  # x: [B, H, W, C], guide.skip: [B, 2H, 2W, Cs]
    skip = self.check_sapa(x, guide, same_channels=False)
    init = nn.initializers.normal(0.02)
    y = nn.LayerNorm(epsilon=_EPS, use_fast_variance=False, name='norm_y')(skip)
    x_ = nn.LayerNorm(epsilon=_EPS, use_fast_variance=False, name='norm_x')(x)
    q = nn.Dense(self.embedding_dim, use_bias=self.qkv_bias, kernel_init=init, name='q')(y)
    k = nn.Dense(self.embedding_dim, use_bias=self.qkv_bias, kernel_init=init, name='k')(x_)
    return attend(q, k, x, self.up_kernel)


def from_torch_state_dict(state_dict) -> dict:
  """Official `SAPA.state_dict()` -> `SAPAB`'s params (for `module.apply`)."""
  arr = reassembly.as_array
  params = {}
  for norm in ('norm_y', 'norm_x'):
    params[norm] = {
      'scale': arr(state_dict[f'{norm}.weight']),
      'bias': arr(state_dict[f'{norm}.bias']),
    }
  for dense in ('q', 'k'):
    params[dense] = {'kernel': jnp.transpose(arr(state_dict[f'{dense}.weight']))}
    if f'{dense}.bias' in state_dict:
      params[dense]['bias'] = arr(state_dict[f'{dense}.bias'])
  return params
