"""CARAFE, FADE and SAPA against slow references, invariants, torch conversions and models."""

import functools

import jax
from jax import test_util
import jax.numpy as jnp
import numpy as np
import pytest

from research import models
from research import upsamplers
from research.upsamplers import carafe
from research.upsamplers import fade
from research.upsamplers import reassembly
from research.upsamplers import sapa

DYNAMIC = ('carafe', 'fade', 'sapa_i', 'sapa_b')


# ---------------------------------------------------------------- slow numpy references


def ref_conv(x, kernel, bias=None, dilation=1):
  """'SAME' zero-padded conv, x: [B, H, W, I], kernel [kh, kw, I, O], one tap at a time."""
  kh, kw = kernel.shape[:2]
  ph, pw = (kh - 1) * dilation // 2, (kw - 1) * dilation // 2
  b, h, w, _ = x.shape
  xp = np.pad(x, [(0, 0), (ph, ph), (pw, pw), (0, 0)])
  out = np.zeros((b, h, w, kernel.shape[-1]))
  for u in range(kh):
    for v in range(kw):
      window = xp[:, u * dilation : u * dilation + h, v * dilation : v * dilation + w]
      out += np.einsum('bhwi,io->bhwo', window, kernel[u, v])
  return out if bias is None else out + bias


def softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def sigmoid(z):
  return 1 / (1 + np.exp(-z))


def layer_norm(z, scale=None, bias=None, eps=1e-5):
  z = (z - z.mean(-1, keepdims=True)) / np.sqrt(z.var(-1, keepdims=True) + eps)
  return z if scale is None else z * scale + bias


