"""DySample, IndexNet's pooling and unpooling, and the encoders' choice of pool, against
slow references written from the papers' equations, their invariants, the official
PyTorch modules (re-implemented here) and the architectures."""

import jax
from jax import test_util
import jax.numpy as jnp
import numpy as np
import pytest

from research import models
from research import pooling
from research import upsamplers
from research.models import base as models_base
from research.models import index_pool
from research.upsamplers import bilinear
from research.upsamplers import dysample
from research.upsamplers import indexnet
from research.upsamplers import max_unpool


def random_tree(tree, seed, scale=1.0):
  """Replaces every leaf by normal noise of `scale` (same shapes), float32."""
  leaves, treedef = jax.tree.flatten(tree)
  rng = np.random.default_rng(seed)
  return jax.tree.unflatten(
    treedef, [jnp.asarray(scale * rng.normal(size=np.shape(v)), jnp.float32) for v in leaves]
  )


# ---------------------------------------------------------------- DySample


def bilinear_border_reference(x, n, py, px, ch):
  """x[n, py, px, ch] by bilinear interpolation, the position clamped to the image first
  (grid_sample's padding_mode='border'); pixel centres at integers."""
  h, w = x.shape[1:3]
  py, px = min(max(py, 0.0), h - 1.0), min(max(px, 0.0), w - 1.0)
  y0, x0 = int(np.floor(py)), int(np.floor(px))
  y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
  fy, fx = py - y0, px - x0
  return (
    (1 - fy) * (1 - fx) * x[n, y0, x0, ch]
    + (1 - fy) * fx * x[n, y0, x1, ch]
    + fy * (1 - fx) * x[n, y1, x0, ch]
    + fy * fx * x[n, y1, x1, ch]
  )


