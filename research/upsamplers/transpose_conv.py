"""Transposed convolution, stride 2, any kernel size: the adjoint of a strided convolution.

With padding `p = (k - 1) // 2` the stride-2 convolution maps `2H -> H`:
`y[i] = sum_j w[j] x[2i + j - p]`. Its transpose scatters each input value through the
kernel, `out[2i + j - p] += w[j] y[i]`, summing where neighbouring footprints overlap,
and crops to exactly `2H` outputs for every `k >= 2` (k=3 takes 2×2 to 4×4). Uneven
overlap (k not a multiple of 2) is what makes the checkerboard artifact of Odena et al.
"""

from flax import linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from research.upsamplers import base

_DIMS = {1: ('NWC', 'WIO', 'NWC'), 2: ('NHWC', 'HWIO', 'NHWC')}


def _padding(kernel_size: int):
  if kernel_size < 2:
    raise ValueError(f'transpose_conv needs kernel_size >= 2 for stride 2; got {kernel_size}.')
  return (kernel_size - 1) // 2


def stride2_conv(x, kernel):
  """The convolution whose adjoint `conv_transpose_2x` is, in 1-D or 2-D.

  x: [B, 2H, (2W,) F], kernel [k, (k,) C, F] -> [B, H, (W,) C], zero padded:
  `y[i, c] = sum_{j, f} kernel[j, c, f] x[2i + j - p, f]` along each spatial axis.
  """
  nd = kernel.ndim - 2
  k = kernel.shape[0]
  p = _padding(k)
  hi = k - 2 - p  # so that the output has exactly H rows
  return jax.lax.conv_general_dilated(
    x,
    jnp.swapaxes(kernel, -1, -2),
    window_strides=(2,) * nd,
    padding=((p, hi),) * nd,
    dimension_numbers=_DIMS[nd],
  )


