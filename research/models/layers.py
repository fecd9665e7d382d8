"""Building blocks shared by the architectures."""

import functools
from typing import Any, Optional

from flax import linen as nn
import jax
import jax.numpy as jnp

from research import onednn
from research import upsamplers


def check_input(x, stride: int, arch: str):
  """Clear errors for the two ways an image batch can be wrong for an architecture."""
  if x.ndim != 4 or x.shape[-1] < 1:
    raise ValueError(f'{arch} expects images of shape [B, H, W, C]; got shape {x.shape}.')
  h, w = x.shape[1:3]
  if h % stride or w % stride:
    raise ValueError(
      f'{arch} has a total stride of {stride}: image size {h}×{w} is not '
      f'divisible by {stride}. Use a size that is a multiple of {stride} '
      f'(e.g. {max(stride, (h // stride) * stride)} or {(h // stride + 1) * stride}).'
    )


def groups(features: int) -> int:
  """GroupNorm's group count: the largest divisor of `features` up to 8 (8 for the usual
  power-of-two widths)."""
  return max(g for g in range(1, 9) if features % g == 0)


def _group_mean(per_channel_sums, groups: int, n: int):
  """[B, C] sums over each image's pixels -> [B, 1, 1, C]: the mean over the channel's
  group (n values per group), broadcast back to every channel of the group."""
  b, c = per_channel_sums.shape
  means = per_channel_sums.reshape(b, groups, -1).sum(-1) / n  # [B, G]
  return jnp.repeat(means, c // groups, axis=1)[:, None, None, :]


def _group_stats(x, groups: int, eps: float):
  """Per-(image, channel) mean and 1/std of x's group: [B, 1, 1, C] each, float32. One pass
  over x (E[x²] - E[x]², as Flax's GroupNorm with its default use_fast_variance)."""
  b, h, w, c = x.shape
  v = x.astype(jnp.float32).reshape(b, h * w, c)
  n = h * w * (c // groups)
  mean = _group_mean(v.sum(1), groups, n)
  var = jnp.maximum(_group_mean((v * v).sum(1), groups, n) - mean * mean, 0.0)
  return mean, jax.lax.rsqrt(var + eps)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def group_norm(x, scale, bias, groups: int, eps: float, dtype):
  """GroupNorm of x: [B, H, W, C] with per-channel scale and bias: [C], the function of
  Flax's nn.GroupNorm, output in `dtype`. Written with its gradient by hand because
  XLA:CPU differentiates the composed version into several passes over the activations
  and slow tree reductions (results/bench_cpu.md): here the forward makes one statistics
  pass and one elementwise pass, the backward one reduction pass (Σ dy, Σ dy·x̂ per image
  and channel) and one elementwise pass. Reverse mode only (custom_vjp)."""
  return _group_norm_fwd(x, scale, bias, groups, eps, dtype)[0]


def _group_norm_fwd(x, scale, bias, groups, eps, dtype):
  mean, inv = _group_stats(x, groups, eps)
  a = inv * scale
  return (x * a + (bias - mean * a)).astype(dtype), (x, scale, bias, mean, inv)


def _group_norm_bwd(groups, eps, dtype, residuals, dy):
  del eps, dtype
  x, scale, bias, mean, inv = residuals
  b, h, w, c = x.shape
  dy = dy.astype(jnp.float32)
  x_hat = (x - mean) * inv
  sum_dy = dy.reshape(b, h * w, c).sum(1)  # [B, C]
  sum_dy_xhat = (dy * x_hat).reshape(b, h * w, c).sum(1)
  n = h * w * (c // groups)
  dx = inv * (
    dy * scale
    - _group_mean(sum_dy * scale, groups, n)
    - x_hat * _group_mean(sum_dy_xhat * scale, groups, n)
  )
  return (
    dx.astype(x.dtype),
    sum_dy_xhat.sum(0).astype(scale.dtype),
    sum_dy.sum(0).astype(bias.dtype),
  )


group_norm.defvjp(_group_norm_fwd, _group_norm_bwd)


class GroupNorm(nn.Module):
  """nn.GroupNorm's parameters ('scale', 'bias') and function over [B, H, W, C], computed
  by `group_norm`: statistics in float32, output in `dtype`."""

  num_groups: int
  epsilon: float = 1e-6
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    if x.ndim != 4 or x.shape[-1] % self.num_groups:
      raise ValueError(
        f'GroupNorm takes [B, H, W, C] with C divisible by {self.num_groups} '
        f'groups; got shape {x.shape}.'
      )
    c = x.shape[-1]
    scale = self.param('scale', nn.initializers.ones, (c,), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (c,), jnp.float32)
    return group_norm(x, scale, bias, self.num_groups, self.epsilon, jnp.dtype(self.dtype))


class Conv(nn.Conv):
  """nn.Conv (same parameters, initialisation and function, so checkpoints are unchanged)
  computed by `conv_impl`: 'auto' (oneDNN on CPU when its library is built, else XLA),
  'xla' or 'onednn' (research.onednn.resolve). oneDNN's convolutions are ~3× faster than
  XLA:CPU's for the weight gradients that dominate a CPU train step."""

  conv_impl: str = 'auto'

  def __post_init__(self):
    if self.conv_general_dilated is None:  # clones keep the one chosen
      impl = onednn.resolve(self.conv_impl, self.dtype or jnp.float32)
      object.__setattr__(self, 'conv_general_dilated', onednn.lax_conv(impl))
    super().__post_init__()


class ConvBlock(nn.Module):
  """`num_convs` × (3×3 conv, GroupNorm, ReLU). GroupNorm keeps the model stateless
  (no batch statistics to sync across devices) and trains well from scratch."""

  features: int
  num_convs: int = 2
  dtype: Any = jnp.float32
  conv_impl: str = 'auto'

  @nn.compact
  def __call__(self, x):
    for i in range(self.num_convs):
      x = Conv(
        self.features,
        (3, 3),
        padding='SAME',
        use_bias=False,
        dtype=self.dtype,
        conv_impl=self.conv_impl,
        name=f'conv{i}',
      )(x)
      x = GroupNorm(groups(self.features), dtype=self.dtype, name=f'norm{i}')(x)
      x = nn.relu(x)
    return x


class Upsample(nn.Module):
  """One ×2 step with the chosen upsampler; `features` (None: the upsampler's default)
  is passed to it, options forwarded as they are, and the encoder's `guide` handed on."""

  upsampler: str
  options: Optional[dict] = None
  features: Optional[int] = None

  @nn.compact
  def __call__(self, x, guide: upsamplers.Guide):
    options = dict(self.options or {})
    if self.features is not None:
      options['features'] = self.features
    return upsamplers.build(self.upsampler, name='up', **options)(x, guide)
