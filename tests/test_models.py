"""Every architecture with every upsampler: shapes, gradients, parameter counts, errors."""

import functools

from flax import linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import decoder_ablation
from experiments import design_costs
from research import models
from research import upsamplers
from research.models import layers

NUM_CLASSES = 5
PARAMETER_FREE = ('nearest', 'bed_of_nails', 'max_unpool', 'bilinear', 'sapa_i')
# Pairs that must be refused: SegNet has no skip for these to read; FCN's skip does not have
# the class scores' channels that FADE's gate mix and SAPA-I's projection-free q·k need.
REFUSED = {('segnet', name) for name in ('fade', 'sapa_i', 'sapa_b')} | {
  (fcn, name) for fcn in ('fcn32s', 'fcn16s', 'fcn8s') for name in ('fade', 'sapa_i')
}


# Structurally complete but shallow, so that compiling 40 models stays cheap on CPU.
SMALL = {
  'fcn32s': {'stage_convs': (1,) * 5},
  'fcn16s': {'stage_convs': (1,) * 5},
  'fcn8s': {'stage_convs': (1,) * 5},
  'unet': {'depth': 2},
  'segnet': {'depth': 2},
}


@functools.lru_cache(maxsize=None)
def init_and_grad(arch, upsampler):
  """Compiles init and a loss gradient in one program (compilation dominates here)."""
  model = models.build(arch, upsampler=upsampler, num_classes=NUM_CLASSES, width=4, **SMALL[arch])
  x = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3))
  labels = jax.random.randint(jax.random.key(2), (2, 32, 32), 0, NUM_CLASSES)

  @jax.jit
  def run(key):
    params = model.init(key, x)['params']

    def loss(params):
      logits = model.apply({'params': params}, x)
      onehot = jax.nn.one_hot(labels, NUM_CLASSES)
      return -jnp.mean(jnp.sum(onehot * jax.nn.log_softmax(logits), -1)), logits

    (value, logits), grads = jax.value_and_grad(loss, has_aux=True)(params)
    return params, logits, value, grads

  return jax.device_get(run(jax.random.key(0)))


def num_params(tree):
  return sum(np.size(p) for p in jax.tree.leaves(tree))


UPSAMPLING = [a for a in models.names() if a not in ('sliding_window', 'fullres')]
# FCN-16s and -32s run an upsampler exactly as FCN-8s does, one skip less: the newer (and
# slower to compile) upsamplers are checked in FCN-8s, U-Net and SegNet only.
CLASSIC = decoder_ablation.CLASSIC
PAIRS = [
  (arch, name)
  for arch in UPSAMPLING
  for name in upsamplers.names()
  if name in CLASSIC or arch not in ('fcn16s', 'fcn32s')
]


@pytest.mark.parametrize('arch,upsampler', PAIRS)
def test_every_architecture_with_every_upsampler(arch, upsampler):
  if (arch, upsampler) in REFUSED:
    with pytest.raises(ValueError, match=f'{upsampler}.*needs'):
      init_and_grad(arch, upsampler)
    return
  params, logits, loss, grads = init_and_grad(arch, upsampler)
  assert logits.shape == (2, 32, 32, NUM_CLASSES)
  assert np.isfinite(loss) and abs(loss - np.log(NUM_CLASSES)) < 5
  leaves = jax.tree.leaves(grads)
  assert all(np.isfinite(g).all() for g in leaves)
  # Gradient reaches the first layer through the whole decoder.
  first = [
    g
    for path, g in jax.tree_util.tree_leaves_with_path(grads)
    if 'stage1' in jax.tree_util.keystr(path)
    or 'down0' in jax.tree_util.keystr(path)
    or 'enc0' in jax.tree_util.keystr(path)
  ]
  assert first and any(np.abs(g).max() > 0 for g in first)
  # Parameter-free upsamplers add nothing; learned ones add their own weights.
  base = num_params(init_and_grad(arch, 'nearest')[0])
  if upsampler in PARAMETER_FREE:
    assert num_params(params) == base
  elif upsampler != 'bilinear_additive':
    assert num_params(params) > base


def full_size_params(arch, upsampler='nearest', width=4):
  model = models.build(arch, upsampler=upsampler, num_classes=NUM_CLASSES, width=width)
  return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))['params']


def test_parameter_count_of_unet_by_hand():
  """U-Net width 4, depth 4 with nearest: every conv/norm counted by hand."""
  params = full_size_params('unet')
  w, k = 4, NUM_CLASSES

  def block(cin, cout):  # two (3×3 conv without bias + GroupNorm scale/bias)
    return 9 * cin * cout + 2 * cout + 9 * cout * cout + 2 * cout

  widths = [w * 2**i for i in range(5)]
  expected = block(3, widths[0])
  expected += sum(block(widths[i], widths[i + 1]) for i in range(4))  # down1..3 and bottleneck
  for level in range(4):
    expected += widths[level + 1] * widths[level] + widths[level]  # 1×1 reduce
    expected += block(2 * widths[level], widths[level])  # after concatenation
  expected += widths[0] * k + k  # head
  assert num_params(params) == expected


