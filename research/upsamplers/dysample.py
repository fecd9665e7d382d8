"""DySample (Liu et al., ICCV 2023): ×2 upsampling as learned point sampling.

Output pixel (2i + dy, 2j + dx) of channel group g samples the input bilinearly at

    (i, j) + p0(dy, dx) + o_g(dy, dx),   p0 = ((dy - 1/2) / 2, (dx - 1/2) / 2),

in input pixel units (pixel centres at integers): p0 is where bilinear ×2 with half-pixel
centres samples, and the offset o comes from x through a 1×1 linear layer, scaled by 0.25
(static scope) or by 0.5·sigmoid(a second 1×1 layer) (`dyscope=True`). Sampling is
PyTorch's `grid_sample(align_corners=False, padding_mode='border')`: positions outside
the image read the nearest border pixel. With zero offsets DySample is bilinear ×2.

Styles: 'lp' (linear, then pixel-shuffle) maps x's C channels to 2·G·4 offsets, one
(x, y) pair per group and sub-pixel; 'pl' (pixel-shuffle, then linear) maps the C/4
channels of pixel-shuffled x to 2·G offsets at each of the 2H×2W positions.

Matches the official implementation (tiny-smart/dysample, dysample.py): defaults
style='lp', groups=4 (where C allows it, see `DySample`), dyscope=False; the offset layer
starts N(0, 0.001²) with zero bias and the scope layer at zero, so offsets start ≈ 0.
Its parameters convert with `from_torch_state_dict`: 'offset.weight' [O, I, 1, 1] and
'offset.bias' [O] go to params['offset'] {'kernel': [I, O], 'bias': [O]}, 'scope.weight'
(dyscope only) to params['scope'] {'kernel': [I, O]}; output channels keep the official
order (xy, group, dy, dx) for 'lp' and (xy, group) for 'pl', input channels likewise.
The 'init_pos' buffer is p0, recomputed here.
"""

from typing import Optional

from flax import linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from research.upsamplers import base

STYLES = ('lp', 'pl')


def sample_bilinear(x, pos_y, pos_x):
  """Bilinear sampling per channel group with border clamping.

  x: [B, H, W, G, Cg]; pos_y, pos_x: [B, N, G] positions in input pixel units (centres at
  integers) -> [B, N, G, Cg]. Gathers the four neighbours with clamped indices, which for
  values and gradients equals clamping the position to [0, H - 1] × [0, W - 1] first (a
  clamped pair of neighbours is one pixel twice: no weight on the position moves it).
  """
  b, h, w, g, cg = x.shape
  table = x.reshape(b * h * w * g, cg)  # one row per (image, pixel, group)
  y0, x0 = jnp.floor(pos_y), jnp.floor(pos_x)
  fy, fx = (pos_y - y0)[..., None], (pos_x - x0)[..., None]  # weights of the far neighbour
  y0, x0 = y0.astype(jnp.int32), x0.astype(jnp.int32)
  # Row of (image n, pixel (r, q), group k): ((n·H + r)·W + q)·G + k; base_row: [B, 1, G].
  base_row = jnp.arange(b, dtype=jnp.int32)[:, None, None] * (h * w * g) + jnp.arange(
    g, dtype=jnp.int32
  )
  rows = [jnp.clip(y0, 0, h - 1) * (w * g), jnp.clip(y0 + 1, 0, h - 1) * (w * g)]
  cols = [jnp.clip(x0, 0, w - 1) * g, jnp.clip(x0 + 1, 0, w - 1) * g]

  def at(row, col):  # [B, N, G, Cg]: whole rows of Cg channels, indices only [B, N, G]
    return jnp.take(table, base_row + row + col, axis=0, mode='clip')

  top = at(rows[0], cols[0]) * (1 - fx) + at(rows[0], cols[1]) * fx
  bottom = at(rows[1], cols[0]) * (1 - fx) + at(rows[1], cols[1]) * fx
  return top * (1 - fy) + bottom * fy


def initial_positions(groups: int):
  """p0 as [2 (x, y), G, 2 (dy), 2 (dx)], the official 'init_pos' buffer's layout."""
  h = (np.arange(2) - 0.5) / 2  # [-1/4, 1/4]
  p = np.stack([np.broadcast_to(h[None, :], (2, 2)), np.broadcast_to(h[:, None], (2, 2))])
  return np.broadcast_to(p[:, None], (2, groups, 2, 2)).astype(np.float32)