def _polyphase_taps(k: int):
  """For each output phase r in {0, 1}: which kernel tap j sits at input offset t.

  out[2m + r] = sum_j w[j] y[m + t] with t = (r + p - j) / 2 whenever that is an integer.
  Returns (t_min, t_max, [(r, j, t), ...]).
  """
  p = _padding(k)
  taps = [(r, j, (r + p - j) // 2) for r in (0, 1) for j in range(k) if (r + p - j) % 2 == 0]
  offsets = [t for _, _, t in taps]
  return min(offsets), max(offsets), taps


def polyphase_kernel(kernel):
  """[k, (k,) C, F] -> [T, (T,) C, 2^d · F]: the stride-1 kernel that computes all output
  phases of the transposed convolution at once, phase (ry, rx) in channel block ry·2 + rx."""
  nd = kernel.ndim - 2
  k, c, f = kernel.shape[0], kernel.shape[-2], kernel.shape[-1]
  t_min, t_max, taps = _polyphase_taps(k)
  size = t_max - t_min + 1
  out = jnp.zeros((size,) * nd + (c, 2**nd, f), kernel.dtype)
  for combo in np.ndindex(*(len(taps),) * nd):
    chosen = [taps[i] for i in combo]
    phase = sum(r * 2 ** (nd - 1 - axis) for axis, (r, _, _) in enumerate(chosen))
    src = tuple(j for _, j, _ in chosen)
    dst = tuple(t - t_min for _, _, t in chosen)
    out = out.at[dst + (slice(None), phase)].set(kernel[src])
  return out.reshape((size,) * nd + (c, 2**nd * f)), (-t_min, t_max)


def conv_transpose_2x(y, kernel):
  """Transposed stride-2 convolution, 1-D or 2-D: y [B, H, (W,) C], kernel [k, (k,) C, F]
  -> [B, 2H, (2W,) F], overlapping contributions summed.

  Computed in polyphase form: each of the 2^d output phases is an ordinary stride-1
  convolution of the coarse input with the kernel taps that land on it, all phases in
  one convolution with 2^d · F outputs, then interleaved (depth-to-space). This is the
  same linear map as scattering through a zero-dilated input, but runs on XLA's fast
  convolution path on every backend (the dilated form's gradient is ~100× slower on
  CPU); `tests/test_upsamplers.py` checks it is exactly `Cᵀ`.
  """
  nd = kernel.ndim - 2
  f = kernel.shape[-1]
  weights, pad = polyphase_kernel(kernel)
  phases = jax.lax.conv_general_dilated(
    y, weights, window_strides=(1,) * nd, padding=(pad,) * nd, dimension_numbers=_DIMS[nd]
  )
  return _interleave_phases(phases, f)


def _interleave_phases(phases, f: int):
  """[B, H, (W,) 2^d · F], phase (ry, rx) in channel block ry·2 + rx -> [B, 2H, (2W,) F]."""
  b, *spatial, _ = phases.shape
  nd = len(spatial)
  phases = phases.reshape([b] + spatial + [2] * nd + [f])  # [B, H, (W,) ry, (rx,) F]
  order = [0] + [i for axis in range(nd) for i in (1 + axis, 1 + nd + axis)] + [1 + 2 * nd]
  return phases.transpose(order).reshape([b] + [2 * n for n in spatial] + [f])


def conv_transpose_2x_max(y, kernel):
  """Like `conv_transpose_2x` (2-D), but overlapping contributions combine by max, not sum.

  Each tap's contribution `sum_c kernel[jy, jx, c, f] y[i, i', c]` is computed on the coarse
  grid (one contraction for all k² taps), and every output takes the maximum over the
  taps that land on it; taps that would come from outside the input are left out (every
  output has at least one from inside: the tap at offset 0). With kernel = stride (k=2)
  nothing overlaps and this equals the sum.
  """
  f = kernel.shape[-1]
  t_min, t_max, taps = _polyphase_taps(kernel.shape[0])
  z = jnp.einsum('bhwc,yxcf->bhwyxf', y, kernel)  # [B, H, W, k, k, F]
  h, w = y.shape[1:3]
  z = jnp.pad(
    z, ((0, 0), (-t_min, t_max), (-t_min, t_max), (0, 0), (0, 0), (0, 0)), constant_values=-jnp.inf
  )
  phases = []
  for ry in (0, 1):
    for rx in (0, 1):
      candidates = [
        z[:, ty - t_min : ty - t_min + h, tx - t_min : tx - t_min + w, jy, jx]
        for r1, jy, ty in taps
        if r1 == ry
        for r2, jx, tx in taps
        if r2 == rx
      ]
      phases.append(jnp.max(jnp.stack(candidates), axis=0))  # [B, H, W, F]
  return _interleave_phases(jnp.concatenate(phases, axis=-1), f)


def stride2_conv_matrix(kernel, out_size: int):
  """The stride-2 convolution as an explicit matrix ("convolution as matrix multiplication").

  kernel: [k, C, F] (1-D) or [k, k, C, F] (2-D); the input has `2 * out_size` positions
  per spatial axis. Returns C with shape [out_size^d · C, (2 out_size)^d · F] such that
  `stride2_conv(x)` flattened (row-major, channels last) equals `C @ x.ravel()`; the
  transposed convolution is then `C.T`. Built entry by entry from the definition, so
  it is an independent check of the XLA convolutions above; only for small sizes.
  """
  kernel = np.asarray(kernel)
  nd = kernel.ndim - 2
  k, c, f = kernel.shape[0], kernel.shape[-2], kernel.shape[-1]
  p = _padding(k)
  n_in = 2 * out_size
  out_shape, in_shape = (out_size,) * nd + (c,), (n_in,) * nd + (f,)
  matrix = np.zeros((int(np.prod(out_shape)), int(np.prod(in_shape))), kernel.dtype)
  for out_pos in np.ndindex(*(out_size,) * nd):
    for taps in np.ndindex(*(k,) * nd):
      in_pos = tuple(2 * i + j - p for i, j in zip(out_pos, taps))
      if all(0 <= q < n_in for q in in_pos):
        for ci in range(c):
          rows = np.ravel_multi_index(out_pos + (ci,), out_shape)
          cols = np.ravel_multi_index(in_pos + (0,), in_shape) + np.arange(f)
          matrix[rows, cols] += kernel[taps + (ci,)]
  return matrix


def bilinear_kernel(kernel_size: int, channels: int):
  """FCN's bilinear initialisation, channel-diagonal: [k, k, C, C].

  With k=4 this reproduces half-pixel bilinear ×2 upsampling away from the border.
  """
  factor = (kernel_size + 1) // 2
  center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
  taps = 1 - np.abs(np.arange(kernel_size) - center) / factor
  filt = np.outer(taps, taps).astype(np.float32)
  return jnp.asarray(filt[:, :, None, None] * np.eye(channels, dtype=np.float32))


class TransposeConv(base.Upsampler):
  """Learnable ×2 transposed convolution; `features` output channels (default: input's).

  `overlap`: how contributions that land on the same output combine, 'sum' (the transposed
  convolution proper) or 'max'; `kernel_size=2` is the third design, no overlap at all.
  """

  kernel_size: int = 4
  bilinear_init: bool = False
  use_bias: bool = True
  overlap: str = 'sum'  # sum | max

  kind = 'transpose_conv'

  @nn.compact
  def __call__(self, x, guide=None):  # x: [B, H, W, C]
    self.check(x, guide)
    c = x.shape[-1]
    f = self.features or c
    k = self.kernel_size
    _padding(k)
    if self.bilinear_init:
      if f != c:
        raise ValueError(f'bilinear_init needs as many output as input channels; got {c} -> {f}.')
      init = lambda key, shape, dtype: bilinear_kernel(k, c).astype(dtype)
    else:
      init = nn.initializers.lecun_normal()
    kernel = self.param('kernel', init, (k, k, c, f), jnp.float32)
    combine = {'sum': conv_transpose_2x, 'max': conv_transpose_2x_max}
    if self.overlap not in combine:
      raise ValueError(
        f'transpose_conv overlap must be one of {", ".join(combine)}; got {self.overlap!r}.'
      )
    out = combine[self.overlap](x, kernel.astype(x.dtype))
    if self.use_bias:
      out = out + self.param('bias', nn.initializers.zeros, (f,), jnp.float32).astype(x.dtype)
    return out
