"""Benchmark measurements: upsamplers alone, whole train steps, convolutions, designs.

Every timing is a median of `repeats` calls after warm-up, each ended with
`block_until_ready`, so that asynchronous dispatch does not hide the work. What a table
compares side by side is timed in turn (cost.interleaved_median_seconds), so that the
shared machine's slow spells do not fall on one row.
"""

import functools

import flax
import jax
from jax.extend import core as jax_core
import numpy as np

from research import cost
from research import models
from research import pooling
from research import upsamplers
from research.models import layers


def milliseconds(calls: dict, repeats: int, warmup: int = 2) -> dict:
  """cost.interleaved_median_seconds, in milliseconds."""
  return {k: 1e3 * t for k, t in cost.interleaved_median_seconds(calls, repeats, warmup).items()}


def _memory_mb(compiled) -> float:
  """Arguments + outputs + temporaries of a compiled program (XLA's memory analysis)."""
  m = compiled.memory_analysis()
  if m is None:
    return float('nan')
  return (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes) / 2**20


def upsampler_rows(names, batch: int, size: int, channels: int, repeats: int):
  """Forward and forward+backward of each ×2 upsampler on x: [batch, size, size, channels].

  Every upsampler gets a full guide, made once outside the timing: the switches of a real
  max-pool of a [batch, 2·size, 2·size, C] input, that input as the skip, and sigmoid
  indices of the same shape; the op under test is the upsampling itself.
  """
  key = jax.random.key(0)
  x = jax.random.normal(key, (batch, size, size, channels))
  skip = jax.nn.relu(jax.random.normal(key, (batch, 2 * size, 2 * size, channels)))
  _, switches = pooling.max_pool_with_switches(skip)
  guide = upsamplers.Guide(switches=switches, skip=skip, indices=jax.nn.sigmoid(skip))
  cotangent = jax.random.normal(key, (batch, 2 * size, 2 * size, channels))
  rows, calls = [], {}
  for name in names:
    module = upsamplers.build(name)
    params = module.init(key, x, guide)

    def forward(params, x):
      return module.apply(params, x, guide)

    def forward_backward(params, x):
      """The output and the gradients for a fixed cotangent. Returning the output keeps
      XLA from skipping the forward pass, whose result the backward of a linear op
      does not need (as in a network, where the next layer consumes it)."""
      out, vjp = jax.vjp(forward, params, x)
      return out, vjp(cotangent[..., : out.shape[-1]])

    fwd = jax.jit(forward).lower(params, x).compile()
    fwd_bwd = jax.jit(forward_backward).lower(params, x).compile()
    calls[name, 'forward_ms'] = functools.partial(fwd, params, x)
    calls[name, 'forward_backward_ms'] = functools.partial(fwd_bwd, params, x)
    rows.append(
      {
        'upsampler': name,
        'forward_backward_memory_mb': _memory_mb(fwd_bwd),
        'forward_memory_mb': _memory_mb(fwd),
        'params': cost.count_params(params),
        'forward_gflops': cost.compiled_flops(fwd) / 1e9,
      }
    )
  ms = milliseconds(calls, repeats)
  for row in rows:
    for key in ('forward_ms', 'forward_backward_ms'):
      row[key] = ms[row['upsampler'], key]
  return rows


def group_norm_rows(batch: int, shapes, repeats: int):
  """GroupNorm + ReLU forward and backward on x: [batch, size, size, channels] for each
  (size, channels): layers.GroupNorm (gradient by hand, the models' default) against
  Flax's nn.GroupNorm differentiated by JAX, and torch.nn.GroupNorm where installed."""
  try:
    import torch  # optional dependency: its columns are left out without it
  except ImportError:
    torch = None
  rows = []
  for size, channels in shapes:
    x = jax.random.normal(jax.random.key(0), (batch, size, size, channels))
    groups = layers.groups(channels)
    calls = {}
    for key, module in [
      ('flax_ms', flax.linen.GroupNorm(num_groups=groups)),
      ('fused_ms', layers.GroupNorm(groups)),
    ]:
      params = module.init(jax.random.key(1), x)
      loss = lambda p, x, m=module: (jax.nn.relu(m.apply(p, x)) ** 2).sum()
      grad = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, x).compile()
      calls[key] = functools.partial(grad, params, x)
    if torch is not None:
      tx = torch.randn(batch, channels, size, size, requires_grad=True)
      norm = torch.nn.GroupNorm(groups, channels, eps=1e-6)
      calls['torch_ms'] = lambda tx=tx, norm=norm: (torch.relu(norm(tx)) ** 2).sum().backward()
    row = {'shape': f'{batch}×{size}×{size}×{channels}', **milliseconds(calls, repeats)}
    row['speedup'] = row['flax_ms'] / row['fused_ms']
    rows.append(row)
  return rows


