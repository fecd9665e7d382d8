"""The upsamplers against their definitions."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import decoder_ablation
from research import pooling
from research import upsamplers
from research.upsamplers import bilinear
from research.upsamplers import pixel_shuffle
from research.upsamplers import transpose_conv as tc


def apply(name, x, switches=None, **options):
  module = upsamplers.build(name, **options)
  guide = upsamplers.Guide(switches=switches)
  variables = module.init(jax.random.key(0), x, guide)
  return np.asarray(module.apply(variables, x, guide)), variables


def test_registry_lists_all_and_rejects_unknown_names():
  names = upsamplers.names()
  # The classic eight and more: adding a decoder breaks nothing.
  assert names == sorted(names) and set(names) >= set(decoder_ablation.CLASSIC)
  with pytest.raises(ValueError, match="Unknown upsampler 'cubic'.*bed_of_nails.*transpose_conv"):
    upsamplers.build('cubic')
  with pytest.raises(ValueError, match="'nearest' has no option.*kernel_size.*features"):
    upsamplers.build('nearest', kernel_size=3)


def test_wrong_rank_is_refused():
  for name in ['nearest', 'transpose_conv', 'bilinear_additive']:
    with pytest.raises(ValueError, match=r'\[B, H, W, C\]'):
      apply(name, jnp.zeros((4, 4, 8)))


def test_nearest_is_repeat_on_both_axes():
  x = np.random.default_rng(0).normal(size=(2, 3, 5, 4)).astype(np.float32)
  out, _ = apply('nearest', x)
  np.testing.assert_array_equal(out, np.repeat(np.repeat(x, 2, axis=1), 2, axis=2))


def test_bed_of_nails_is_the_sparse_array():
  x = np.random.default_rng(1).normal(size=(2, 3, 5, 4)).astype(np.float32)
  expected = np.zeros((2, 6, 10, 4), np.float32)
  for i in range(3):
    for j in range(5):
      expected[:, 2 * i, 2 * j] = x[:, i, j]
  out, _ = apply('bed_of_nails', x)
  np.testing.assert_array_equal(out, expected)


def first_argmax_reference(x):
  """Numpy reference: switches and unpooled output, ties to the first row-major position."""
  b, h, w, c = x.shape
  switches = np.zeros((b, h // 2, w // 2, c), np.int64)
  unpooled = np.zeros_like(x)
  for n, i, j, ch in np.ndindex(b, h // 2, w // 2, c):
    window = x[n, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2, ch].ravel()
    s = int(np.argmax(window))  # numpy's argmax takes the first maximum
    switches[n, i, j, ch] = s
    unpooled[n, 2 * i + s // 2, 2 * j + s % 2, ch] = window[s]
  return switches, unpooled


@pytest.mark.parametrize('kind', ['random', 'ties'])
def test_max_unpool_puts_every_max_back_at_its_argmax(kind):
  rng = np.random.default_rng(2)
  if kind == 'ties':  # ReLU-like: mostly zeros, few distinct values
    x = np.maximum(rng.integers(-2, 2, size=(2, 6, 8, 3)), 0).astype(np.float32)
  else:
    x = rng.normal(size=(2, 6, 8, 3)).astype(np.float32)
  pooled, switches = pooling.max_pool_with_switches(jnp.asarray(x))
  assert switches.dtype == jnp.uint8 and switches.shape == (2, 3, 4, 3)
  ref_switches, ref_unpooled = first_argmax_reference(x)
  np.testing.assert_array_equal(np.asarray(switches), ref_switches)
  out, _ = apply('max_unpool', pooled, switches=switches)
  np.testing.assert_array_equal(out, ref_unpooled)
  # Exactly one non-zero slot per window, even where all four values tie.
  nonzero_slots = (out.reshape(2, 3, 2, 4, 2, 3) != 0).sum(axis=(2, 4))
  assert nonzero_slots.max() <= 1


def test_max_unpool_gradient_flows_only_to_the_argmax():
  x = np.maximum(np.random.default_rng(3).integers(-1, 2, size=(1, 4, 4, 2)), 0)
  x = jnp.asarray(x, jnp.float32)
  weights = jnp.asarray(np.random.default_rng(4).normal(size=x.shape), jnp.float32)
  unpool = upsamplers.build('max_unpool')

  def f(x):
    pooled, switches = pooling.max_pool_with_switches(x)
    return jnp.sum(weights * unpool.apply({}, pooled, upsamplers.Guide(switches=switches)))

  grad = np.asarray(jax.grad(f)(x))
  ref_switches, _ = first_argmax_reference(np.asarray(x))
  weights = np.asarray(weights)
  expected = np.zeros_like(grad)
  for n, i, j, ch in np.ndindex(1, 2, 2, 2):
    s = ref_switches[n, i, j, ch]
    expected[n, 2 * i + s // 2, 2 * j + s % 2, ch] = weights[n, 2 * i + s // 2, 2 * j + s % 2, ch]
  np.testing.assert_array_equal(grad, expected)
  assert (grad != 0).sum() <= 8  # at most one position per window (2×2 windows × 2 channels)


def test_max_unpool_requires_matching_switches():
  with pytest.raises(ValueError, match='needs the switches'):
    apply('max_unpool', jnp.zeros((1, 2, 2, 3)))
  with pytest.raises(ValueError, match='do not match'):
    apply('max_unpool', jnp.zeros((1, 2, 2, 3)), switches=jnp.zeros((1, 2, 2, 2), jnp.uint8))


def test_channel_shared_switches_broadcast_over_channels():
  x = jax.random.uniform(jax.random.key(5), (1, 4, 4, 3))
  switches = pooling.channel_shared_switches(x)
  assert switches.shape == (1, 2, 2, 1)
  scores = jnp.ones((1, 2, 2, 6))
  out, _ = apply('max_unpool', scores, switches=switches)
  summed = np.asarray(x.sum(-1))
  for i, j in np.ndindex(2, 2):
    s = int(np.argmax(summed[0, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].ravel()))
    assert (out[0, 2 * i + s // 2, 2 * j + s % 2] == 1).all()
  assert out.sum() == 4 * 6


@pytest.mark.parametrize('k', [2, 3, 4, 5])
def test_transpose_conv_is_the_adjoint_of_stride2_conv_1d(k):
  rng = np.random.default_rng(k)
  kernel = rng.normal(size=(k, 2, 3)).astype(np.float32)  # [k, C, F]
  matrix = tc.stride2_conv_matrix(kernel, out_size=5)  # C: R^{10·3} -> R^{5·2}
  x = rng.normal(size=(1, 10, 3)).astype(np.float32)
  y = rng.normal(size=(1, 5, 2)).astype(np.float32)
  cx = np.asarray(tc.stride2_conv(x, kernel))
  cty = np.asarray(tc.conv_transpose_2x(y, kernel))
  np.testing.assert_allclose(cx.ravel(), matrix @ x.ravel(), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(cty.ravel(), matrix.T @ y.ravel(), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.vdot(cx, y), np.vdot(x, cty), rtol=1e-4)


@pytest.mark.parametrize('k', [2, 3, 4])
def test_transpose_conv_is_the_adjoint_of_stride2_conv_2d(k):
  rng = np.random.default_rng(10 + k)
  kernel = rng.normal(size=(k, k, 2, 3)).astype(np.float32)  # [k, k, C, F]
  matrix = tc.stride2_conv_matrix(kernel, out_size=3)  # [3·3·2, 6·6·3]
  x = rng.normal(size=(1, 6, 6, 3)).astype(np.float32)
  y = rng.normal(size=(1, 3, 3, 2)).astype(np.float32)
  np.testing.assert_allclose(
    np.asarray(tc.stride2_conv(x, kernel)).ravel(), matrix @ x.ravel(), rtol=1e-5, atol=1e-5
  )
  # The module computes Cᵀ y (+ bias, zero at init).
  module = upsamplers.build('transpose_conv', kernel_size=k, features=3)
  variables = module.init(jax.random.key(0), y)
  variables = {'params': {'kernel': jnp.asarray(kernel), 'bias': jnp.zeros(3)}}
  out = np.asarray(module.apply(variables, y))
  assert out.shape == (1, 6, 6, 3)
  np.testing.assert_allclose(out.ravel(), matrix.T @ y.ravel(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('k', [2, 3, 4, 5, 7])
def test_transpose_conv_output_is_exactly_double(k):
  out, variables = apply('transpose_conv', jnp.ones((1, 2, 3, 4)), kernel_size=k, features=5)
  assert out.shape == (1, 4, 6, 5)
  assert variables['params']['kernel'].shape == (k, k, 4, 5)
  with pytest.raises(ValueError, match='kernel_size >= 2'):
    apply('transpose_conv', jnp.ones((1, 2, 2, 4)), kernel_size=1)


def test_transpose_conv_bilinear_init_is_bilinear_upsampling_inside():
  x = jax.random.normal(jax.random.key(0), (1, 6, 6, 2))
  out, _ = apply('transpose_conv', x, kernel_size=4, bilinear_init=True)
  ref = np.asarray(bilinear.bilinear_2x(x))
  np.testing.assert_allclose(out[:, 1:-1, 1:-1], ref[:, 1:-1, 1:-1], rtol=1e-5, atol=1e-5)


def test_uneven_overlap_makes_a_checkerboard_even_overlap_does_not():
  """Odena et al.: a constant input through an all-ones kernel of size 3 (stride 2)
  gives 1, 2, 1, 2 ... overlap counts; size 4 gives a constant interior."""
  y = jnp.ones((1, 4, 1))
  for k, expected_interior in [(3, {1.0, 2.0}), (4, {2.0})]:
    out = np.asarray(tc.conv_transpose_2x(y, jnp.ones((k, 1, 1))))[0, 1:-1, 0]
    assert set(out.tolist()) == expected_interior


def test_bilinear_matches_half_pixel_formula():
  x = np.random.default_rng(6).normal(size=(1, 4, 4, 1)).astype(np.float32)
  out, _ = apply('bilinear', x)
  # Output 2i+1 lies a quarter pixel past input i: 0.75 x[i] + 0.25 x[i+1], on each axis.
  np.testing.assert_allclose(
    out[0, 3, 3, 0],
    0.75 * (0.75 * x[0, 1, 1, 0] + 0.25 * x[0, 1, 2, 0])
    + 0.25 * (0.75 * x[0, 2, 1, 0] + 0.25 * x[0, 2, 2, 0]),
    rtol=1e-5,
  )


def test_bilinear_additive_sums_consecutive_channel_groups():
  x = np.random.default_rng(7).normal(size=(1, 3, 3, 8)).astype(np.float32)
  out, _ = apply('bilinear_additive', x)
  up = np.asarray(bilinear.bilinear_2x(x))
  np.testing.assert_allclose(out, up.reshape(1, 6, 6, 2, 4).sum(-1), rtol=1e-5)
  with pytest.raises(ValueError, match='features must divide 8'):
    apply('bilinear_additive', x, features=3)


def test_pixel_shuffle_depth_to_space_order_and_icnr():
  x = np.arange(2 * 2 * 8, dtype=np.float32).reshape(1, 2, 2, 8)  # F = 2
  out = np.asarray(pixel_shuffle.depth_to_space(x))
  assert out.shape == (1, 4, 4, 2)
  assert out[0, 1, 0, 1] == x[0, 0, 0, (1 * 2 + 0) * 2 + 1]
  # ICNR: all four sub-pixels equal at init, so the output is nearest-neighbour-like.
  y, _ = apply('pixel_shuffle', jax.random.normal(jax.random.key(1), (1, 3, 3, 4)), icnr=True)
  blocks = y.reshape(1, 3, 2, 3, 2, 4)
  np.testing.assert_allclose(
    blocks, np.broadcast_to(blocks[:, :, :1, :, :1], blocks.shape), rtol=1e-6
  )


def test_resize_conv_is_conv_of_nearest():
  x = jax.random.normal(jax.random.key(2), (1, 3, 3, 2))
  out, variables = apply('resize_conv', x, features=4)
  kernel = variables['params']['conv']['kernel']
  near = jnp.repeat(jnp.repeat(x, 2, 1), 2, 2)
  ref = jax.lax.conv_general_dilated(
    near, kernel, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')
  )
  np.testing.assert_allclose(out, ref + variables['params']['conv']['bias'], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name', ['nearest', 'bed_of_nails', 'bilinear', 'max_unpool'])
def test_fixed_upsamplers_refuse_a_channel_change(name):
  with pytest.raises(ValueError, match='keeps the 4 input channels'):
    apply(name, jnp.ones((1, 2, 2, 4)), switches=jnp.zeros((1, 2, 2, 4), jnp.uint8), features=8)


def test_max_unpool_gradient_with_channel_shared_switches():
  """FCN's case: one switch per window for all channels; each channel's gradient comes
  from the shared position."""
  rng = np.random.default_rng(8)
  x = jnp.asarray(rng.normal(size=(2, 3, 3, 4)), jnp.float32)
  switches = jnp.asarray(rng.integers(0, 4, size=(2, 3, 3, 1)), jnp.uint8)
  cotangent = rng.normal(size=(2, 6, 6, 4)).astype(np.float32)
  unpool = upsamplers.build('max_unpool')
  grad = jax.grad(
    lambda x: jnp.vdot(unpool.apply({}, x, upsamplers.Guide(switches=switches)), cotangent)
  )(x)
  s = np.asarray(switches)[..., 0]
  expected = np.zeros(x.shape, np.float32)
  for n, i, j in np.ndindex(2, 3, 3):
    expected[n, i, j] = cotangent[n, 2 * i + s[n, i, j] // 2, 2 * j + s[n, i, j] % 2]
  np.testing.assert_array_equal(np.asarray(grad), expected)


def scatter_max_reference(y, kernel):
  """Transposed convolution with max-combined overlaps, by brute force over (i, j)."""
  b, h, w, _ = y.shape
  k, f = kernel.shape[0], kernel.shape[-1]
  p = (k - 1) // 2
  out = np.full((b, 2 * h, 2 * w, f), -np.inf, np.float32)
  for i, ii, jy, jx in np.ndindex(h, w, k, k):
    oy, ox = 2 * i + jy - p, 2 * ii + jx - p
    if 0 <= oy < 2 * h and 0 <= ox < 2 * w:
      out[:, oy, ox] = np.maximum(out[:, oy, ox], y[:, i, ii] @ kernel[jy, jx])
  return out


@pytest.mark.parametrize('k', [2, 3, 4, 5])
def test_transpose_conv_max_overlap_matches_scatter_max(k):
  rng = np.random.default_rng(20 + k)
  y = rng.normal(size=(2, 3, 4, 2)).astype(np.float32)
  kernel = rng.normal(size=(k, k, 2, 3)).astype(np.float32)
  out = np.asarray(tc.conv_transpose_2x_max(jnp.asarray(y), jnp.asarray(kernel)))
  assert np.isfinite(out).all()  # every output has a contribution from inside the input
  np.testing.assert_allclose(out, scatter_max_reference(y, kernel), rtol=1e-5, atol=1e-5)
  module = upsamplers.build(
    'transpose_conv', kernel_size=k, features=3, overlap='max', use_bias=False
  )
  np.testing.assert_allclose(module.apply({'params': {'kernel': kernel}}, y), out, rtol=1e-6)


def test_without_overlap_max_equals_sum():
  y = jax.random.normal(jax.random.key(3), (1, 3, 3, 2))
  kernel = jax.random.normal(jax.random.key(4), (2, 2, 2, 4))
  np.testing.assert_allclose(
    tc.conv_transpose_2x_max(y, kernel), tc.conv_transpose_2x(y, kernel), rtol=1e-5, atol=1e-6
  )
  with pytest.raises(ValueError, match="overlap must be one of sum, max; got 'mean'"):
    apply('transpose_conv', y, overlap='mean')


def test_readme_matrix_example_prints_what_it_says(capsys):
  """The README's transposed-convolution example runs and prints its commented output."""
  readme = (pathlib.Path(__file__).resolve().parents[1] / 'README.md').read_text()
  block = (
    readme.split('## Transposed convolution, exactly')[1].split('```python')[1].split('```')[0]
  )
  exec(compile(block, 'README.md', 'exec'), {})  # the README's own example, run as written
  expected = [line[2:] for line in block.splitlines() if line.startswith('# ')]
  assert capsys.readouterr().out.splitlines() == expected
