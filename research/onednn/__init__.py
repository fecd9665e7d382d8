"""2-D convolutions by oneDNN on CPU, called from jitted JAX through XLA's typed FFI.

XLA:CPU's own convolutions are the slow part of a CPU train step (results/bench_cpu.md);
PyTorch's CPU convolutions are oneDNN's. `conv` computes `lax.conv_general_dilated` for
NHWC images and HWIO kernels by oneDNN primitives (conv.cc, built by `make onednn` into
build/), with its gradient (`custom_vjp`: input and kernel gradients are oneDNN's too) and a
batching rule folding a vmapped axis into the batch or the feature groups, as XLA does, and
a partitioning rule (custom_partitioning) so that on a batch-split mesh each device
convolves its own images instead of gathering the batch.

`resolve(conv_impl)` turns the models' `conv_impl` ('auto', 'xla', 'onednn') into the one
used: 'auto' is oneDNN on CPU when the library loaded and XLA otherwise (GPU and TPU keep
XLA). `conv_general_dilated` is what the models' `Conv` layer calls.
"""

import functools
import logging
from typing import Optional, Sequence, Tuple, Union

import jax
from jax import lax
from jax.experimental.custom_partitioning import custom_partitioning
import jax.numpy as jnp
import numpy as np

from research.onednn import library
from research.onednn.library import IMPLS
from research.onednn.library import load_error
from research.onednn.library import set_threads

_DIMS = ('NHWC', 'HWIO', 'NHWC')


@functools.cache
def bf16_error() -> Optional[str]:
  """None when oneDNN runs bfloat16 convolutions on this processor; otherwise why not
  (oneDNN 3.2 needs AVX512-BF16 or AMX, or AVX2-VNNI-2, for them)."""
  if load_error():
    return load_error()
  x, kernel = jnp.ones((1, 4, 4, 8), jnp.bfloat16), jnp.ones((3, 3, 8, 8), jnp.bfloat16)
  forward_and_gradients = jax.jit(  # all three primitives: any may lack a bf16 kernel
    lambda x, k: jax.grad(
      lambda x, k: conv_general_dilated(x, k, (1, 1), 'SAME').astype(jnp.float32).sum(), (0, 1)
    )(x, k)
  )
  try:
    jax.block_until_ready(forward_and_gradients(x, kernel))
  except jax.errors.JaxRuntimeError:  # oneDNN found no implementation for this processor
    return (
      'oneDNN has no bfloat16 convolution for this processor (it needs AVX512-BF16, AMX '
      'or AVX2-VNNI-2)'
    )
  return None


def resolve(conv_impl: str, dtype=jnp.float32) -> str:
  """'xla' or 'onednn', the implementation `conv_impl` means here for `dtype`. 'auto' says
  once, in one line, when it falls back to XLA on CPU; an explicit 'onednn' that cannot run
  raises, saying why and how to fix it."""
  if conv_impl not in IMPLS:
    raise ValueError(f'conv_impl must be one of {", ".join(IMPLS)}; got {conv_impl!r}.')
  if conv_impl == 'xla':
    return 'xla'
  on_cpu = jax.default_backend() == 'cpu'
  why = load_error() or (bf16_error() if jnp.dtype(dtype) == jnp.bfloat16 else None)
  if conv_impl == 'onednn':
    if not on_cpu:
      raise ValueError(
        f'conv_impl="onednn" runs on CPU only; this backend is '
        f'{jax.default_backend()}. Use conv_impl="auto" or "xla".'
      )
    if load_error():
      library.refuse(load_error())
    if why:
      raise RuntimeError(
        f'conv_impl="onednn" cannot run: {why}. Use float32 (model.dtype), '
        f'or conv_impl="auto" or "xla".'
      )
    return 'onednn'
  if on_cpu and why:
    _say_once(f'conv_impl="auto": using XLA\'s convolutions, not oneDNN\'s: {why}.')
    return 'xla'
  return 'onednn' if on_cpu else 'xla'


@functools.cache
def _say_once(message: str):
  logging.getLogger(__name__).warning(message)


