"""Content-aware ×2 reassembly shared by CARAFE, FADE and SAPA.

Output pixel p = (2i + r1, 2j + r2) has source pixel (i, j) on the coarse grid and a
k×k window around it; tap t = ty·k + tx (row-major, as in mmcv's CARAFE and SAPA's CUDA
ops) reads the coarse pixel (i + ty − k//2, j + tx − k//2). Pixels outside the map are
zeros, as in the official kernels: they still hold their share of a softmax but add
nothing, so border outputs are damped, not renormalised.

Both ops accumulate over the k² taps with shifted slices of the padded coarse map, so
XLA fuses them into one loop; neither materialises the [B, 2H, 2W, k², C] patches (nor
the [B, H, W, k², C] unfolded map) in forward or backward. Their gradients are written
out (custom VJPs) because XLA:CPU reduces a short minor axis (the channels, per tap) one
output element at a time: autodiff's reassembly backward took 98 ms at U-Net's 32×32×8
level (batch 16, k = 5) and 14 ms with the channel sums unrolled into multiply-adds.
"""

import functools

import jax
import jax.numpy as jnp


def _shifted(x, kernel_size: int):
  """Yields (t, x shifted to tap t): [B, H, W, ...] slices of the zero-padded map."""
  h, w = x.shape[1], x.shape[2]
  r = kernel_size // 2
  pad = [(0, 0), (r, r), (r, r)] + [(0, 0)] * (x.ndim - 3)
  xp = jnp.pad(x, pad)
  for ty in range(kernel_size):
    for tx in range(kernel_size):
      yield ty * kernel_size + tx, xp[:, ty : ty + h, tx : tx + w]


def _check_kernel_size(kernel_size: int, what: str):
  if kernel_size < 1 or kernel_size % 2 == 0:
    raise ValueError(f'{what} needs an odd kernel size >= 1 (centred window); got {kernel_size}.')


