"""research.onednn against lax.conv_general_dilated: forward, input and kernel gradients of
every convolution shape the models use, under jit, vmap (seeds) and the 4-device mesh."""

import logging

from flax import linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from research import models
from research import onednn
from research.bench import measure
from research.models import layers
from research.upsamplers import transpose_conv

needs_library = pytest.mark.skipif(
  onednn.load_error() is not None,
  reason=f'oneDNN library not built ({onednn.load_error()}): run `make onednn`',
)
DIMS = ('NHWC', 'HWIO', 'NHWC')


def rel_error(a, b):
  """max |a - b| over max |b|, in float32."""
  a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
  return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def conv(impl, x, w, strides, padding, dilation=(1, 1), groups=1):
  """The convolution by 'lax' (the reference) or by onednn.conv_general_dilated's `impl`."""
  if impl == 'lax':
    return lax.conv_general_dilated(
      x,
      w,
      strides,
      padding,
      rhs_dilation=dilation,
      dimension_numbers=DIMS,
      feature_group_count=groups,
    )
  return onednn.conv_general_dilated(x, w, strides, padding, dilation, groups, impl)


def fwd_dx_dw(impl, x, w, strides, padding, dilation=(1, 1), groups=1, dy=None):
  """(y, dx, dw) of the convolution by `impl`, jitted; dy: the output cotangent."""
  f = lambda x, w: conv(impl, x, w, strides, padding, dilation, groups)

  @jax.jit
  def run(x, w, dy):
    y, vjp = jax.vjp(f, x, w)
    return (y, *vjp(dy))

  if dy is None:
    dy = jax.random.normal(jax.random.key(7), jax.eval_shape(f, x, w).shape, x.dtype)
  return run(x, w, dy)


def check(
  x_shape, w_shape, strides, padding, dilation=(1, 1), groups=1, dtype=jnp.float32, tol=1e-5
):
  kx, kw = jax.random.split(jax.random.key(0))
  x = jax.random.normal(kx, x_shape, dtype)
  w = (jax.random.normal(kw, w_shape) * 0.1).astype(dtype)
  ours = fwd_dx_dw('onednn', x, w, strides, padding, dilation, groups)
  ref = fwd_dx_dw('lax', x, w, strides, padding, dilation, groups)
  for name, a, b in zip(('forward', 'input grad', 'kernel grad'), ours, ref):
    assert a.shape == b.shape and a.dtype == b.dtype, (name, a.shape, b.shape)
    assert rel_error(a, b) <= tol, (name, rel_error(a, b))


@needs_library
def test_every_unet_convolution():
  """The default U-Net's convolutions (3×3 and 1×1, widths 3 to 256), at batch 4."""
  model = models.build(
    'unet', upsampler='nearest', num_classes=6, width=16, conv_impl='xla'
  )  # so that its jaxpr shows lax's convolutions
  convs = measure.model_convolutions(model, jnp.zeros((4, 64, 64, 3)))
  assert len(convs) >= 10
  for conv in convs:
    p = conv['params']
    check(
      conv['x'],
      conv['kernel'],
      p['window_strides'],
      p['padding'],
      p['rhs_dilation'],
      p['feature_group_count'],
    )


@needs_library
@pytest.mark.parametrize('kernel_size', [2, 3, 4])
def test_transpose_conv_polyphase_kernels(kernel_size):
  """transpose_conv's polyphase form: 2×2 / 3×3 kernels with asymmetric padding."""
  kernel = jnp.zeros((kernel_size, kernel_size, 8, 4))
  weights, pad = transpose_conv.polyphase_kernel(kernel)
  check((2, 8, 8, 8), weights.shape, (1, 1), (pad, pad))


@needs_library
@pytest.mark.parametrize(
  'x_shape,w_shape,strides,padding,dilation,groups',
  [
    ((2, 9, 9, 6), (3, 3, 6, 5), (2, 2), 'SAME', (1, 1), 1),
    ((2, 9, 8, 6), (3, 3, 6, 5), (2, 1), 'VALID', (1, 1), 1),
    ((2, 8, 8, 4), (1, 1, 4, 6), (2, 2), 'VALID', (1, 1), 1),
    ((2, 8, 9, 4), (3, 3, 4, 6), (2, 2), 'VALID', (1, 1), 1),
    ((2, 8, 8, 4), (3, 3, 4, 6), (3, 3), ((1, 0), (2, 2)), (1, 1), 1),
    ((2, 10, 10, 4), (3, 3, 4, 4), (1, 1), 'SAME', (2, 2), 1),
    ((2, 8, 8, 12), (3, 3, 4, 6), (1, 1), 'SAME', (1, 1), 3),
    ((2, 8, 8, 4), (3, 3, 4, 6), (1, 1), ((0, 2), (1, 0)), (1, 1), 1),
  ],
)
def test_strides_dilation_groups_padding(x_shape, w_shape, strides, padding, dilation, groups):
  check(x_shape, w_shape, strides, padding, dilation, groups)