def conv_general_dilated(
  x,
  kernel,
  strides: Sequence[int],
  padding: Union[str, Sequence[Tuple[int, int]]],
  kernel_dilation: Sequence[int] = (1, 1),
  feature_group_count: int = 1,
  impl: str = 'onednn',
):
  """`lax.conv_general_dilated(x, kernel, strides, padding, rhs_dilation=kernel_dilation,
  dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=...)` by `impl` ('xla'
  or 'onednn', see `resolve`). x and kernel: float32 or bfloat16, the same dtype. oneDNN
  cannot pad negatively: such a convolution goes to XLA."""
  if x.ndim != 4 or kernel.ndim != 4:
    raise ValueError(
      f'conv_general_dilated takes x [B, H, W, C] and kernel [KH, KW, C/groups, '
      f'O]; got shapes {x.shape} and {kernel.shape}.'
    )
  if x.dtype != kernel.dtype or x.dtype not in (jnp.float32, jnp.bfloat16):
    raise ValueError(
      f'x and kernel must both be float32 or both bfloat16; got {x.dtype} and '
      f'{kernel.dtype}. Cast them to one of these first.'
    )
  strides, dilation = tuple(strides), tuple(kernel_dilation)
  window = [(k - 1) * d + 1 for k, d in zip(kernel.shape[:2], dilation)]
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(x.shape[1:3], window, strides, padding)
  padding = tuple((int(lo), int(hi)) for lo, hi in padding)
  if impl == 'onednn' and load_error():
    library.refuse(load_error())
  if impl == 'xla' or min(min(p) for p in padding) < 0:
    return lax.conv_general_dilated(
      x,
      kernel,
      strides,
      padding,
      rhs_dilation=dilation,
      dimension_numbers=_DIMS,
      feature_group_count=feature_group_count,
    )
  # Where the stride leaves the last rows (columns) of the padded image unread, oneDNN's
  # kernel gradient is wrong (tests/test_onednn.py): drop them, padding first, then pixels.
  lo, hi, keep = [], [], []
  for n, (a, b), k, s in zip(x.shape[1:3], padding, window, strides):
    unread = (n + a + b - k) % s
    lo.append(a)
    hi.append(max(b - unread, 0))
    keep.append(n - max(unread - b, 0))
  if keep != list(x.shape[1:3]):
    x = x[:, : keep[0], : keep[1]]
  lo, hi = tuple(lo), tuple(hi)
  return _conv(x, kernel, strides, lo, hi, dilation, feature_group_count)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _conv(x, kernel, strides, lo, hi, dilation, groups):
  return _conv_fwd(x, kernel, strides, lo, hi, dilation, groups)[0]


def _conv_fwd(x, kernel, strides, lo, hi, dilation, groups):
  window = [(k - 1) * d + 1 for k, d in zip(kernel.shape[:2], dilation)]
  spatial = tuple(
    (n + a + b - k) // s + 1 for n, a, b, k, s in zip(x.shape[1:3], lo, hi, window, strides)
  )
  out = (x.shape[0], *spatial, kernel.shape[3])
  y = _op('forward', out, strides, lo, hi, dilation, groups)(x, kernel)
  return y, (x, kernel)


def _conv_bwd(strides, lo, hi, dilation, groups, residuals, dy):
  x, kernel = residuals
  dy = dy.astype(x.dtype)
  dx = _op('input_grad', x.shape, strides, lo, hi, dilation, groups)(dy, kernel)
  dk = _op('kernel_grad', kernel.shape, strides, lo, hi, dilation, groups)(x, dy)
  return dx, dk


_conv.defvjp(_conv_fwd, _conv_bwd)


