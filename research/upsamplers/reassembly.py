"""Content-aware ×2 reassembly shared by CARAFE, FADE and SAPA.

Output pixel p = (2i + r1, 2j + r2) has source pixel (i, j) on the coarse grid and a
k×k window around it; tap t = ty·k + tx (row-major, as in mmcv's CARAFE and SAPA's CUDA
ops) reads the coarse pixel (i + ty − k//2, j + tx − k//2). Pixels outside the map are
zeros, as in the official kernels: they still hold their share of a softmax but add
nothing, so border outputs are damped, not renormalised.

Both ops accumulate over the k² taps with shifted slices of the padded coarse map, so
XLA fuses them into one loop; neither materialises the [B, 2H, 2W, k², C] patches (nor
the [B, H, W, k², C] unfolded map) in forward or backward.
"""

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
  wk = kernels.reshape(b, h, 2, w, 2, g, kk)
  xg = x.reshape(b, h, w, g, c // g)
  out = None
  for t, xs in _shifted(xg, k):  # xs: [B, H, W, G, C/G]
    term = wk[..., t, None] * xs[:, :, None, :, None]
    out = term if out is None else out + term
  return out.reshape(b, 2 * h, 2 * w, c)


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
  q6 = q.reshape(b, h, 2, w, 2, e)
  sims = [jnp.sum(q6 * ks[:, :, None, :, None], axis=-1) for _, ks in _shifted(k, kernel_size)]
  return jnp.stack(sims, axis=-1).reshape(b, 2 * h, 2 * w, kernel_size**2)


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