@needs_library
def test_bfloat16():
  """Where the processor has oneDNN's bf16 kernels: against lax to bf16's precision. Where
  it has not (AVX2 only, as some of these machines): 'onednn' refuses bf16 saying so, and
  'auto' keeps XLA for it, so that no bf16 model silently runs something else."""
  if onednn.bf16_error():
    with pytest.raises(RuntimeError, match='Use float32'):
      onednn.resolve('onednn', jnp.bfloat16)
    assert onednn.resolve('auto', jnp.bfloat16) == 'xla'
    return
  # bf16 outputs of XLA and oneDNN round f32 sums that may differ in order: a few ulps.
  check((4, 16, 16, 32), (3, 3, 32, 16), (1, 1), 'SAME', dtype=jnp.bfloat16, tol=2e-2)


@needs_library
@pytest.mark.parametrize('batched', ['both', 'images', 'kernels'])
def test_vmap_over_seeds(batched):
  """vmap of the gradient over 3 seeds, by the batching rule (no loop in the program)."""
  n = 3
  kx, kw, kd = jax.random.split(jax.random.key(1), 3)
  x = jax.random.normal(kx, (n, 2, 8, 8, 6) if batched != 'kernels' else (2, 8, 8, 6))
  w = jax.random.normal(kw, (n, 3, 3, 6, 4) if batched != 'images' else (3, 3, 6, 4))
  dy = jax.random.normal(kd, (n, 2, 8, 8, 4))
  axes = (0 if batched != 'kernels' else None, 0 if batched != 'images' else None, 0)

  def step(impl):
    f = lambda x, w, dy: fwd_dx_dw(impl, x, w, (1, 1), 'SAME', dy=dy)
    return jax.jit(jax.vmap(f, axes))

  ours, ref = step('onednn'), step('lax')
  for a, b in zip(ours(x, w, dy), ref(x, w, dy)):
    assert a.shape == b.shape and rel_error(a, b) <= 1e-5
  text = ours.lower(x, w, dy).as_text()
  assert text.count('onednn_conv_') == 3 and 'while' not in text


@needs_library
def test_vmap_grouped_and_nested():
  """vmap over a grouped convolution, and vmap of vmap (seeds × something else)."""
  kx, kw = jax.random.split(jax.random.key(2))
  x = jax.random.normal(kx, (2, 3, 2, 6, 6, 8))
  w = jax.random.normal(kw, (2, 3, 3, 3, 4, 6))

  def loss(impl):
    f = lambda x, w: (conv(impl, x, w, (1, 1), 'SAME', groups=2) ** 2).sum()
    return jax.jit(jax.vmap(jax.vmap(jax.grad(f, (0, 1)))))

  for a, b in zip(loss('onednn')(x, w), loss('lax')(x, w)):
    assert rel_error(a, b) <= 1e-5


@needs_library
def test_batch_sharded_over_four_devices():
  """The train step's layout: images split over a 4-device 'data' mesh (conftest forces 4
  host devices), kernel replicated; the kernel gradient summed over the devices."""
  assert jax.device_count() == 4
  mesh = jax.make_mesh((4,), ('data',), axis_types=(jax.sharding.AxisType.Auto,))
  data = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  kx, kw = jax.random.split(jax.random.key(3))
  x = jax.device_put(jax.random.normal(kx, (8, 16, 16, 8)), data)
  w = jax.device_put(jax.random.normal(kw, (3, 3, 8, 8)), replicated)

  def grads(impl):
    f = lambda x, w: (jnp.tanh(conv(impl, x, w, (1, 1), 'SAME')) ** 2).sum()
    return jax.jit(
      jax.grad(f, (0, 1)), in_shardings=(data, replicated), out_shardings=(data, replicated)
    )

  for a, b in zip(grads('onednn')(x, w), grads('lax')(x, w)):
    assert rel_error(a, b) <= 1e-5
  # Each device convolves its own 2 images: none gathers the batch.
  compiled = grads('onednn').lower(x, w).compile().as_text()
  assert 'all-gather' not in compiled and 'f32[2,16,16,8]' in compiled