@functools.cache
def _op(kind: str, out_shape, strides, lo, hi, dilation, groups: int):
  """The FFI call (a, b) -> out of one `kind`: 'forward' (x, kernel) -> y, 'input_grad'
  (dy, kernel) -> dx, 'kernel_grad' (x, dy) -> dkernel, with its partitioning and
  batching rules."""

  def call(a, b):  # on whole arrays, or on one device's rows of a batch-split mesh
    shape = out_shape if kind == 'kernel_grad' else (a.shape[0], *out_shape[1:])
    ffi = jax.ffi.ffi_call(library.TARGETS[kind], jax.ShapeDtypeStruct(shape, a.dtype))
    return ffi(
      a,
      b,
      strides=np.array(strides, np.int64),
      pad_lo=np.array(lo, np.int64),
      pad_hi=np.array(hi, np.int64),
      dilation=np.array(dilation, np.int64),
      groups=np.int64(groups),
    )

  def partition(mesh, arg_shapes, result_shape):
    """Each device convolves its own images (batch split as the first operand's, the rest
    replicated); a kernel gradient is then summed over the devices."""
    del result_shape
    spec = arg_shapes[0].sharding.spec
    rows = spec[0] if len(spec) else None
    split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(rows))
    whole = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    if kind == 'kernel_grad':
      lower = lambda a, b: call(a, b) if rows is None else jax.lax.psum(call(a, b), rows)
      return mesh, lower, whole, (split, split)
    return mesh, call, split, (split, whole)

  factors = {
    'forward': 'b h w c, k l i o -> b p q o',
    'input_grad': 'b p q o, k l i c -> b h w c',
    'kernel_grad': 'b h w c, b p q o -> k l i o',
  }[kind]
  others = dict.fromkeys(
    f for f in factors.replace(',', ' ').replace('->', ' ').split() if f != 'b'
  )
  partitioned = custom_partitioning(call)
  partitioned.def_partition(  # only the batch (b) may be split
    partition,
    sharding_rule=factors,
    need_replication_factors=tuple(others),
    reduction_factors=('b',) if kind == 'kernel_grad' else (),
  )

  @jax.custom_batching.custom_vmap
  def op(a, b):
    return partitioned(a, b)

  @op.def_vmap
  def rule(n, batched, a, b):
    """a, b batched along axis 0 (n) where `batched` says. An image-only batch joins the
    batch axis; otherwise the n problems become n times the feature groups."""
    a_batched, b_batched = batched
    same = lambda shape, g: _op(kind, shape, strides, lo, hi, dilation, g)
    if kind != 'kernel_grad' and not b_batched:  # same kernel: n times the images
      out = same((n * out_shape[0], *out_shape[1:]), groups)(_merge(a, 0), b)
      return out.reshape(n, *out_shape), True
    if kind == 'forward' and not a_batched and groups == 1:  # same image: n times the outputs
      out = same((*out_shape[:3], n * out_shape[3]), 1)(a, _to_channels(b))
      return _from_channels(out, n), True
    a, b = (
      t if t_batched else jnp.broadcast_to(t, (n, *t.shape))
      for t, t_batched in zip((a, b), batched)
    )
    # Image channels and kernel outputs alike: the n problems as n times the groups.
    out = same((*out_shape[:3], n * out_shape[3]), n * groups)(_to_channels(a), _to_channels(b))
    return _from_channels(out, n), True

  return op


def _merge(t, axis: int):
  """Merges t's leading (vmapped) axis into `axis` + 1, leading part outermost."""
  t = jnp.moveaxis(t, 0, axis)
  shape = t.shape
  return t.reshape(*shape[:axis], shape[axis] * shape[axis + 1], *shape[axis + 2 :])


def _to_channels(t):
  """[n, ..., C] -> [..., n·C]: the vmapped axis as the outermost part of the channels."""
  return _merge(t, t.ndim - 2)


def _from_channels(t, n: int):
  """[..., n·C] -> [n, ..., C], undoing `_to_channels`."""
  return jnp.moveaxis(t.reshape(*t.shape[:-1], n, t.shape[-1] // n), -2, 0)


@functools.cache
def lax_conv(impl: str):
  """A function with `lax.conv_general_dilated`'s signature (what `nn.Conv` takes as
  `conv_general_dilated`) computing by `impl` ('xla' or 'onednn') what oneDNN covers here:
  2-D, NHWC/HWIO, no input dilation, no batch groups, float32 or bfloat16; the rest by XLA."""
  if impl not in ('xla', 'onednn'):
    raise ValueError(f'lax_conv takes "xla" or "onednn" (see resolve); got {impl!r}.')
  return functools.partial(_lax_compatible, impl=impl)


def _lax_compatible(
  lhs,
  rhs,
  window_strides,
  padding,
  lhs_dilation=None,
  rhs_dilation=None,
  dimension_numbers=None,
  feature_group_count=1,
  batch_group_count=1,
  precision=None,
  preferred_element_type=None,
  *,
  impl,
):
  ours = (
    impl == 'onednn'
    and lhs.ndim == 4
    and rhs.ndim == 4
    and lhs.dtype == rhs.dtype
    and lhs.dtype in (jnp.float32, jnp.bfloat16)
    and tuple(lhs_dilation or (1, 1)) == (1, 1)
    and batch_group_count == 1
    and preferred_element_type in (None, lhs.dtype)
    and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    == lax.conv_dimension_numbers(lhs.shape, rhs.shape, _DIMS)
  )
  if not ours:
    return lax.conv_general_dilated(
      lhs,
      rhs,
      window_strides,
      padding,
      lhs_dilation,
      rhs_dilation,
      dimension_numbers,
      feature_group_count,
      batch_group_count,
      precision,
      preferred_element_type,
    )
  return conv_general_dilated(
    lhs, rhs, window_strides, padding, rhs_dilation or (1, 1), feature_group_count, impl
  )