def dysample_2x(x, offsets):
  """x: [B, H, W, C]; offsets o: [B, H, W, 2 (x, y), G, 2 (dy), 2 (dx)], scope applied,
  in input pixels -> [B, 2H, 2W, C], channel group g = channels [g·C/G, (g+1)·C/G)."""
  b, h, w, c = x.shape
  g = offsets.shape[4]
  p = offsets + initial_positions(g).astype(offsets.dtype)
  p = p.transpose(3, 0, 1, 5, 2, 6, 4)  # [xy, B, H, dy, W, dx, G]
  pos_x = p[0] + jnp.arange(w, dtype=p.dtype)[:, None, None]
  pos_y = p[1] + jnp.arange(h, dtype=p.dtype)[:, None, None, None, None]
  out = sample_bilinear(
    x.reshape(b, h, w, g, c // g), pos_y.reshape(b, -1, g), pos_x.reshape(b, -1, g)
  )
  return out.reshape(b, 2 * h, 2 * w, c)


def from_torch_state_dict(state_dict) -> dict:
  """The official DySample module's state_dict (tensors or arrays) -> Flax params."""

  def array(key):
    value = state_dict[key]
    return np.asarray(value.detach().cpu().numpy() if hasattr(value, 'detach') else value)

  unknown = sorted(set(state_dict) - {'offset.weight', 'offset.bias', 'scope.weight', 'init_pos'})
  if unknown or 'offset.weight' not in state_dict:
    raise ValueError(
      f'Not a DySample state_dict: expected offset.weight, offset.bias, '
      f'init_pos and (dyscope) scope.weight; got {sorted(state_dict)}.'
    )
  params = {
    'offset': {'kernel': array('offset.weight')[:, :, 0, 0].T, 'bias': array('offset.bias')}
  }
  if 'scope.weight' in state_dict:
    params['scope'] = {'kernel': array('scope.weight')[:, :, 0, 0].T}
  return params


class DySample(base.Upsampler):
  """Learned point sampling; keeps the C input channels (C divisible by `groups`, and by 4
  for style 'pl'). Options as the official module: style, groups, dyscope.

  `groups=None` is the official 4 where C allows it, else 2 or 1 (FCN upsamples K class
  scores, often not a multiple of 4); an explicit `groups` must divide C.
  """

  style: str = 'lp'  # lp | pl
  groups: Optional[int] = None
  dyscope: bool = False

  kind = 'dysample'
  keeps_channels = True

  @nn.compact
  def __call__(self, x, guide=None):  # x: [B, H, W, C]
    self.check(x, guide)
    b, h, w, c = x.shape
    g = self.groups or max(d for d in (4, 2, 1) if c % d == 0)
    if self.style not in STYLES:
      raise ValueError(f'dysample style must be one of {", ".join(STYLES)}; got {self.style!r}.')
    if g < 1 or c % g:
      raise ValueError(
        f'dysample needs channels divisible by groups; got {c} channels, groups={g}.'
      )
    if self.style == 'pl' and c % 4:
      raise ValueError(
        f"dysample style 'pl' pixel-shuffles x, so needs channels divisible by 4; got {c}."
      )
    if self.style == 'lp':
      features, z = 2 * g * 4, x  # z: [B, H, W, C]
    else:  # pixel-shuffled x, kept at coarse resolution: z[..., k, c'] = x[..., 4c' + k]
      features, z = 2 * g, x.reshape(b, h, w, c // 4, 4).swapaxes(-1, -2)  # [B, H, W, 4, C/4]
    o = nn.Dense(features, kernel_init=nn.initializers.normal(0.001), name='offset')(z)
    if self.dyscope:
      scope = nn.Dense(features, use_bias=False, kernel_init=nn.initializers.zeros, name='scope')(z)
      o = o * jax.nn.sigmoid(scope) * 0.5
    else:
      o = o * 0.25
    if self.style == 'lp':
      o = o.reshape(b, h, w, 2, g, 2, 2)
    else:  # [B, H, W, (dy, dx), (xy, G)] -> [B, H, W, xy, G, dy, dx]
      o = o.reshape(b, h, w, 2, 2, 2, g).transpose(0, 1, 2, 5, 6, 3, 4)
    return dysample_2x(x, o.astype(x.dtype))