def dysample_reference(x, params, style, groups, dyscope):
  """DySample by loops over output pixels: offsets from the 1×1 layer (on x, or on
  pixel-shuffled x for 'pl'), scope, initial position, then border-clamped bilinear."""
  x = np.asarray(x, np.float64)
  b, h, w, c = x.shape
  cg = c // groups
  kernel = np.asarray(params['offset']['kernel'], np.float64)
  bias = np.asarray(params['offset']['bias'], np.float64)
  out = np.zeros((b, 2 * h, 2 * w, c))
  for n, oy, ox in np.ndindex(b, 2 * h, 2 * w):
    i, dy = divmod(oy, 2)
    j, dx = divmod(ox, 2)
    if style == 'lp':
      feature = x[n, i, j]
    else:  # pixel-shuffled x at (oy, ox): its channel c' is x's channel 4c' + 2dy + dx
      feature = np.array([x[n, i, j, 4 * k + 2 * dy + dx] for k in range(c // 4)])
    for g in range(groups):
      pos = []
      for comp, (base_pos, sub) in enumerate([(j, dx), (i, dy)]):  # x first, as grid_sample
        k = ((comp * groups + g) * 2 + dy) * 2 + dx if style == 'lp' else comp * groups + g
        o = feature @ kernel[:, k] + bias[k]
        if dyscope:
          o *= 0.5 / (1 + np.exp(-(feature @ np.asarray(params['scope']['kernel'])[:, k])))
        else:
          o *= 0.25
        pos.append(base_pos + (sub - 0.5) / 2 + o)
      for ch in range(g * cg, (g + 1) * cg):
        out[n, oy, ox, ch] = bilinear_border_reference(x, n, pos[1], pos[0], ch)
  return out


DYSAMPLE_CASES = [  # channels, style, groups, dyscope
  (4, 'lp', None, False),
  (6, 'lp', None, True),
  (8, 'pl', 2, False),
  (12, 'pl', 4, True),
  (8, 'lp', 1, True),
]


@pytest.mark.parametrize('c, style, groups, dyscope', DYSAMPLE_CASES)
def test_dysample_matches_the_slow_reference(c, style, groups, dyscope):
  x = np.random.default_rng(c).normal(size=(2, 3, 5, c)).astype(np.float32)
  module = upsamplers.build('dysample', style=style, groups=groups, dyscope=dyscope)
  params = module.init(jax.random.key(0), x)['params']
  # Offsets of a pixel or more: points cross pixels and leave the image (border clamp).
  params = random_tree(params, seed=c, scale=1.5)
  out = np.asarray(module.apply({'params': params}, x))
  g = groups or max(d for d in (4, 2, 1) if c % d == 0)
  np.testing.assert_allclose(
    out, dysample_reference(x, params, style, g, dyscope), rtol=1e-5, atol=1e-5
  )


def test_resize_edges_are_border_padding():
  """jax.image.resize's bilinear ×2 (bilinear_2x) drops the outside neighbour and
  renormalises its weight: the same as grid_sample's border padding."""
  x = np.random.default_rng(0).normal(size=(1, 3, 4, 2)).astype(np.float32)
  ref = np.zeros((1, 6, 8, 2))
  for oy, ox, ch in np.ndindex(6, 8, 2):
    ref[0, oy, ox, ch] = bilinear_border_reference(
      x, 0, (oy + 0.5) / 2 - 0.5, (ox + 0.5) / 2 - 0.5, ch
    )
  np.testing.assert_allclose(np.asarray(bilinear.bilinear_2x(x)), ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize('style', ['lp', 'pl'])
def test_dysample_with_zero_offsets_is_bilinear(style):
  module = upsamplers.build('dysample', style=style, dyscope=True)
  rng = np.random.default_rng(1)
  # Small integers: every product and sum is exact, so the two must agree bit for bit.
  x = rng.integers(-8, 8, size=(2, 3, 5, 8)).astype(np.float32)
  params = jax.tree.map(jnp.zeros_like, module.init(jax.random.key(0), x)['params'])
  out = module.apply({'params': params}, x)
  np.testing.assert_array_equal(np.asarray(out), np.asarray(bilinear.bilinear_2x(x)))
  x = rng.normal(size=(2, 3, 5, 8)).astype(np.float32)  # and to rounding for any input
  np.testing.assert_allclose(
    module.apply({'params': params}, x), bilinear.bilinear_2x(x), rtol=0, atol=1e-6
  )


@pytest.mark.parametrize('dyscope', [False, True])
def test_dysample_starts_near_bilinear_with_the_official_initialisation(dyscope):
  x = np.random.default_rng(2).normal(size=(2, 8, 8, 64)).astype(np.float32)
  module = upsamplers.build('dysample', dyscope=dyscope)
  params = module.init(jax.random.key(3), x)['params']
  assert params['offset']['kernel'].shape == (64, 2 * 4 * 4)
  assert abs(float(np.std(params['offset']['kernel'])) - 0.001) < 1e-4
  assert not np.any(params['offset']['bias'])
  if dyscope:
    assert not np.any(params['scope']['kernel']) and 'bias' not in params['scope']
  offsets = 0.25 * np.abs(x @ np.asarray(params['offset']['kernel'])).max()  # scope 0.25 too
  assert offsets < 0.01  # pixels
  out = module.apply({'params': params}, x)
  diff = np.abs(np.asarray(out) - np.asarray(bilinear.bilinear_2x(x))).max()
  # Moved, by no more than the offsets times bilinear's steepest slope (neighbours' gap).
  assert 0 < diff <= offsets * 2 * np.abs(x).max()


def test_dysample_refuses_what_it_cannot_do():
  x = jnp.zeros((1, 2, 2, 6))
  cases = [
    ({'style': 'pl'}, 'divisible by 4; got 6'),
    ({'groups': 4}, 'divisible by groups'),
    ({'style': 'xy'}, "lp, pl; got 'xy'"),
    ({'features': 3}, 'keeps the 6 input channels'),
  ]
  for options, message in cases:
    module = upsamplers.build('dysample', **options)
    with pytest.raises(ValueError, match=message):
      module.init(jax.random.key(0), x)


@pytest.mark.parametrize('c, style, groups, dyscope', DYSAMPLE_CASES[1:4])
def test_dysample_gradients(c, style, groups, dyscope):
  with jax.enable_x64(True):
    x = jnp.asarray(np.random.default_rng(5).normal(size=(1, 3, 5, c)))
    module = upsamplers.build('dysample', style=style, groups=groups, dyscope=dyscope)
    params = jax.tree.map(
      lambda p: jnp.asarray(p, jnp.float64),
      random_tree(module.init(jax.random.key(0), x)['params'], c, 0.7),
    )
    test_util.check_grads(
      lambda p, x: module.apply({'params': p}, x), (params, x), order=1, modes=['rev']
    )


# ---------------------------------------------------------------- IndexNet


def conv_reference(x, kernel, stride, pad, groups):
  """2-D convolution by loops over output pixels: x [B, H, W, I], kernel [k, k, I/g, O]."""
  b, h, w, _ = x.shape
  k, _, cin, cout = kernel.shape
  xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
  out = np.zeros((b, ho, wo, cout))
  per_group = cout // groups
  for n, i, j, o in np.ndindex(b, ho, wo, cout):
    g = o // per_group
    patch = xp[n, i * stride : i * stride + k, j * stride : j * stride + k, g * cin : (g + 1) * cin]
    out[n, i, j, o] = np.sum(patch * kernel[..., o])
  return out


def group_norm_reference(x, groups, scale, bias, eps=1e-6):
  out = np.zeros_like(x)
  c = x.shape[-1]
  for n, g in np.ndindex(x.shape[0], groups):
    part = x[n, ..., g * c // groups : (g + 1) * c // groups]
    out[n, ..., g * c // groups : (g + 1) * c // groups] = (part - part.mean()) / np.sqrt(
      part.var() + eps
    )
  return out * scale + bias


def branch_reference(x, p, groups, nonlinear, context):
  k, pad = (4, 1) if context else (2, 0)
  assert p['conv0']['kernel'].shape[0] == k
  z = conv_reference(x, np.asarray(p['conv0']['kernel'], np.float64), 2, pad, groups)
  if not nonlinear:
    return z
  width = z.shape[-1]
  norm_groups = max(d for d in range(1, 9) if width % d == 0)
  z = group_norm_reference(
    z, norm_groups, np.asarray(p['norm1']['scale']), np.asarray(p['norm1']['bias'])
  )
  z = np.clip(z, 0, 6)
  return conv_reference(z, np.asarray(p['conv3']['kernel'], np.float64), 1, 0, groups)


def index_pool_reference(x, params, block, mode, nonlinear, context):
  """IndexNet's index block, pooling and decoder indices from the paper's equations:
  logits per window position k, y = sigmoid, z = softmax_k(y), pooled = Σ_k z_k x_k."""
  x = np.asarray(x, np.float64)
  b, h2, w2, c = x.shape
  if block == 'holistic':
    logits = branch_reference(x, params['indexnet'], 1, nonlinear, context)[..., None, :]
  else:
    groups = c if mode == 'o2o' else 1
    logits = np.stack(
      [branch_reference(x, params[f'index{k}'], groups, nonlinear, context) for k in range(1, 5)],
      axis=-1,
    )
  y = 1 / (1 + np.exp(-logits))  # [B, H, W, C', 4]
  z = np.exp(y) / np.exp(y).sum(-1, keepdims=True)
  pooled = np.zeros((b, h2 // 2, w2 // 2, c))
  indices = np.zeros((b, h2, w2, y.shape[3]))
  for n, i, j, ch in np.ndindex(b, h2 // 2, w2 // 2, c):
    for k in range(4):
      dy, dx = divmod(k, 2)
      shared = 0 if block == 'holistic' else ch
      pooled[n, i, j, ch] += z[n, i, j, shared, k] * x[n, 2 * i + dy, 2 * j + dx, ch]
      indices[n, 2 * i + dy, 2 * j + dx, shared] = y[n, i, j, shared, k]
  return pooled, indices


INDEX_CASES = [  # channels, indexnet, index_mode, use_nonlinear, use_context
  (3, 'holistic', 'o2o', False, False),
  (5, 'holistic', 'o2o', True, True),
  (4, 'depthwise', 'o2o', False, True),
  (3, 'depthwise', 'o2o', True, False),
  (2, 'depthwise', 'm2o', True, True),
  (6, 'depthwise', 'm2o', False, False),
]


def index_pool_module(block, mode, nonlinear, context):
  return index_pool.IndexPool(
    indexnet=block, index_mode=mode, use_nonlinear=nonlinear, use_context=context
  )


@pytest.mark.parametrize('c, block, mode, nonlinear, context', INDEX_CASES)
def test_index_pool_matches_the_slow_reference(c, block, mode, nonlinear, context):
  x = np.random.default_rng(c).normal(size=(2, 6, 10, c)).astype(np.float32)
  module = index_pool_module(block, mode, nonlinear, context)
  params = module.init(jax.random.key(0), x)['params']
  pooled, indices = module.apply({'params': params}, x)
  assert pooled.shape == (2, 3, 5, c)
  assert indices.shape == (2, 6, 10, 1 if block == 'holistic' else c)
  ref_pooled, ref_indices = index_pool_reference(x, params, block, mode, nonlinear, context)
  np.testing.assert_allclose(pooled, ref_pooled, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(indices, ref_indices, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('c, shared', [(3, False), (5, True), (2, False)])
def test_index_unpool_matches_the_slow_reference(c, shared):
  rng = np.random.default_rng(c)
  x = rng.normal(size=(2, 3, 5, c)).astype(np.float32)
  ind = rng.uniform(size=(2, 6, 10, 1 if shared else c)).astype(np.float32)
  out = np.asarray(upsamplers.build('indexnet').apply({}, x, upsamplers.Guide(indices=ind)))
  ref = np.zeros((2, 6, 10, c))
  for n, oy, ox, ch in np.ndindex(*ref.shape):
    ref[n, oy, ox, ch] = ind[n, oy, ox, 0 if shared else ch] * x[n, oy // 2, ox // 2, ch]
  np.testing.assert_allclose(out, ref, rtol=1e-6)


def test_hard_indices_are_max_pooling_and_max_unpooling():
  rng = np.random.default_rng(7)
  x = rng.normal(size=(2, 6, 10, 3)).astype(np.float32)
  pooled, switches = pooling.max_pool_with_switches(jnp.asarray(x))
  one_hot = indexnet.to_windows(jax.nn.one_hot(switches, 4))  # [B, 2H, 2W, C]
  np.testing.assert_array_equal(indexnet.index_pool(x, one_hot), pooled)
  y = rng.normal(size=(2, 3, 5, 3)).astype(np.float32)
  unpooled = upsamplers.build('indexnet').apply({}, y, upsamplers.Guide(indices=one_hot))
  np.testing.assert_array_equal(unpooled, max_unpool.max_unpool(jnp.asarray(y), switches))


@pytest.mark.parametrize('block, mode', [('holistic', 'o2o'), ('depthwise', 'm2o')])
def test_uniform_indices_are_average_pooling(block, mode):
  x = np.random.default_rng(8).normal(size=(2, 6, 4, 4)).astype(np.float32)
  module = index_pool_module(block, mode, True, True)
  params = jax.tree.map(jnp.zeros_like, module.init(jax.random.key(0), x)['params'])
  pooled, indices = module.apply({'params': params}, x)
  np.testing.assert_allclose(pooled, models_base.avg_pool(x), rtol=0, atol=1e-6)
  np.testing.assert_array_equal(indices, np.full(indices.shape, 0.5, np.float32))


def test_index_pool_and_unpool_refuse_bad_shapes():
  with pytest.raises(ValueError, match='even height and width; got 5×4'):
    index_pool.IndexPool().init(jax.random.key(0), jnp.zeros((1, 5, 4, 2)))
  with pytest.raises(ValueError, match="holistic, depthwise.*got 'deep'"):
    index_pool.IndexPool(indexnet='deep').init(jax.random.key(0), jnp.zeros((1, 4, 4, 2)))
  unpool = upsamplers.build('indexnet')
  with pytest.raises(ValueError, match=r'expected \[1, 4, 4, 3 or 1\]'):
    unpool.apply({}, jnp.zeros((1, 2, 2, 3)), upsamplers.Guide(indices=jnp.zeros((1, 4, 4, 2))))
  with pytest.raises(ValueError, match='indexnet needs the decoder indices'):
    unpool.apply({}, jnp.zeros((1, 2, 2, 3)), upsamplers.Guide())


GRADIENT_CASES = [  # and the tolerance of check_grads
  (3, 'holistic', 'o2o', False, True, 1e-5),
  (4, 'depthwise', 'o2o', False, True, 1e-5),
  (5, 'depthwise', 'm2o', False, False, 1e-5),
  # layers.GroupNorm keeps its statistics in float32, even under x64: a looser tolerance.
  (2, 'depthwise', 'm2o', True, True, 1e-3),
]


@pytest.mark.parametrize('c, block, mode, nonlinear, context, tol', GRADIENT_CASES)
def test_index_pool_and_unpool_gradients(c, block, mode, nonlinear, context, tol):
  with jax.enable_x64(True):
    rng = np.random.default_rng(9)
    x = jnp.asarray(rng.normal(size=(1, 6, 4, c)))
    module = index_pool.IndexPool(
      indexnet=block,
      index_mode=mode,
      use_nonlinear=nonlinear,
      use_context=context,
      dtype=jnp.float64,
    )
    params = module.init(jax.random.key(0), x.astype(jnp.float32))['params']
    params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params)

    def pool_then_unpool(params, x):
      pooled, indices = module.apply({'params': params}, x)
      return indexnet.index_unpool(pooled, indices)

    test_util.check_grads(pool_then_unpool, (params, x), order=1, modes=['rev'], atol=tol, rtol=tol)


# ---------------------------------------------------------------- Official modules (PyTorch)


def torch_modules():
  """Re-implementations of the official DySample and index blocks (layers, names, forward)."""
  torch = pytest.importorskip('torch')
  nn, F = torch.nn, torch.nn.functional

  class DySample(nn.Module):  # tiny-smart/dysample, dysample.py
    def __init__(self, in_channels, style, groups, dyscope):
      super().__init__()
      self.style, self.groups = style, groups
      cin = in_channels // 4 if style == 'pl' else in_channels
      cout = 2 * groups if style == 'pl' else 8 * groups
      self.offset = nn.Conv2d(cin, cout, 1)
      if dyscope:
        self.scope = nn.Conv2d(cin, cout, 1, bias=False)
      h = torch.arange(-0.5, 1.0) / 2
      self.register_buffer(
        'init_pos',
        torch.stack(torch.meshgrid([h, h], indexing='ij'))
        .transpose(1, 2)
        .repeat(1, groups, 1)
        .reshape(1, -1, 1, 1),
      )

    def sample(self, x, offset):
      b, _, h, w = offset.shape
      offset = offset.view(b, 2, -1, h, w)
      coords = torch.stack(
        torch.meshgrid([torch.arange(w) + 0.5, torch.arange(h) + 0.5], indexing='ij')
      ).transpose(1, 2)[None, :, None]
      normalizer = torch.tensor([w, h], dtype=x.dtype).view(1, 2, 1, 1, 1)
      coords = 2 * (coords + offset) / normalizer - 1
      coords = (
        F.pixel_shuffle(coords.reshape(b, -1, h, w), 2)
        .view(b, 2, -1, 2 * h, 2 * w)
        .permute(0, 2, 3, 4, 1)
        .contiguous()
        .flatten(0, 1)
      )
      return F.grid_sample(
        x.reshape(b * self.groups, -1, h, w),
        coords,
        mode='bilinear',
        align_corners=False,
        padding_mode='border',
      ).view(b, -1, 2 * h, 2 * w)

    def forward(self, x):
      source = F.pixel_shuffle(x, 2) if self.style == 'pl' else x
      offset = self.offset(source)
      offset = offset * self.scope(source).sigmoid() * 0.5 if hasattr(self, 'scope') else offset
      offset = offset if hasattr(self, 'scope') else offset * 0.25
      if self.style == 'pl':
        offset = F.pixel_unshuffle(offset, 2)
      return self.sample(x, offset + self.init_pos)

  def branch(cin, hidden, cout, groups, nonlinear, context, norm, sequential):
    k, p = (4, 1) if context else (2, 0)
    if not nonlinear:
      conv = nn.Conv2d(cin, cout, k, 2, p, groups=groups, bias=False)
      return nn.Sequential(conv) if sequential else conv
    return nn.Sequential(
      nn.Conv2d(cin, hidden, k, 2, p, groups=groups, bias=False),
      norm(hidden),
      nn.ReLU6(),
      nn.Conv2d(hidden, cout, 1, groups=groups, bias=False),
    )

  class Holistic(nn.Module):  # poppinace/indexnet_matting, scripts/hlindex.py
    def __init__(self, inp, nonlinear, context, norm):
      super().__init__()
      self.indexnet = branch(inp, 2 * inp, 4, 1, nonlinear, context, norm, False)

    def forward(self, x):
      y = torch.sigmoid(self.indexnet(x))
      return F.pixel_shuffle(F.softmax(y, dim=1), 2), F.pixel_shuffle(y, 2)

  class Depthwise(nn.Module):  # DepthwiseO2OIndexBlock (groups=inp), DepthwiseM2OIndexBlock
    def __init__(self, inp, nonlinear, context, norm, o2o):
      super().__init__()
      for n in range(1, 5):
        setattr(
          self,
          f'indexnet{n}',
          branch(inp, inp, inp, inp if o2o else 1, nonlinear, context, norm, True),
        )

    def forward(self, x):
      bs, c, h, w = x.size()
      x = torch.cat([getattr(self, f'indexnet{n}')(x).unsqueeze(2) for n in range(1, 5)], 2)
      y = torch.sigmoid(x)
      z = F.softmax(y, dim=2)
      y, z = y.view(bs, c * 4, h // 2, w // 2), z.view(bs, c * 4, h // 2, w // 2)
      return F.pixel_shuffle(z, 2), F.pixel_shuffle(y, 2)

  return torch, DySample, Holistic, Depthwise


def nchw(x):
  return np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2))


@pytest.mark.parametrize('c, style, groups, dyscope', DYSAMPLE_CASES[:4])
def test_dysample_converter_matches_the_official_module(c, style, groups, dyscope):
  torch, official, _, _ = torch_modules()
  g = groups or max(d for d in (4, 2, 1) if c % d == 0)
  torch.manual_seed(c)
  ref = official(c, style, g, dyscope)
  with torch.no_grad():
    for p in ref.parameters():
      p.normal_(0, 1.0)  # offsets of about a pixel: interpolation and the border both count
  x = np.random.default_rng(c).normal(size=(2, 3, 5, c)).astype(np.float32)
  expected = ref(torch.from_numpy(nchw(x))).detach().numpy().transpose(0, 2, 3, 1)
  params = dysample.from_torch_state_dict(ref.state_dict())
  module = upsamplers.build('dysample', style=style, groups=groups, dyscope=dyscope)
  assert jax.tree.structure(params) == jax.tree.structure(
    jax.tree.map(np.asarray, module.init(jax.random.key(0), x)['params'])
  )
  np.testing.assert_allclose(module.apply({'params': params}, x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('c, block, mode, nonlinear, context', INDEX_CASES)
def test_index_block_converter_matches_the_official_module(c, block, mode, nonlinear, context):
  torch, _, holistic, depthwise = torch_modules()

  def norm(width):  # the official blocks take their norm as an argument; ours is GroupNorm
    return torch.nn.GroupNorm(max(d for d in range(1, 9) if width % d == 0), width, eps=1e-6)

  torch.manual_seed(c)
  if block == 'holistic':
    ref = holistic(c, nonlinear, context, norm)
  else:
    ref = depthwise(c, nonlinear, context, norm, o2o=mode == 'o2o')
  with torch.no_grad():
    for p in ref.parameters():
      p.normal_(0, 1.0)
  x = np.random.default_rng(c).normal(size=(2, 6, 10, c)).astype(np.float32)
  z, y = ref(torch.from_numpy(nchw(x)))
  expected_pooled = 4 * torch.nn.functional.avg_pool2d(z * torch.from_numpy(nchw(x)), 2)
  params = index_pool.from_torch_state_dict(ref.state_dict())
  pooled, indices = index_pool_module(block, mode, nonlinear, context).apply({'params': params}, x)
  np.testing.assert_allclose(nchw(pooled), expected_pooled.detach().numpy(), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(nchw(indices), y.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_index_block_converter_refuses_batch_norm_statistics_unless_told():
  torch, _, holistic, _ = torch_modules()
  state = holistic(4, True, False, torch.nn.BatchNorm2d).state_dict()
  with pytest.raises(ValueError, match='running_mean.*drop_batch_norm_stats=True'):
    index_pool.from_torch_state_dict(state)
  params = index_pool.from_torch_state_dict(state, drop_batch_norm_stats=True)
  assert sorted(params['indexnet']) == ['conv0', 'conv3', 'norm1']
  with pytest.raises(ValueError, match='Not an IndexNet index block state_dict'):
    index_pool.from_torch_state_dict({'indexnet.0.weight': np.zeros((8, 4, 2, 2))})


# ---------------------------------------------------------------- Architectures

SMALL = {'unet': {'depth': 2}, 'segnet': {'depth': 2}, 'fcn8s': {'stage_convs': (1,) * 5}}
DEEP_INDEX = {
  'indexnet': 'depthwise',
  'index_mode': 'm2o',
  'use_nonlinear': True,
  'use_context': True,
}


@pytest.mark.parametrize(
  'arch, upsampler, options',
  [
    ('unet', 'dysample', {}),
    ('segnet', 'dysample', {'upsampler_options': {'style': 'pl'}}),
    ('fcn8s', 'dysample', {}),
    ('unet', 'indexnet', {'pool_options': DEEP_INDEX}),
    ('segnet', 'indexnet', {'pool': 'index'}),
    ('fcn8s', 'indexnet', {}),
    ('segnet', 'nearest', {'pool': 'avg'}),
    ('unet', 'dysample', {'pool': 'index'}),
  ],
)
def test_architectures_run_with_the_new_upsamplers_and_pools(arch, upsampler, options):
  model = models.build(arch, upsampler=upsampler, num_classes=3, width=4, **SMALL[arch], **options)
  x = jax.random.uniform(jax.random.key(1), (1, 32, 32, 3))
  variables = model.init(jax.random.key(0), x)
  logits = model.apply(variables, x)
  assert logits.shape == (1, 32, 32, 3) and np.isfinite(logits).all()
  index_pools = [k for k in variables['params'] if k.startswith('pool')]
  assert len(index_pools) == ((5 if arch == 'fcn8s' else 2) if model.pool_kind() == 'index' else 0)


@pytest.mark.parametrize('arch', ['unet', 'segnet'])
def test_default_pool_is_max_pooling_unchanged(arch):
  x = jax.random.uniform(jax.random.key(1), (1, 16, 16, 3))
  outputs = []
  for options in [{}, {'pool': 'max'}]:
    model = models.build(
      arch, upsampler='max_unpool', num_classes=3, width=4, **SMALL[arch], **options
    )
    variables = model.init(jax.random.key(0), x)
    outputs.append((variables, model.apply(variables, x)))
  (v_default, y_default), (v_max, y_max) = outputs
  assert jax.tree.structure(v_default) == jax.tree.structure(v_max)
  assert not any(k.startswith('pool') for k in v_default['params'])
  np.testing.assert_array_equal(y_default, y_max)


def test_guide_fields_follow_the_pool():
  for arch, feature in [('unet', {'skip'}), ('segnet', set()), ('fcn8s', {'skip'})]:
    for pool, given in [('max', {'switches'}), ('avg', set()), ('index', {'indices'})]:
      model = build(arch, 'nearest', pool=pool)
      assert model.guide_fields() == feature | given, (arch, pool)


def build(arch, upsampler, **options):
  return models.build(arch, upsampler=upsampler, num_classes=3, **options)


def test_impossible_combinations_are_refused_clearly():
  with pytest.raises(
    ValueError,
    match=r"'unet' with pool=avg does not give.*fcn16s, fcn32s, "
    r'fcn8s, segnet, unet with model.options.pool=max',
  ):
    build('unet', 'max_unpool', pool='avg')
  with pytest.raises(
    ValueError,
    match=r"'segnet' with pool=max does not give.*segnet, unet "
    r'with model.options.pool=index',
  ):
    build('segnet', 'indexnet', pool='max')
  with pytest.raises(ValueError, match="channel-shared indices.*indexnet='holistic'"):
    build('fcn8s', 'indexnet', pool_options={'indexnet': 'depthwise'})
  with pytest.raises(ValueError, match='pool must be one of max, avg, index'):
    build('unet', 'nearest', pool='mean')
  with pytest.raises(ValueError, match=r"unknown option\(s\) \['kernel'\].*use_context"):
    build('unet', 'nearest', pool='index', pool_options={'kernel': 3})
  with pytest.raises(ValueError, match='configure the index pooling'):
    build('unet', 'nearest', pool_options={'use_context': True})
  # The options listed are the fields, not the ClassVars (GUIDE_FIELDS, FEATURE_FIELDS).
  with pytest.raises(
    ValueError,
    match=r"'kernel'\]; its options are: conv_impl, depth, dtype, "
    r'pool, pool_options\.$',
  ):
    build('unet', 'nearest', kernel=3)