def model_convolutions(model, x) -> list[dict]:
  """Every convolution of model's forward pass on x: [B, H, W, C], from its jaxpr: input and
  kernel shapes, its parameters, and how many times the pass runs it."""
  params = model.init(jax.random.key(0), x)
  jaxpr = jax.make_jaxpr(model.apply)(params, x)
  found = {}

  def visit(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == 'conv_general_dilated':
        lhs, rhs = (v.aval.shape for v in eqn.invars)
        key = (lhs, rhs, repr(sorted(eqn.params.items())))
        found.setdefault(
          key,
          {'x': lhs, 'kernel': rhs, 'primitive': eqn.primitive, 'params': eqn.params, 'count': 0},
        )
        found[key]['count'] += 1
      for sub in jax_core.jaxprs_in_params(eqn.params):
        visit(sub)

  visit(jaxpr.jaxpr)
  return list(found.values())


def convolution_rows(model, x, repeats: int) -> list[dict]:
  """Forward, input-gradient and kernel-gradient ms of each convolution in model's forward
  pass (model_convolutions), by XLA and, where torch is installed, by PyTorch (channels_last,
  the faster layout in the train-step comparison). Only stride-1 'SAME' convolutions over
  NHWC/HWIO have a PyTorch twin; the others get no PyTorch time."""
  try:
    import torch  # optional dependency: its columns are left out without it
  except ImportError:
    torch = None
  rows = []
  for conv in model_convolutions(model, x):
    x_shape, k_shape, p = conv['x'], conv['kernel'], conv['params']
    kx, kk, kd = jax.random.split(jax.random.key(0), 3)
    cx = jax.random.normal(kx, x_shape)
    ck = jax.random.normal(kk, k_shape) * 0.1
    fwd = lambda a, k, conv=conv: conv['primitive'].bind(a, k, **conv['params'])
    dy = jax.random.normal(kd, jax.eval_shape(fwd, cx, ck).shape)
    programs = {
      'forward': (fwd, (cx, ck)),
      'input_grad': (lambda a, k, g: jax.vjp(lambda a: fwd(a, k), a)[1](g)[0], (cx, ck, dy)),
      'kernel_grad': (lambda a, k, g: jax.vjp(lambda k: fwd(a, k), k)[1](g)[0], (cx, ck, dy)),
    }
    # The image's own gradient is never needed: a train step skips it (XLA and PyTorch).
    row = {
      'x': '×'.join(map(str, x_shape)),
      'kernel': '×'.join(map(str, k_shape)),
      'count': conv['count'],
      'input_grad_needed': x_shape != x.shape,
    }
    calls = {
      f'jax_{name}_ms': functools.partial(jax.jit(fn).lower(*args).compile(), *args)
      for name, (fn, args) in programs.items()
    }
    kh, kw = k_shape[:2]
    plain = (
      p['window_strides'] == (1, 1)
      and p['lhs_dilation'] == (1, 1)
      and p['rhs_dilation'] == (1, 1)
      and p['feature_group_count'] == 1
      and p['batch_group_count'] == 1
      and kh % 2
      and kw % 2
      and tuple(p['padding']) == ((kh // 2, kh // 2), (kw // 2, kw // 2))
      and p['dimension_numbers']
      == jax.lax.conv_dimension_numbers(x_shape, k_shape, ('NHWC', 'HWIO', 'NHWC'))
    )
    if torch is not None and plain:
      last = torch.channels_last
      tx = torch.from_numpy(np.array(cx)).permute(0, 3, 1, 2).contiguous(memory_format=last)
      tk = torch.from_numpy(np.array(ck)).permute(3, 2, 0, 1).contiguous(memory_format=last)
      tg = torch.from_numpy(np.array(dy)).permute(0, 3, 1, 2).contiguous(memory_format=last)
      pad = (kh // 2, kw // 2)
      calls['torch_forward_ms'] = lambda: torch.nn.functional.conv2d(tx, tk, padding=pad)
      calls['torch_input_grad_ms'] = lambda: torch.nn.grad.conv2d_input(
        tx.shape, tk, tg, padding=pad
      )
      calls['torch_kernel_grad_ms'] = lambda: torch.nn.grad.conv2d_weight(
        tx, tk.shape, tg, padding=pad
      )
    elif torch is not None:
      row.update({f'torch_{name}_ms': float('nan') for name in programs})
    # (No autograd graph is recorded: none of these tensors requires grad.)
    row.update(milliseconds(calls, repeats))
    rows.append(row)
  return rows


def design_rows(designs, num_classes: int, image_size: int, batch: int, repeats: int):
  """Inference cost of each (arch, width) in `designs`: parameters, forward GFLOPs per
  image (XLA's count), forward ms per image at `batch`, and the forward's memory (XLA's
  memory analysis: arguments, outputs and temporaries)."""
  rows, calls = [], {}
  x = np.zeros((batch, image_size, image_size, 3), np.float32)
  for arch, width in designs:
    model = models.build(arch, upsampler='nearest', num_classes=num_classes, width=width)
    params = model.init(jax.random.key(0), x[:1])
    forward = jax.jit(model.apply).lower(params, x).compile()  # timed and measured once
    calls[arch, width] = functools.partial(forward, params, x)
    rows.append(
      {
        'arch': arch,
        'width': width,
        'params': cost.count_params(params),
        'gflops_per_image': cost.forward_gflops_per_image(model.apply, params, x.shape[1:]),
        'forward_memory_mb': _memory_mb(forward),
      }
    )
  ms = milliseconds(calls, repeats)
  for row in rows:
    row['forward_ms_per_image'] = ms[row['arch'], row['width']] / batch
  return rows


def switch_memory(batch: int, size: int, channels: int) -> dict:
  """What max-unpooling keeps per pool: uint8 switches vs the float32 pre-pool activations."""
  windows = batch * size * size * channels
  return {'switches_mb': windows / 2**20, 'prepool_activations_mb': 16 * windows / 2**20}