def test_fcn_skips_differ_only_by_the_score_layers():
  p32, p16, p8 = (num_params(full_size_params(a)) for a in ('fcn32s', 'fcn16s', 'fcn8s'))
  assert p16 - p32 == 8 * 4 * NUM_CLASSES + NUM_CLASSES  # score_pool4 on 8w channels
  assert p8 - p16 == 4 * 4 * NUM_CLASSES + NUM_CLASSES  # score_pool3 on 4w channels


def test_fcn8s_starts_out_as_fcn32s():
  """Zero-initialised skip scores (as Long et al.) leave the coarse path unchanged at init."""
  params, logits, _, _ = init_and_grad('fcn8s', 'nearest')
  assert not np.asarray(params['score_pool4']['kernel']).any()
  coarse = logits.reshape(2, 1, 32, 1, 32, NUM_CLASSES)
  np.testing.assert_allclose(
    logits.reshape(coarse.shape), np.broadcast_to(coarse[:, :, :1, :, :1], coarse.shape), rtol=1e-6
  )


def test_transpose_conv_adds_its_kernels_to_the_count():
  """U-Net: four ×2 steps, each a k×k kernel C_l -> C_l plus bias, on top of nearest's count."""
  extra = num_params(full_size_params('unet', 'transpose_conv')) - num_params(
    full_size_params('unet')
  )
  assert extra == sum(16 * c * c + c for c in (4, 8, 16, 32))


def test_unknown_names_list_what_exists():
  with pytest.raises(ValueError, match="Unknown architecture 'deeplab'.*fcn8s.*segnet.*unet"):
    models.build('deeplab', upsampler='nearest', num_classes=3)
  with pytest.raises(ValueError, match="Unknown upsampler 'magic'.*bilinear"):
    models.build('unet', upsampler='magic', num_classes=3)
  with pytest.raises(ValueError, match="no option.*'depht'.*depth"):
    models.build('unet', upsampler='nearest', num_classes=3, depht=3)
  with pytest.raises(ValueError, match="'fcn8s' has no option.*'skips'"):
    models.build('fcn8s', upsampler='nearest', num_classes=3, skips=0)


@pytest.mark.parametrize(
  'arch,size,stride', [('fcn8s', 48, 32), ('unet', 40, 16), ('segnet', 36, 16)]
)
def test_size_not_divisible_by_the_stride_is_refused(arch, size, stride):
  model = models.build(arch, upsampler='nearest', num_classes=3, width=4)
  with pytest.raises(ValueError, match=f'{size}×{size} is not divisible by {stride}'):
    jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, size, size, 3)))


def test_wrong_rank_is_refused():
  model = models.build('unet', upsampler='nearest', num_classes=3, width=4)
  with pytest.raises(ValueError, match=r'expects images of shape \[B, H, W, C\]'):
    jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((32, 32, 3)))


def test_sliding_window_classifies_each_pixel_from_its_own_patch():
  """Logits at a pixel = the patch classifier on the zero-padded window around it, and
  nothing outside that window matters."""
  model = models.build(
    'sliding_window', upsampler='nearest', num_classes=3, width=2, patch=14, hidden=8
  )
  x = jax.random.uniform(jax.random.key(0), (1, 16, 16, 3))
  params = model.init(jax.random.key(1), x)
  logits = model.apply(params, x)
  assert logits.shape == (1, 16, 16, 3)
  pad = ((0, 0), (6, 7), (6, 7), (0, 0))  # the window: 6 above/left of its pixel, 7 below/right
  padded = jnp.pad(x, pad)
  for i, j in [(0, 0), (5, 9), (15, 15)]:
    window = padded[:, i : i + 14, j : j + 14]  # the 14×14 window, classified as its own image
    alone = model.apply(params, window)  # its pixel (6, 6) sees exactly that window
    np.testing.assert_allclose(alone[0, 6, 6], logits[0, i, j], rtol=1e-5, atol=1e-5)
  far = x.at[0, 15, 15].set(5.0)  # outside the window of pixel (0, 0)
  np.testing.assert_allclose(model.apply(params, far)[0, 0, 0], logits[0, 0, 0], rtol=1e-6)
  assert not np.allclose(model.apply(params, far)[0, 15, 15], logits[0, 15, 15])
  with pytest.raises(ValueError, match='an even patch >= 14'):
    models.build('sliding_window', upsampler='nearest', num_classes=3, patch=10).init(
      jax.random.key(0), x
    )