@needs_library
def test_layer_matches_nn_conv():
  """layers.Conv has nn.Conv's parameters (names, shapes, initial values) and function."""
  x = jax.random.normal(jax.random.key(4), (2, 8, 8, 5))
  ref = nn.Conv(7, (3, 3), strides=(2, 2), name='c')
  ours = layers.Conv(7, (3, 3), strides=(2, 2), conv_impl='onednn', name='c')
  params = ref.init(jax.random.key(5), x)
  assert jax.tree.all(jax.tree.map(jnp.array_equal, params, ours.init(jax.random.key(5), x)))
  assert rel_error(ours.apply(params, x), ref.apply(params, x)) <= 1e-5


@needs_library
def test_unet_train_gradients_match():
  """The whole U-Net's loss gradient with conv_impl='onednn' against 'xla'."""
  x = jax.random.normal(jax.random.key(6), (2, 32, 32, 3))
  grads = {}
  for impl in ('xla', 'onednn'):
    model = models.build('unet', upsampler='nearest', num_classes=4, width=8, conv_impl=impl)
    params = model.init(jax.random.key(0), x)
    grads[impl] = jax.jit(jax.grad(lambda p: (model.apply(p, x) ** 2).mean()))(params)
  errors = jax.tree.map(rel_error, grads['onednn'], grads['xla'])
  assert max(jax.tree.leaves(errors)) <= 1e-4  # through 18 layers of GroupNorm and ReLU


@needs_library
def test_auto_is_onednn_on_cpu():
  assert onednn.resolve('auto') == 'onednn'
  assert onednn.resolve('xla') == 'xla'


def test_unknown_impl_is_refused():
  with pytest.raises(ValueError, match='conv_impl must be one of auto, xla, onednn'):
    onednn.resolve('mkl')


def test_missing_library(monkeypatch, caplog):
  """An explicit 'onednn' says why and how to fix it; 'auto' falls back, saying so once."""
  monkeypatch.setattr(onednn, 'load_error', lambda: 'build/libonednn_conv.so is not built')
  with pytest.raises(RuntimeError, match='is not built. Build the library with `make onednn`'):
    onednn.resolve('onednn')
  with caplog.at_level(logging.WARNING):
    assert onednn.resolve('auto') == 'xla'
    assert onednn.resolve('auto') == 'xla'
  assert [r.message for r in caplog.records].count(
    'conv_impl="auto": using XLA\'s convolutions, not oneDNN\'s: '
    'build/libonednn_conv.so is not built.'
  ) == 1


def test_mixed_dtypes_are_refused():
  with pytest.raises(ValueError, match='must both be float32 or both bfloat16'):
    onednn.conv_general_dilated(
      jnp.zeros((1, 4, 4, 2)), jnp.zeros((3, 3, 2, 2), jnp.bfloat16), (1, 1), 'SAME'
    )


@needs_library
def test_one_thread_gives_the_same_result():
  try:
    onednn.set_threads(1)
    check((4, 16, 16, 16), (3, 3, 16, 32), (1, 1), 'SAME')
  finally:
    onednn.set_threads(0)


def test_explicit_onednn_without_library_is_refused(monkeypatch):
  monkeypatch.setattr(onednn, 'load_error', lambda: 'build/libonednn_conv.so is not built')
  with pytest.raises(RuntimeError, match='cannot run: build/libonednn_conv.so is not built'):
    onednn.conv_general_dilated(
      jnp.zeros((1, 4, 4, 2)), jnp.zeros((3, 3, 2, 2)), (1, 1), 'SAME', impl='onednn'
    )


@needs_library
def test_bfloat16_without_processor_support(monkeypatch, caplog):
  """Where oneDNN has no bf16 kernels: 'auto' uses XLA for bf16 models, 'onednn' refuses."""
  monkeypatch.setattr(onednn, 'bf16_error', lambda: 'no bfloat16 here')
  with caplog.at_level(logging.WARNING):
    assert onednn.resolve('auto', jnp.bfloat16) == 'xla'
  assert 'no bfloat16 here' in caplog.text
  assert onednn.resolve('auto', jnp.float32) == 'onednn'
  with pytest.raises(RuntimeError, match='no bfloat16 here. Use float32'):
    onednn.resolve('onednn', jnp.bfloat16)