def reassemble(x, kernels):
  """out[b, p, c] = Σ_t kernels[b, p, g(c), t] · x[b, source(p) + offset(t), c].

  x: [B, H, W, C]; kernels: [B, 2H, 2W, G, k²] (G groups of C/G channels each, channel c
  in group c // (C/G) as in mmcv) or [B, 2H, 2W, k²] for G = 1. Returns [B, 2H, 2W, C].
  """
  b, h, w, c = x.shape
  if kernels.ndim == 4:
    kernels = kernels[..., None, :]
  g, kk = kernels.shape[-2], kernels.shape[-1]
  k = int(round(kk**0.5))
  if k * k != kk:
    raise ValueError(f'reassemble needs k² taps in the last axis of kernels; got {kk}.')
  _check_kernel_size(k, 'reassemble')
  if kernels.shape[:3] != (b, 2 * h, 2 * w) or c % g:
    raise ValueError(
      f'reassemble needs kernels [B, 2H, 2W, G, k²] = [{b}, {2 * h}, {2 * w}, '
      f'G, {kk}] with G dividing C = {c}; got {kernels.shape}.'
    )
  out = _reassemble(x.reshape(b, h, w, g, c // g), kernels.reshape(b, h, 2, w, 2, g, kk))
  return out.reshape(b, 2 * h, 2 * w, c)


UNROLL_MAX = 16  # channels; above, compile time (k²·C multiply-adds per call) outweighs the gain


def _channel_dot(a, b):
  """Σ_c a[..., c]·b[..., c] as unrolled multiply-adds (fused, vectorised over outputs) up
  to UNROLL_MAX channels, a reduction above."""
  if a.shape[-1] > UNROLL_MAX:
    return jnp.sum(a * b, axis=-1)
  return sum(a[..., i] * b[..., i] for i in range(a.shape[-1]))


def _fine_sum(w6, v6):
  """Σ_{r1, r2} w6[:, :, r1, :, r2]·v6[:, :, r1, :, r2]: fine pixels back onto their source."""
  return sum(w6[:, :, r1, :, r2] * v6[:, :, r1, :, r2] for r1 in (0, 1) for r2 in (0, 1))


def _unshift_add(acc, t: int, kernel_size: int, value):
  """acc (the zero-padded coarse map) with value added at tap t's window."""
  ty, tx = divmod(t, kernel_size)
  h, w = value.shape[1], value.shape[2]
  return acc.at[:, ty : ty + h, tx : tx + w].add(value)


def _padded_zeros(x, kernel_size: int, dtype):
  """Zeros shaped like x zero-padded by kernel_size // 2 on both spatial axes."""
  r = kernel_size // 2
  return jnp.zeros((x.shape[0], x.shape[1] + 2 * r, x.shape[2] + 2 * r) + x.shape[3:], dtype)


def _unpad(xp, kernel_size: int):
  r = kernel_size // 2
  return xp[:, r : xp.shape[1] - r, r : xp.shape[2] - r]


@jax.custom_vjp
def _reassemble(xg, wk):
  """xg: [B, H, W, G, C/G]; wk: [B, H, 2, W, 2, G, k²] -> [B, H, 2, W, 2, G, C/G]."""
  k = int(round(wk.shape[-1] ** 0.5))
  out = None
  for t, xs in _shifted(xg, k):  # xs: [B, H, W, G, C/G]
    term = wk[..., t, None] * xs[:, :, None, :, None]
    out = term if out is None else out + term
  return out


def _reassemble_fwd(xg, wk):
  return _reassemble(xg, wk), (xg, wk)


def _reassemble_bwd(res, g_out):  # g_out: [B, H, 2, W, 2, G, C/G]
  xg, wk = res
  k = int(round(wk.shape[-1] ** 0.5))
  g_wk, g_xp = [], _padded_zeros(xg, k, jnp.result_type(xg, wk, g_out))
  for t, xs in _shifted(xg, k):
    g_wk.append(_channel_dot(g_out, xs[:, :, None, :, None]))  # [B, H, 2, W, 2, G]
    g_xp = _unshift_add(g_xp, t, k, _fine_sum(wk[..., t, None], g_out))
  return _unpad(g_xp, k).astype(xg.dtype), jnp.stack(g_wk, axis=-1).astype(wk.dtype)


_reassemble.defvjp(_reassemble_fwd, _reassemble_bwd)


def window_similarity(q, k, kernel_size: int):
  """sim[b, p, t] = Σ_e q[b, p, e] · k[b, source(p) + offset(t), e] (0 outside the map).

  q: [B, 2H, 2W, E] fine queries; k: [B, H, W, E] coarse keys. Returns [B, 2H, 2W, k²].
  """
  _check_kernel_size(kernel_size, 'window_similarity')
  b, h, w, e = k.shape
  if q.shape != (b, 2 * h, 2 * w, e):
    raise ValueError(
      f'window_similarity needs q of shape [B, 2H, 2W, E] = '
      f'{(b, 2 * h, 2 * w, e)} for keys {k.shape}; got {q.shape}.'
    )
  sims = _window_similarity(q.reshape(b, h, 2, w, 2, e), k, kernel_size)
  return sims.reshape(b, 2 * h, 2 * w, kernel_size**2)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _window_similarity(q6, k, kernel_size):
  """q6: [B, H, 2, W, 2, E]; k: [B, H, W, E] -> [B, H, 2, W, 2, k²]."""
  sims = [_channel_dot(q6, ks[:, :, None, :, None]) for _, ks in _shifted(k, kernel_size)]
  return jnp.stack(sims, axis=-1)


def _window_similarity_fwd(q6, k, kernel_size):
  return _window_similarity(q6, k, kernel_size), (q6, k)


def _window_similarity_bwd(kernel_size, res, g_sims):  # g_sims: [B, H, 2, W, 2, k²]
  q6, k = res
  g_q6, g_kp = None, _padded_zeros(k, kernel_size, jnp.result_type(q6, k, g_sims))
  for t, ks in _shifted(k, kernel_size):
    term = g_sims[..., t, None] * ks[:, :, None, :, None]
    g_q6 = term if g_q6 is None else g_q6 + term
    g_kp = _unshift_add(g_kp, t, kernel_size, _fine_sum(g_sims[..., t, None], q6))
  return g_q6.astype(q6.dtype), _unpad(g_kp, kernel_size).astype(k.dtype)


_window_similarity.defvjp(_window_similarity_fwd, _window_similarity_bwd)


def nearest2x(x):
  """[B, H, W, C] -> [B, 2H, 2W, C], each pixel repeated 2×2 (torch's interpolate default)."""
  b, h, w, c = x.shape
  return jnp.broadcast_to(x[:, :, None, :, None], (b, h, 2, w, 2, c)).reshape(b, 2 * h, 2 * w, c)


def check_skip(kind: str, x, skip, same_channels: bool = False):
  """Refuses a skip that is not [B, 2H, 2W, Cs] for x [B, H, W, C] (Cs = C if asked)."""
  b, h, w, c = x.shape
  if skip.ndim != 4 or skip.shape[:3] != (b, 2 * h, 2 * w):
    raise ValueError(
      f'{kind} needs guide.skip of shape [B, 2H, 2W, Cs] = [{b}, {2 * h}, '
      f'{2 * w}, Cs] for x of shape {x.shape}; got {skip.shape}.'
    )
  if same_channels and skip.shape[-1] != c:
    raise ValueError(
      f'{kind} needs guide.skip with as many channels as x (C = {c}); got {skip.shape[-1]} '
      f'(fits U-Net, where both have the level width; not FCN, whose x has the class scores).'
    )


def flax_conv_kernel(weight):
  """A torch Conv2d weight [O, I, kh, kw] as a Flax nn.Conv kernel [kh, kw, I, O]."""
  return jnp.transpose(as_array(weight), (2, 3, 1, 0))


def as_array(value):
  """A state-dict entry (torch tensor or array) as a float32 jax array."""
  if hasattr(value, 'detach'):
    value = value.detach().cpu().numpy()
  return jnp.asarray(value, jnp.float32)