def test_sliding_window_on_sampled_pixels_is_the_dense_pass_there():
  """pixels=[B, N] classifies exactly those pixels, as the dense pass does (training on
  sampled patches, config.loss.pixels_per_image), border windows included."""
  model = models.build(
    'sliding_window', upsampler='nearest', num_classes=3, width=2, patch=14, hidden=8
  )
  x = jax.random.uniform(jax.random.key(0), (2, 16, 12, 3))
  params = model.init(jax.random.key(1), x)
  dense = model.apply(params, x)  # [2, 16, 12, 3]
  pixels = jnp.array([[0, 11, 12 * 7 + 5, 16 * 12 - 1], [3, 12 * 15, 40, 0]])  # row·12 + col
  sampled = model.apply(params, x, pixels=pixels)
  assert sampled.shape == (2, 4, 3)
  expected = jnp.take_along_axis(dense.reshape(2, -1, 3), pixels[..., None], axis=1)
  np.testing.assert_allclose(sampled, expected, rtol=1e-5, atol=1e-5)


def test_design_cost_baselines_match_the_unet_in_parameters():
  """experiments/design_costs.py's widths give the three designs 454k ± 4% parameters."""
  counts = {}
  for arch, width in design_costs.DESIGNS:
    model = models.build(arch, upsampler='nearest', num_classes=6, width=width)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    counts[arch] = num_params(shapes['params'])
  assert counts['unet'] == 453958
  for arch in ('sliding_window', 'fullres'):
    assert abs(counts[arch] / counts['unet'] - 1) < 0.04, counts
  model = models.build('fullres', upsampler='nearest', num_classes=6, width=4, depth=1)
  x = jnp.ones((2, 8, 8, 3))
  assert model.apply(model.init(jax.random.key(0), x), x).shape == (2, 8, 8, 6)


@pytest.mark.parametrize(
  'shape,groups,in_dtype,dtype,rtol',
  [
    ((2, 8, 8, 16), 8, jnp.float32, jnp.float32, 1e-5),
    ((3, 4, 6, 12), 6, jnp.float32, jnp.float32, 1e-5),  # the width-12 case of layers.groups
    ((2, 4, 4, 32), 8, jnp.float32, jnp.bfloat16, 2e-2),
    ((2, 4, 4, 32), 8, jnp.bfloat16, jnp.bfloat16, 2e-2),  # bf16 activations, as in the blocks
    ((2, 4, 4, 32), 8, jnp.bfloat16, jnp.float32, 1e-2),
  ],
)  # dx is bf16: one rounding apart
def test_group_norm_is_flax_group_norm_with_its_gradient(shape, groups, in_dtype, dtype, rtol):
  """layers.GroupNorm (gradient by hand) computes nn.GroupNorm's function and gradients,
  with the same parameter names, for an input that is not centred and a non-trivial
  scale and bias; ReLU after it, as in the blocks."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=shape) * 2 + 0.5, in_dtype)
  weights = jnp.asarray(rng.normal(size=shape), jnp.float32)
  ours, flax_norm = layers.GroupNorm(groups, dtype=dtype), nn.GroupNorm(groups, dtype=dtype)
  params = flax_norm.init(jax.random.key(0), x)
  assert jax.tree.structure(params) == jax.tree.structure(ours.init(jax.random.key(0), x))
  params = jax.tree.map(lambda p: p + jnp.asarray(rng.normal(size=p.shape), p.dtype), params)

  def loss(module):
    return lambda p, x: jnp.sum(jax.nn.relu(module.apply(p, x)).astype(jnp.float32) * weights)

  ours_out = jax.value_and_grad(loss(ours), argnums=(0, 1))(params, x)
  flax_out = jax.value_and_grad(loss(flax_norm), argnums=(0, 1))(params, x)
  assert ours.apply(params, x).dtype == dtype
  for a, b in zip(jax.tree.leaves(ours_out), jax.tree.leaves(flax_out)):
    assert a.dtype == b.dtype, (a.dtype, b.dtype)
    np.testing.assert_allclose(
      np.float32(a), np.float32(b), rtol=rtol, atol=rtol * float(jnp.max(jnp.abs(b)))
    )


def test_group_norm_gradient_under_vmap_over_seeds():
  """The train step vmaps over a seed axis of params and batch: same as Flax there too."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 3, 4, 4, 16)), jnp.float32)  # [S, B, H, W, C]
  params = {
    'params': {
      'scale': jnp.asarray(rng.normal(size=(2, 16)), jnp.float32),
      'bias': jnp.asarray(rng.normal(size=(2, 16)), jnp.float32),
    }
  }

  def grads(module):
    loss = lambda p, x: jnp.sum(jax.nn.relu(module.apply(p, x)) ** 2)
    return jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1))))(params, x)

  for a, b in zip(
    jax.tree.leaves(grads(layers.GroupNorm(8))), jax.tree.leaves(grads(nn.GroupNorm(8)))
  ):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(b))))


@pytest.mark.parametrize('shape', [(1, 2, 2, 12), (2, 2, 16)])
def test_group_norm_refuses_what_it_cannot_normalise(shape):
  with pytest.raises(ValueError, match=r'\[B, H, W, C\] with C divisible by 8 groups'):
    layers.GroupNorm(8).init(jax.random.key(0), jnp.ones(shape))