def ref_reassemble(x, kernel_at):
  """out[p] = Σ_t kernel_at(b, p)[g(c), t] · x[source(p) + offset(t), c], zero outside."""
  b, h, w, c = x.shape
  out = np.zeros((b, 2 * h, 2 * w, c))
  for n, oy, ox in np.ndindex(b, 2 * h, 2 * w):
    kern = kernel_at(n, oy, ox)  # [G, k²]
    g, k = kern.shape[0], int(round(np.sqrt(kern.shape[1])))
    for ty, tx in np.ndindex(k, k):
      sy, sx = oy // 2 + ty - k // 2, ox // 2 + tx - k // 2
      if 0 <= sy < h and 0 <= sx < w:
        out[n, oy, ox] += np.repeat(kern[:, ty * k + tx], c // g) * x[n, sy, sx]
  return out


def ref_carafe(x, p, up_kernel, up_group, dilation):
  """CARAFE from the paper: compressor, content encoder, pixel shuffle, softmax, reassembly."""
  comp = ref_conv(x, p['channel_compressor']['kernel'], p['channel_compressor']['bias'])
  enc = ref_conv(comp, p['content_encoder']['kernel'], p['content_encoder']['bias'], dilation)
  kk = up_kernel**2

  def kernel_at(n, oy, ox):  # channel m·4 + r1·2 + r2 of the coarse logits, m = g·k² + t
    logits = enc[n, oy // 2, ox // 2, (oy % 2) * 2 + ox % 2 :: 4]
    return softmax(logits.reshape(up_group, kk))

  return ref_reassemble(x, kernel_at)


def ref_fade(x, skip, p):
  """FADE from the paper: semi-shift kernels, reassembly of x, gate of x mixing in skip."""
  en = ref_conv(skip, p['encoder_compressor']['kernel'], p['encoder_compressor']['bias'])
  de = ref_conv(x, p['decoder_compressor']['kernel'])
  w3, b3 = p['content_encoder']['kernel'], p['content_encoder']['bias']
  fine, coarse = ref_conv(en, w3, b3), ref_conv(de, w3, b3)
  gate = sigmoid(ref_conv(x, p['gate']['kernel'], p['gate']['bias']))  # [B, H, W, 1]

  def kernel_at(n, oy, ox):
    return softmax(fine[n, oy, ox] + coarse[n, oy // 2, ox // 2])[None]

  up = ref_reassemble(x, kernel_at)
  g = np.repeat(np.repeat(gate, 2, 1), 2, 2)
  return g * skip + (1 - g) * up


def ref_sapa(x, q, k, up_kernel):
  """SAPA from the paper: softmax over the window of q[p]·k[window] (0 outside), on x."""
  h, w = x.shape[1:3]

  def kernel_at(n, oy, ox):
    sims = np.zeros(up_kernel**2)
    for ty, tx in np.ndindex(up_kernel, up_kernel):
      sy, sx = oy // 2 + ty - up_kernel // 2, ox // 2 + tx - up_kernel // 2
      if 0 <= sy < h and 0 <= sx < w:
        sims[ty * up_kernel + tx] = q[n, oy, ox] @ k[n, sy, sx]
    return softmax(sims)[None]

  return ref_reassemble(x, kernel_at)


def box_average(x, k):
  """Zero-padded k×k window sum / k² around each source pixel, repeated 2×2."""
  r = k // 2
  h, w = x.shape[1:3]
  xp = np.pad(x, [(0, 0), (r, r), (r, r), (0, 0)])
  box = sum(xp[:, u : u + h, v : v + w] for u in range(k) for v in range(k)) / k**2
  return np.repeat(np.repeat(box, 2, 1), 2, 2)


# ---------------------------------------------------------------- helpers


def data(shape, seed, skip_channels=None):
  rng = np.random.default_rng(seed)
  b, h, w, c = shape
  x = rng.normal(size=shape).astype(np.float32)
  skip = rng.normal(size=(b, 2 * h, 2 * w, skip_channels or c)).astype(np.float32)
  return x, skip


def init(name, x, skip, seed=0, scale=0.5, **options):
  """Module and params, each parameter redrawn normal(0, scale) so kernels are far from
  uniform (the official inits make CARAFE's softmax nearly flat)."""
  module = upsamplers.build(name, **options)
  guide = upsamplers.Guide(skip=jnp.asarray(skip))
  params = module.init(jax.random.key(seed), x, guide).get('params', {})
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed + 1), max(len(leaves), 1))
  leaves = [scale * jax.random.normal(key, l.shape) for key, l in zip(keys, leaves)]
  return module, jax.tree.unflatten(tree, leaves)


def run(module, params, x, skip):
  return np.asarray(module.apply({'params': params}, x, upsamplers.Guide(skip=skip)))


def to_numpy(tree):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


# ---------------------------------------------------------------- the reassembly op


@pytest.mark.parametrize(
  'shape,groups,k', [((2, 3, 5, 4), 1, 5), ((1, 5, 3, 6), 3, 3), ((1, 2, 3, 2), 2, 1)]
)
def test_reassemble_is_the_loop_definition(shape, groups, k):
  rng = np.random.default_rng(0)
  x = rng.normal(size=shape)
  kernels = rng.normal(size=(shape[0], 2 * shape[1], 2 * shape[2], groups, k * k))
  out = np.asarray(
    reassembly.reassemble(jnp.asarray(x, jnp.float32), jnp.asarray(kernels, jnp.float32))
  )
  expected = ref_reassemble(x, lambda n, oy, ox: kernels[n, oy, ox])
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_window_similarity_is_the_loop_definition():
  rng = np.random.default_rng(1)
  q, k = rng.normal(size=(2, 6, 10, 3)), rng.normal(size=(2, 3, 5, 3))
  sims = np.asarray(
    reassembly.window_similarity(jnp.asarray(q, jnp.float32), jnp.asarray(k, jnp.float32), 3)
  )
  for n, oy, ox, ty, tx in np.ndindex(2, 6, 10, 3, 3):
    sy, sx = oy // 2 + ty - 1, ox // 2 + tx - 1
    inside = 0 <= sy < 3 and 0 <= sx < 5
    expected = q[n, oy, ox] @ k[n, sy, sx] if inside else 0.0
    np.testing.assert_allclose(sims[n, oy, ox, ty * 3 + tx], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
  'shape,groups,k', [((2, 3, 5, 4), 2, 3), ((1, 4, 3, 3), 1, 5), ((1, 2, 3, 2), 1, 1)]
)
def test_reassembly_gradients_are_the_definitions(shape, groups, k):
  """The written-out VJPs against finite differences of the ops (float64)."""
  rng = np.random.default_rng(2)
  b, h, w, c = shape
  with jax.enable_x64(True):
    x = jnp.asarray(rng.normal(size=shape))
    kernels = jnp.asarray(rng.normal(size=(b, 2 * h, 2 * w, groups, k * k)))
    q = jnp.asarray(rng.normal(size=(b, 2 * h, 2 * w, c)))
    test_util.check_grads(reassembly.reassemble, (x, kernels), order=1, modes=['rev'], eps=1e-6)
    similarity = functools.partial(reassembly.window_similarity, kernel_size=k)
    test_util.check_grads(similarity, (q, x), order=1, modes=['rev'], eps=1e-6)


def test_reassembly_ops_refuse_bad_shapes():
  x = jnp.zeros((1, 3, 5, 4))
  with pytest.raises(ValueError, match='k² taps'):
    reassembly.reassemble(x, jnp.zeros((1, 6, 10, 24)))
  with pytest.raises(ValueError, match='odd kernel size'):
    reassembly.reassemble(x, jnp.zeros((1, 6, 10, 16)))
  with pytest.raises(ValueError, match=r'G dividing C = 4'):
    reassembly.reassemble(x, jnp.zeros((1, 6, 10, 3, 25)))
  with pytest.raises(ValueError, match=r'\[B, 2H, 2W, E\]'):
    reassembly.window_similarity(jnp.zeros((1, 6, 9, 4)), x, 5)


# ---------------------------------------------------------------- forward vs reference


@pytest.mark.parametrize(
  'shape,options',
  [
    ((2, 3, 5, 4), {}),
    ((1, 5, 3, 6), {'up_kernel': 3, 'up_group': 2, 'compressed_channels': 8}),
    ((1, 3, 5, 3), {'encoder_kernel': 5, 'encoder_dilation': 2, 'compressed_channels': 4}),
  ],
)
def test_carafe_is_the_reference(shape, options):
  x, skip = data(shape, 2)
  module, params = init('carafe', x, skip, **options)
  expected = ref_carafe(
    x,
    to_numpy(params),
    options.get('up_kernel', 5),
    options.get('up_group', 1),
    options.get('encoder_dilation', 1),
  )
  np.testing.assert_allclose(run(module, params, x, skip), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
  'shape,options',
  [((2, 3, 5, 4), {}), ((1, 5, 3, 1), {}), ((1, 3, 5, 6), {'up_kernel': 3, 'embedding_dim': 8})],
)
def test_fade_is_the_reference(shape, options):
  x, skip = data(shape, 3)
  module, params = init('fade', x, skip, **options)
  np.testing.assert_allclose(
    run(module, params, x, skip), ref_fade(x, skip, to_numpy(params)), rtol=1e-4, atol=1e-5
  )


@pytest.mark.parametrize('shape,k', [((2, 3, 5, 4), 5), ((1, 5, 3, 7), 3)])
def test_sapa_i_is_the_reference(shape, k):
  x, skip = data(shape, 4)
  module, params = init('sapa_i', x, skip, up_kernel=k)
  expected = ref_sapa(x, layer_norm(skip.astype(np.float64)), layer_norm(x.astype(np.float64)), k)
  np.testing.assert_allclose(run(module, params, x, skip), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
  'shape,skip_channels,options',
  [
    ((2, 3, 5, 4), 4, {}),
    ((1, 5, 3, 3), 6, {'up_kernel': 3, 'embedding_dim': 5}),
    ((1, 3, 5, 2), 3, {'qkv_bias': False}),
  ],
)
def test_sapa_b_is_the_reference(shape, skip_channels, options):
  x, skip = data(shape, 5, skip_channels)
  module, params = init('sapa_b', x, skip, **options)
  p = to_numpy(params)
  y = layer_norm(skip.astype(np.float64), p['norm_y']['scale'], p['norm_y']['bias'])
  xn = layer_norm(x.astype(np.float64), p['norm_x']['scale'], p['norm_x']['bias'])
  q = y @ p['q']['kernel'] + p['q'].get('bias', 0)
  k = xn @ p['k']['kernel'] + p['k'].get('bias', 0)
  expected = ref_sapa(x, q, k, options.get('up_kernel', 5))
  np.testing.assert_allclose(run(module, params, x, skip), expected, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- invariants


def test_carafe_with_uniform_kernels_is_the_zero_padded_box_average():
  x, skip = data((2, 3, 5, 4), 6)
  module, params = init('carafe', x, skip)
  params = dict(params, content_encoder=jax.tree.map(jnp.zeros_like, params['content_encoder']))
  np.testing.assert_allclose(run(module, params, x, skip), box_average(x, 5), atol=1e-6)


def test_fade_with_uniform_kernels_and_closed_gate_is_the_box_average():
  x, skip = data((2, 3, 5, 4), 7)
  module, params = init('fade', x, skip)
  params = dict(
    params,
    content_encoder=jax.tree.map(jnp.zeros_like, params['content_encoder']),
    gate={'kernel': jnp.zeros_like(params['gate']['kernel']), 'bias': jnp.full((1,), -200.0)},
  )
  np.testing.assert_allclose(run(module, params, x, skip), box_average(x, 5), atol=1e-6)


def test_fade_with_open_gate_returns_the_skip():
  x, skip = data((2, 3, 5, 4), 8)
  module, params = init('fade', x, skip)
  params = dict(
    params, gate={'kernel': jnp.zeros_like(params['gate']['kernel']), 'bias': jnp.full((1,), 200.0)}
  )
  np.testing.assert_array_equal(run(module, params, x, skip), skip)


def test_sapa_with_equal_similarities_is_the_window_average():
  rng = np.random.default_rng(9)
  # Features constant across channels: LayerNorm makes them 0, so every similarity is 0.
  x = np.repeat(rng.normal(size=(2, 3, 5, 1)), 4, -1).astype(np.float32)
  skip = np.repeat(rng.normal(size=(2, 6, 10, 1)), 4, -1).astype(np.float32)
  module, params = init('sapa_i', x, skip)
  np.testing.assert_allclose(run(module, params, x, skip), box_average(x, 5), atol=1e-6)
  # SAPA-B with a zero query projection: the same.
  x, skip = data((2, 3, 5, 4), 10, skip_channels=6)
  module, params = init('sapa_b', x, skip)
  params = dict(params, q=jax.tree.map(jnp.zeros_like, params['q']))
  np.testing.assert_allclose(run(module, params, x, skip), box_average(x, 5), atol=1e-6)


@pytest.mark.parametrize('name', DYNAMIC)
def test_kernels_are_a_partition_of_unity_inside(name):
  """Softmax kernels sum to 1: a constant map stays constant wherever the window fits."""
  _, skip = data((1, 5, 5, 4), 11)
  x = np.full((1, 5, 5, 4), 3.0, np.float32)
  module, params = init(name, x, skip)
  if name == 'fade':
    params = dict(
      params,
      gate={'kernel': jnp.zeros_like(params['gate']['kernel']), 'bias': jnp.full((1,), -200.0)},
    )
  out = run(module, params, x, skip)
  np.testing.assert_allclose(out[:, 4:6, 4:6], 3.0, rtol=1e-5)  # source pixel (2, 2)
  assert np.all(out[:, 0, 0] < 3.0 - 1e-3)  # the corner's window is partly outside: damped


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize(
  'name,shape,skip_channels,options',
  [  # one case each; the ops' own gradients are checked over groups and k = 1, 3, 5 above
    ('carafe', (1, 3, 3, 4), None, {'compressed_channels': 3, 'up_kernel': 3, 'up_group': 2}),
    ('fade', (1, 3, 5, 2), None, {'embedding_dim': 4}),
    ('sapa_i', (1, 3, 3, 5), None, {'up_kernel': 3}),
    ('sapa_b', (1, 3, 5, 2), 3, {'embedding_dim': 4}),
  ],
)
def test_gradients_match_finite_differences(name, shape, skip_channels, options):
  x, skip = data(shape, 12, skip_channels)
  module, params = init(name, x, skip, **options)
  with jax.enable_x64(True):
    args = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), (x, skip, params))

    def f(x, skip, params):
      return module.apply({'params': params}, x, upsamplers.Guide(skip=skip))

    test_util.check_grads(f, args, order=1, modes=['rev'], eps=1e-6, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- refusals


def test_refusals_name_what_is_wrong():
  x, skip = data((1, 3, 5, 4), 13, skip_channels=6)
  guide = upsamplers.Guide(skip=jnp.asarray(skip))
  for name in DYNAMIC:
    with pytest.raises(ValueError, match=r'features=8 \(use None or 4\)'):
      upsamplers.build(name, features=8).init(jax.random.key(0), x, guide)
  for name in ('fade', 'sapa_i'):
    with pytest.raises(ValueError, match=r'as many channels as x \(C = 4\); got 6'):
      upsamplers.build(name).init(jax.random.key(0), x, guide)
  for name in ('fade', 'sapa_i', 'sapa_b'):
    with pytest.raises(ValueError, match=r'needs the encoder feature map'):
      upsamplers.build(name).init(jax.random.key(0), x, upsamplers.Guide())
    with pytest.raises(ValueError, match=r'\[B, 2H, 2W, Cs\] = \[1, 6, 10, Cs\]'):
      upsamplers.build(name).init(jax.random.key(0), x, upsamplers.Guide(skip=skip[:, :5]))
  with pytest.raises(ValueError, match='up_group dividing the 4 channels; got 3'):
    upsamplers.build('carafe', up_group=3).init(jax.random.key(0), x, guide)
  with pytest.raises(ValueError, match='odd encoder_kernel and up_kernel'):
    upsamplers.build('carafe', up_kernel=4).init(jax.random.key(0), x, guide)


# ---------------------------------------------------------------- torch conversions


def torch_reassemble(torch, x, mask, k):
  """x: [N, C, H, W], mask [N, G, k², 2H, 2W] -> [N, C, 2H, 2W] (mmcv's carafe, unfolded)."""
  n, c, h, w = x.shape
  g = mask.shape[1]
  cols = torch.nn.functional.unfold(x, k, padding=k // 2).view(n, g, c // g, k * k, h, w)
  cols = cols.repeat_interleave(2, -2).repeat_interleave(2, -1)
  return (cols * mask[:, :, None]).sum(3).view(n, c, 2 * h, 2 * w)


def torch_modules():
  """Small torch re-implementations of the official modules, written from the papers."""
  torch = pytest.importorskip('torch')
  nn, fn = torch.nn, torch.nn.functional

  class CARAFEPack(nn.Module):
    def __init__(self, channels, up_kernel=5, up_group=1, encoder_kernel=3, compressed_channels=64):
      super().__init__()
      self.k, self.g = up_kernel, up_group
      self.channel_compressor = nn.Conv2d(channels, compressed_channels, 1)
      self.content_encoder = nn.Conv2d(
        compressed_channels,
        up_kernel**2 * up_group * 4,
        encoder_kernel,
        padding=encoder_kernel // 2,
      )

    def forward(self, x):
      mask = fn.pixel_shuffle(self.content_encoder(self.channel_compressor(x)), 2)
      n, _, h, w = mask.shape
      mask = fn.softmax(mask.view(n, self.g, self.k**2, h, w), dim=2)
      return torch_reassemble(torch, x, mask, self.k)

  class GateGenerator(nn.Module):
    def __init__(self, channels):
      super().__init__()
      self.conv = nn.Conv2d(channels, 1, 1)

    def forward(self, x):
      return torch.sigmoid(fn.interpolate(self.conv(x), scale_factor=2))

  class SemiShift(nn.Module):
    def __init__(self, channels_en, channels_de, embedding_dim, up_kernel):
      super().__init__()
      self.e = embedding_dim
      self.conv1_en = nn.Conv2d(channels_en, embedding_dim, 1)
      self.conv1_de = nn.Conv2d(channels_de, embedding_dim, 1, bias=False)
      self.conv2_kernels = nn.Parameter(torch.randn(up_kernel**2, embedding_dim, 3, 3))
      self.conv2_bias = nn.Parameter(torch.randn(up_kernel**2))

    def forward(self, en, de):  # the official shifted-padding, stride-2 form
      b, _, h, w = de.shape
      ce, cd = self.conv1_en(en), self.conv1_de(de)
      pads = [[1, 0, 1, 0], [0, 1, 1, 0], [1, 0, 0, 1], [0, 1, 0, 1]]
      shifted = torch.cat([fn.pad(ce, p) for p in pads], 1).reshape(
        4 * b, self.e, 2 * h + 1, 2 * w + 1
      )  # the four paddings of one image in a row
      fine = fn.conv2d(shifted, self.conv2_kernels, self.conv2_bias, stride=2)
      kernels = fine.view(b, 4, -1, h, w) + fn.conv2d(
        cd, self.conv2_kernels, self.conv2_bias, padding=1
      ).unsqueeze(1)
      kk = kernels.shape[2]  # sub-pixel (r1, r2) = channel block r1·2 + r2
      return kernels.view(b, 2, 2, kk, h, w).permute(0, 3, 4, 1, 5, 2).reshape(b, kk, 2 * h, 2 * w)

  class FADE(nn.Module):
    def __init__(self, channels, embedding_dim=64, up_kernel=5):
      super().__init__()
      self.k = up_kernel
      self.gate_generator = GateGenerator(channels)
      self.kernel_generator = SemiShift(channels, channels, embedding_dim, up_kernel)

    def forward(self, en, de):
      gate = self.gate_generator(de)
      kernels = fn.softmax(self.kernel_generator(en, de), dim=1)
      return gate * en + (1 - gate) * torch_reassemble(torch, de, kernels[:, None], self.k)

  class SAPA(nn.Module):
    def __init__(self, dim_y, dim_x, up_kernel=5, embedding_dim=64, qkv_bias=True):
      super().__init__()
      self.up_kernel_size = up_kernel
      self.norm_y, self.norm_x = nn.LayerNorm(dim_y), nn.LayerNorm(dim_x)
      self.q = nn.Linear(dim_y, embedding_dim, bias=qkv_bias)
      self.k = nn.Linear(dim_x, embedding_dim, bias=qkv_bias)

    def forward(self, y, x):  # y: [N, Cy, 2H, 2W] encoder, x: [N, C, H, W] decoder
      ks = self.up_kernel_size
      q = self.q(self.norm_y(y.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)  # [N, E, 2H, 2W]
      key = self.k(self.norm_x(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)  # [N, E, H, W]
      n, e, h, w = key.shape
      cols = fn.unfold(key, ks, padding=ks // 2).view(n, e, ks * ks, h, w)
      cols = cols.repeat_interleave(2, -2).repeat_interleave(2, -1)
      attn = fn.softmax((cols * q[:, :, None]).sum(1), dim=1)  # [N, k², 2H, 2W]
      return torch_reassemble(torch, x, attn[:, None], ks)

  return torch, CARAFEPack, FADE, SAPA


def compare_with_torch(torch, module, params, torch_out, x, skip):
  out = run(module, params, x, skip)
  np.testing.assert_allclose(
    out, torch_out.detach().permute(0, 2, 3, 1).numpy(), rtol=1e-5, atol=1e-5
  )


def randomized(torch, net, seed):
  torch.manual_seed(seed)
  with torch.no_grad():
    for p in net.parameters():
      p.copy_(0.5 * torch.randn_like(p))
  return net


@pytest.mark.parametrize(
  'shape,options',
  [((2, 3, 5, 4), {}), ((1, 5, 3, 6), {'up_kernel': 3, 'up_group': 3, 'compressed_channels': 8})],
)
def test_carafe_converts_the_official_state_dict(shape, options):
  torch, CARAFEPack, _, _ = torch_modules()
  x, skip = data(shape, 14)
  net = randomized(torch, CARAFEPack(shape[-1], **options), 0)
  expected = net(torch.from_numpy(x).permute(0, 3, 1, 2))
  assert set(net.state_dict()) == {
    'channel_compressor.weight',
    'channel_compressor.bias',
    'content_encoder.weight',
    'content_encoder.bias',
  }
  params = carafe.from_torch_state_dict(net.state_dict())
  compare_with_torch(torch, upsamplers.build('carafe', **options), params, expected, x, skip)


@pytest.mark.parametrize(
  'shape,options', [((2, 3, 5, 4), {}), ((1, 5, 3, 3), {'up_kernel': 3, 'embedding_dim': 8})]
)
def test_fade_converts_the_official_state_dict(shape, options):
  torch, _, FADE, _ = torch_modules()
  x, skip = data(shape, 15)
  net = randomized(torch, FADE(shape[-1], **options), 1)
  expected = net(
    torch.from_numpy(skip).permute(0, 3, 1, 2), torch.from_numpy(x).permute(0, 3, 1, 2)
  )
  params = fade.from_torch_state_dict(net.state_dict())
  compare_with_torch(torch, upsamplers.build('fade', **options), params, expected, x, skip)


@pytest.mark.parametrize(
  'shape,skip_channels,options',
  [
    ((2, 3, 5, 4), 6, {}),
    ((1, 5, 3, 3), 3, {'up_kernel': 3, 'embedding_dim': 8, 'qkv_bias': False}),
  ],
)
def test_sapa_b_converts_the_official_state_dict(shape, skip_channels, options):
  torch, _, _, SAPA = torch_modules()
  x, skip = data(shape, 16, skip_channels)
  net = randomized(torch, SAPA(skip_channels, shape[-1], **options), 2)
  expected = net(
    torch.from_numpy(skip).permute(0, 3, 1, 2), torch.from_numpy(x).permute(0, 3, 1, 2)
  )
  params = sapa.from_torch_state_dict(net.state_dict())
  compare_with_torch(torch, upsamplers.build('sapa_b', **options), params, expected, x, skip)


# ---------------------------------------------------------------- in the architectures


@functools.lru_cache(maxsize=None)
def model_logits(arch, upsampler):
  small = {'unet': {'depth': 2}, 'segnet': {'depth': 2}, 'fcn8s': {'stage_convs': (1,) * 5}}
  model = models.build(arch, upsampler=upsampler, num_classes=3, width=4, **small[arch])
  x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3))
  variables = jax.jit(model.init)(jax.random.key(1), x)
  return np.asarray(jax.jit(model.apply)(variables, x))


@pytest.mark.parametrize('name', DYNAMIC)
def test_unet_runs_every_dynamic_upsampler(name):
  logits = model_logits('unet', name)
  assert logits.shape == (2, 32, 32, 3) and np.isfinite(logits).all()


@pytest.mark.parametrize('name', ['carafe', 'sapa_b'])
def test_fcn8s_runs_the_ones_that_fit(name):
  logits = model_logits('fcn8s', name)
  assert logits.shape == (2, 32, 32, 3) and np.isfinite(logits).all()


@pytest.mark.parametrize('name', ['fade', 'sapa_i'])
def test_fcn8s_refuses_the_ones_that_mix_skip_and_scores(name):
  # At build, before tracing: FCN's skips do not have the class scores' channels.
  with pytest.raises(
    ValueError,
    match='needs a skip with the channels of the upsampled '
    "feature, which 'fcn8s' does not give.*: unet",
  ):
    model_logits('fcn8s', name)


def test_segnet_runs_carafe_and_refuses_what_needs_a_skip():
  assert model_logits('segnet', 'carafe').shape == (2, 32, 32, 3)
  for name in ('fade', 'sapa_i', 'sapa_b'):
    with pytest.raises(ValueError, match=f'{name}.*needs the encoder feature map'):
      models.build('segnet', upsampler=name, num_classes=3, width=4, depth=2)
