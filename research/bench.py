"""Benchmarks: upsamplers alone, whole train steps, and the input pipeline.

Every timing is a median of `repeats` calls after warm-up, each ended with
`block_until_ready`, so that asynchronous dispatch does not hide the work. What a table
compares side by side is timed in turn (cost.interleaved_median_seconds), so that the
shared machine's slow spells do not fall on one row.
"""
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import flax
import jax
from jax.extend import core as jax_core
import numpy as np
import optax

from research import cost
from research import data
from research import pooling
from research import train
from research import upsamplers
from research import xla_flags as xla_flags_lib
from research.models import layers


def _milliseconds(calls: dict, repeats: int, warmup: int = 2) -> dict:
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

  max_unpool gets the switches of a real max-pool of a [batch, 2·size, 2·size, C] input
  (computed once, outside the timing): the op under test is the unpooling itself.
  """
  key = jax.random.key(0)
  x = jax.random.normal(key, (batch, size, size, channels))
  _, switches = pooling.max_pool_with_switches(
      jax.nn.relu(jax.random.normal(key, (batch, 2 * size, 2 * size, channels))))
  cotangent = jax.random.normal(key, (batch, 2 * size, 2 * size, channels))
  rows, calls = [], {}
  for name in names:
    module = upsamplers.build(name)
    params = module.init(key, x, upsamplers.Guide(switches=switches))

    def forward(params, x):
      return module.apply(params, x, upsamplers.Guide(switches=switches))

    def forward_backward(params, x):
      """The output and the gradients for a fixed cotangent. Returning the output keeps
      XLA from skipping the forward pass, whose result the backward of a linear op
      does not need (as in a network, where the next layer consumes it)."""
      out, vjp = jax.vjp(forward, params, x)
      return out, vjp(cotangent[..., :out.shape[-1]])

    fwd = jax.jit(forward).lower(params, x).compile()
    fwd_bwd = jax.jit(forward_backward).lower(params, x).compile()
    calls[name, 'forward_ms'] = functools.partial(fwd, params, x)
    calls[name, 'forward_backward_ms'] = functools.partial(fwd_bwd, params, x)
    rows.append({'upsampler': name, 'forward_backward_memory_mb': _memory_mb(fwd_bwd),
                 'params': cost.count_params(params)})
  ms = _milliseconds(calls, repeats)
  for row in rows:
    for key in ('forward_ms', 'forward_backward_ms'):
      row[key] = ms[row['upsampler'], key]
  return rows


def group_norm_rows(batch: int, shapes, repeats: int):
  """GroupNorm + ReLU forward and backward on x: [batch, size, size, channels] for each
  (size, channels): layers.GroupNorm (gradient by hand, the models' default) against
  Flax's nn.GroupNorm differentiated by JAX, and torch.nn.GroupNorm where installed."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    torch = None
  rows = []
  for size, channels in shapes:
    x = jax.random.normal(jax.random.key(0), (batch, size, size, channels))
    groups = layers.groups(channels)
    calls = {}
    for key, module in [('flax_ms', flax.linen.GroupNorm(num_groups=groups)),
                        ('fused_ms', layers.GroupNorm(groups))]:
      params = module.init(jax.random.key(1), x)
      loss = lambda p, x, m=module: (jax.nn.relu(m.apply(p, x)) ** 2).sum()
      grad = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, x).compile()
      calls[key] = functools.partial(grad, params, x)
    if torch is not None:
      tx = torch.randn(batch, channels, size, size, requires_grad=True)
      norm = torch.nn.GroupNorm(groups, channels, eps=1e-6)
      calls['torch_ms'] = lambda tx=tx, norm=norm: (torch.relu(norm(tx)) ** 2).sum().backward()
    row = {'shape': f'{batch}×{size}×{size}×{channels}', **_milliseconds(calls, repeats)}
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
        found.setdefault(key, {'x': lhs, 'kernel': rhs, 'primitive': eqn.primitive,
                              'params': eqn.params, 'count': 0})
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
    import torch  # pylint: disable=g-import-not-at-top
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
    programs = {'forward': (fwd, (cx, ck)),
                'input_grad': (lambda a, k, g: jax.vjp(lambda a: fwd(a, k), a)[1](g)[0], (cx, ck, dy)),
                'kernel_grad': (lambda a, k, g: jax.vjp(lambda k: fwd(a, k), k)[1](g)[0], (cx, ck, dy))}
    # The image's own gradient is never needed: a train step skips it (XLA and PyTorch).
    row = {'x': '×'.join(map(str, x_shape)), 'kernel': '×'.join(map(str, k_shape)),
           'count': conv['count'], 'input_grad_needed': x_shape != x.shape}
    calls = {f'jax_{name}_ms': functools.partial(jax.jit(fn).lower(*args).compile(), *args)
             for name, (fn, args) in programs.items()}
    kh, kw = k_shape[:2]
    plain = (p['window_strides'] == (1, 1) and p['lhs_dilation'] == (1, 1)
             and p['rhs_dilation'] == (1, 1) and p['feature_group_count'] == 1
             and p['batch_group_count'] == 1 and kh % 2 and kw % 2
             and tuple(p['padding']) == ((kh // 2, kh // 2), (kw // 2, kw // 2))
             and p['dimension_numbers'] == jax.lax.conv_dimension_numbers(
                 x_shape, k_shape, ('NHWC', 'HWIO', 'NHWC')))
    if torch is not None and plain:
      last = torch.channels_last
      tx = torch.from_numpy(np.array(cx)).permute(0, 3, 1, 2).contiguous(memory_format=last)
      tk = torch.from_numpy(np.array(ck)).permute(3, 2, 0, 1).contiguous(memory_format=last)
      tg = torch.from_numpy(np.array(dy)).permute(0, 3, 1, 2).contiguous(memory_format=last)
      pad = (kh // 2, kw // 2)
      calls['torch_forward_ms'] = lambda: torch.nn.functional.conv2d(tx, tk, padding=pad)
      calls['torch_input_grad_ms'] = lambda: torch.nn.grad.conv2d_input(
          tx.shape, tk, tg, padding=pad)
      calls['torch_kernel_grad_ms'] = lambda: torch.nn.grad.conv2d_weight(
          tx, tk.shape, tg, padding=pad)
    elif torch is not None:
      row.update({f'torch_{name}_ms': float('nan') for name in programs})
    # (No autograd graph is recorded: none of these tensors requires grad.)
    row.update(_milliseconds(calls, repeats))
    rows.append(row)
  return rows


def design_rows(designs, num_classes: int, image_size: int, batch: int, repeats: int):
  """Inference cost of each (arch, width) in `designs`: parameters, forward GFLOPs per
  image (XLA's count), forward ms per image at `batch`, and the forward's memory (XLA's
  memory analysis: arguments, outputs and temporaries)."""
  from research import models  # pylint: disable=g-import-not-at-top
  rows, calls = [], {}
  x = np.zeros((batch, image_size, image_size, 3), np.float32)
  for arch, width in designs:
    model = models.build(arch, upsampler='nearest', num_classes=num_classes, width=width)
    params = model.init(jax.random.key(0), x[:1])
    forward = jax.jit(model.apply).lower(params, x).compile()  # timed and measured once
    calls[arch, width] = functools.partial(forward, params, x)
    rows.append({
        'arch': arch, 'width': width, 'params': cost.count_params(params),
        'gflops_per_image': cost.forward_gflops_per_image(model.apply, params, x.shape[1:]),
        'forward_memory_mb': _memory_mb(forward)})
  ms = _milliseconds(calls, repeats)
  for row in rows:
    row['forward_ms_per_image'] = ms[row['arch'], row['width']] / batch
  return rows


def switch_memory(batch: int, size: int, channels: int) -> dict:
  """What max-unpooling keeps per pool: uint8 switches vs the float32 pre-pool activations."""
  windows = batch * size * size * channels
  return {'switches_mb': windows / 2**20, 'prepool_activations_mb': 16 * windows / 2**20}


def compile_train_step(config, num_seeds: int = 1, donate: bool = True):
  """The real sharded train step of research.train for `config` (random data), compiled:
  (row, step). row: parameters, images and FLOPs per step, compile seconds by stage; step:
  a zero-argument call running one step (see `timed`)."""
  info = data.dataset_info(config.data)
  mesh = train.make_mesh(config)
  s, b = info.image_size, config.batch_size
  rng = np.random.default_rng(0)
  batch_np = {'image': rng.random((num_seeds, b, s, s, 3), np.float32),
              'label': rng.integers(0, info.num_classes, (num_seeds, b, s, s)).astype(np.int32)}
  model = train.build_model(config, info.num_classes)
  n = train.pixels_per_image(config, model, s)
  if n:  # sampled pixels, as the training loop draws them
    batch_np['pixels'] = np.stack([train.sample_pixels(i, 1, b, s * s, n) for i in range(num_seeds)])
  tx = train.make_optimizer(config)
  step_fn, _, batch_sharding, _, replicated = train.make_steps(
      model, tx, config, info.num_classes, mesh, num_seeds, donate=donate)
  init = jax.jit(train.over_seeds(lambda k: train.create_state(model, tx, s, k), num_seeds),
                 out_shardings=replicated)
  state = init(train.seed_keys(range(num_seeds)))
  params = cost.count_params(state['params']) // num_seeds
  batch = train.to_global(batch_np, batch_sharding)
  # JAX's three stages, timed apart: the persistent cache serves only the last.
  t0 = time.perf_counter()
  traced = step_fn.trace(state, batch)
  t1 = time.perf_counter()
  lowered = traced.lower()
  t2 = time.perf_counter()
  compiled = lowered.compile()
  t3 = time.perf_counter()
  holder = [state]

  def step():  # threads the (donated) state through, as the training loop does
    holder[0], metrics = compiled(holder[0], batch)
    return metrics['loss']

  return {'params': params, 'images': num_seeds * b, 'flops': cost.compiled_flops(compiled),
          'compile_seconds': t3 - t0, 'trace_seconds': t1 - t0, 'lower_seconds': t2 - t1,
          'xla_compile_seconds': t3 - t2}, step


def timed(row: dict, seconds: float) -> dict:
  """A compile_train_step row with its measured seconds per step: ms/step, images/s
  (all seeds), GFLOP/s."""
  return {**row, 'step_ms': 1e3 * seconds, 'images_per_second': row['images'] / seconds,
          'gflops_per_second': row['flops'] / seconds / 1e9}


def train_step(config, num_seeds: int = 1, repeats: int = 10, donate: bool = True) -> dict:
  """compile_train_step's row, timed alone."""
  row, step = compile_train_step(config, num_seeds, donate)
  return timed(row, cost.median_seconds(step, repeats=repeats))


def train_step_rows(config, archs, names, repeats: int):
  """The train step of each architecture × upsampler, compiled first, then timed in turn."""
  compiled = {}
  for arch in archs:
    for name in names:
      c = config.copy_and_resolve_references()
      c.model.arch, c.model.upsampler = arch, name
      compiled[arch, name] = compile_train_step(c)
  seconds = cost.interleaved_median_seconds({k: step for k, (_, step) in compiled.items()},
                                            repeats)
  return [{'arch': arch, 'upsampler': name, **timed(row, seconds[arch, name])}
          for (arch, name), (row, _) in compiled.items()]


# Nominal peak FP32 FLOP/s per core and cycle (FMA = 2 FLOPs) for processors whose vector
# units are documented; None elsewhere. AMD Zen 4 (family 25, models 0x10-0x1f, 0x60-0x7f,
# 0xa0-0xaf): two 256-bit FMA pipes, AVX-512 issued as two halves -> 2 × 8 × 2 = 32.
_ZEN4_MODELS = set(range(0x10, 0x20)) | set(range(0x60, 0x80)) | set(range(0xa0, 0xb0))
# GPUs: dense FP32 without tensor cores (NVIDIA data sheets, SXM parts).
_GPU_PEAK_TFLOPS = {'H100': 67.0, 'H200': 67.0, 'A100': 19.5}


def _cpuinfo() -> dict:
  try:
    with open('/proc/cpuinfo') as f:
      first = f.read().split('\n\n')[0]
  except OSError:
    return {}
  return dict((k.strip(), v.strip()) for k, _, v in
              (line.partition(':') for line in first.splitlines()) if k.strip())


def peak_gflops() -> tuple[float | None, str]:
  """The device's nominal FP32 peak in GFLOP/s and how it was derived (None: unknown)."""
  device = jax.devices()[0]
  if device.platform == 'gpu':
    for name, tflops in _GPU_PEAK_TFLOPS.items():
      if name in device.device_kind:
        return 1e3 * tflops, f'{name} data sheet, dense FP32 (no tensor cores)'
    return None, f'unknown GPU {device.device_kind}'
  if device.platform == 'cpu':
    info = _cpuinfo()
    try:
      family, model, mhz = int(info['cpu family']), int(info['model']), float(info['cpu MHz'])
    except (KeyError, ValueError):
      return None, 'no /proc/cpuinfo'
    if family == 25 and model in _ZEN4_MODELS:
      cores = len(os.sched_getaffinity(0))
      return (cores * mhz * 32 / 1e3,
              f'AMD Zen 4: {cores} logical CPUs × {mhz / 1e3:.2f} GHz (clock now, /proc/cpuinfo) × 32 FP32 FLOP/cycle')
    return None, f'no documented vector width for CPU family {family} model {model}'
  return None, f'unknown platform {device.platform}'


_CHILD = """
import json, sys
from experiments import base
from research import bench
c = base.get_config()
c.model.arch, c.model.upsampler, c.model.width, c.batch_size = sys.argv[1:3] + [int(a) for a in sys.argv[3:5]]
c.model.dtype = sys.argv[6]
print(json.dumps(bench.train_step(c, repeats=int(sys.argv[5]))))
"""


def train_step_in_subprocess(arch: str, upsampler: str, width: int, batch: int, repeats: int,
                             xla_flags: str = '', env: dict | None = None,
                             dtype: str = 'float32') -> dict:
  """`train_step` of the base config (computing in `dtype`) in a fresh process, with
  `xla_flags` added to XLA_FLAGS, replacing the flags of the same names (XLA reads its
  flags once, when the backend starts), and `env` set."""
  inherited = xla_flags_lib.without(os.environ.get('XLA_FLAGS', ''), xla_flags)
  env = {**os.environ, **(env or {}), 'XLA_FLAGS': ' '.join(inherited + xla_flags.split())}
  out = subprocess.run([sys.executable, '-c', _CHILD, arch, upsampler, str(width), str(batch),
                        str(repeats), dtype], env=env, capture_output=True, text=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  if out.returncode != 0:
    return {'error': out.stderr.strip().splitlines()[-1] if out.stderr.strip() else 'failed'}
  return json.loads(out.stdout.strip().splitlines()[-1])


def torch_side_by_side(config, upsampler: str, width: int, repeats: int) -> dict:
  """The same U-Net trained by research.train (JAX) and by PyTorch eager (NCHW and
  channels_last), in this process, timed in turn on the same data shapes; refuses models
  of different sizes."""
  from research import torch_reference  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  c = _unet(config, upsampler, width)
  jax_row, jax_step = compile_train_step(c)
  info = data.dataset_info(c.data)
  s, b = info.image_size, c.batch_size
  rng = np.random.default_rng(0)
  images = rng.random((b, s, s, 3), np.float32)
  labels = rng.integers(0, info.num_classes, (b, s, s))
  calls = {'jax_ms': jax_step}
  for layout, channels_last in [('nchw', False), ('channels_last', True)]:
    torch.manual_seed(0)
    model = torch_reference.UNet(info.num_classes, upsampler, width,
                                 depth=c.model.options.get('depth', 4),
                                 upsampler_options=c.model.upsampler_options.to_dict())
    if torch_reference.count_params(model) != jax_row['params']:
      raise ValueError(f'PyTorch U-Net has {torch_reference.count_params(model):,} parameters, '
                       f'the Flax one {jax_row["params"]:,}: they are not the same network.')
    calls[f'torch_{layout}_ms'] = torch_reference.make_train_step(
        model, images, labels, c.optim.learning_rate, c.optim.weight_decay, c.optim.grad_clip,
        channels_last=channels_last)
  row = {'upsampler': upsampler, 'width': width, 'params': jax_row['params'],
         'torch_threads': torch.get_num_threads(),
         **_milliseconds(calls, repeats, warmup=3)}
  row['speedup'] = min(row['torch_nchw_ms'], row['torch_channels_last_ms']) / row['jax_ms']
  return row


def levers_section(config, xla_flags, repeats: int) -> list[str]:
  """Markdown: each lever alone against the baseline step of `config`'s U-Net, in one run.

  In-process levers are timed in turn with an in-process baseline; XLA flags (read once
  per process) compare with a fresh process without them. The baseline is measured again
  last, alone, so that the table shows how much the same step drifts within the run.
  """
  b = config.batch_size
  width, upsampler = config.model.width, config.model.upsampler
  peak, peak_note = peak_gflops()

  def variant(**fields):
    c = config.copy_and_resolve_references()
    for key, value in fields.items():
      c[key] = value
    return c

  bf16 = variant()
  bf16.model.dtype = 'bfloat16'
  in_process = {  # name: (compiled step, seeds), timed in turn
      'baseline: fp32, state donated, batch ' + str(b): (compile_train_step(config), 1),
      'no buffer donation': (compile_train_step(config, donate=False), 1),
      'bf16 compute (params and optimizer fp32)': (compile_train_step(bf16), 1),
      f'batch {2 * b} (larger effective batch)': (compile_train_step(variant(batch_size=2 * b)), 1),
      '3 seeds together (vmap), per seed': (compile_train_step(config, num_seeds=3), 3)}
  seconds = cost.interleaved_median_seconds(
      {name: step for name, ((_, step), _) in in_process.items()}, repeats)
  measured = {name: timed(row, seconds[name]) for name, ((row, _), _) in in_process.items()}
  base = next(iter(measured.values()))
  rows = [(name, measured[name], seeds, base) for name, (_, seeds) in in_process.items()]
  fresh = train_step_in_subprocess('unet', upsampler, width, b, repeats)
  defaults = ' '.join(f'{k}={v}' for k, v in xla_flags_lib.DEFAULTS.items())
  rows.append((f'fresh process, XLA flags of research/xla_flags.py ({defaults})', fresh, 1, fresh))
  for xla_flag in xla_flags:
    rows.append((f'XLA_FLAGS={xla_flag} (fresh process)', train_step_in_subprocess(
        'unet', upsampler, width, b, repeats, xla_flags=xla_flag), 1, fresh))
  # bf16 once more, with the convolutions handed to YNNPACK (XLA's default path) instead.
  fresh_bf16 = train_step_in_subprocess('unet', upsampler, width, b, repeats, dtype='bfloat16')
  rows.append(('fresh process, bf16 compute, XLA flags of research/xla_flags.py', fresh_bf16,
               1, fresh_bf16))
  ynn_convolutions = '--xla_cpu_experimental_ynn_fusion_type=+individual_convolution'
  rows.append((f'bf16 compute, XLA_FLAGS={ynn_convolutions} (fresh process; against the bf16 '
               'row above)', train_step_in_subprocess(
                   'unet', upsampler, width, b, repeats, xla_flags=ynn_convolutions,
                   dtype='bfloat16'), 1, fresh_bf16))
  rows.append(('baseline again, at the end', train_step(config, repeats=repeats), 1, base))
  lines = ['| lever | ms/step | images/s | vs its baseline | GFLOP/s | % of peak |',
           '|---|---|---|---|---|---|']
  for name, row, seeds, reference in rows:
    if 'error' in row or 'error' in reference:
      lines.append(f'| {name} | failed: {row.get("error", reference.get("error"))[:80]} | | | | |')
      continue
    rate = row['images_per_second'] / seeds
    if seeds > 1:
      name += f' ({seeds} × {b} images per step, {row["images_per_second"]:.0f} images/s in all)'
    pct = f'{100 * row["gflops_per_second"] / peak:.1f}' if peak else 'n/a'
    lines.append(f'| {name} | {row["step_ms"]:.1f} | {rate:.1f} | '
                 f'{rate / reference["images_per_second"]:.2f}× | {row["gflops_per_second"]:.1f} | '
                 f'{pct} |')
  size = config.data.image_size
  shapes = [(size >> level, width << level) for level in range(config.model.options.get('depth', 4) + 1)]
  norm_rows = group_norm_rows(b, shapes, repeats)
  lines += ['', 'GroupNorm + ReLU, forward and backward, at the shapes of the U-Net\'s blocks: '
            'layers.GroupNorm (its gradient written by hand, one reduction pass and one '
            'elementwise pass; what the models use) against Flax\'s nn.GroupNorm differentiated '
            'by JAX' + (', and torch.nn.GroupNorm.' if 'torch_ms' in norm_rows[0] else '.'), '',
            markdown_table(norm_rows, [
                ('shape', 'x', '{}'), ('flax_ms', 'nn.GroupNorm ms', '{:.2f}'),
                ('fused_ms', 'layers.GroupNorm ms', '{:.2f}'), ('speedup', 'speedup', '{:.2f}×')]
                + ([('torch_ms', 'PyTorch ms', '{:.2f}')] if 'torch_ms' in norm_rows[0] else []))]
  with tempfile.TemporaryDirectory() as cache:  # what research.train enables in every workdir root
    compiles = [train_step_in_subprocess('unet', upsampler, width, b, 1,
                                         env={'JAX_COMPILATION_CACHE_DIR': cache})
                for _ in range(2)]
  if all('error' not in c for c in compiles):
    first, second = compiles
    stages = ', '.join(f'{name} {first[key]:.2f} → {second[key]:.2f} s' for name, key in (
        ('tracing', 'trace_seconds'), ('lowering', 'lower_seconds'),
        ('XLA compilation', 'xla_compile_seconds')))
    lines += ['', f'Persistent compilation cache: the train step takes {first["compile_seconds"]:.1f} s '
              'from tracing to executable in a fresh process with an empty cache and '
              f'{second["compile_seconds"]:.1f} s in a second fresh process with the first one\'s '
              f'cache: **{first["compile_seconds"] / second["compile_seconds"]:.1f}× faster** '
              f'(target ≥ 5×). By stage: {stages}; XLA compilation alone '
              f'{first["xla_compile_seconds"] / second["xla_compile_seconds"]:.1f}× faster. '
              'JAX\'s cache is keyed on the lowered program, so tracing and lowering run in '
              'every process.']
  return [f'## Levers: U-Net width {width}, {upsampler}, batch {b}, '
          f'{config.data.image_size}×{config.data.image_size}', '',
          'Each lever alone, in this run; images/s per seed. In-process levers timed in turn '
          'with the first baseline row and against it; XLA flags in fresh processes, one after '
          'the other, against the fresh process without them; the last row repeats the '
          'baseline alone to show the drift. '
          f'Peak: {peak_note}' + (f' = {peak:.0f} GFLOP/s.' if peak else '.'), '',
          *lines, '']


def pytorch_section(config, models, repeats: int) -> list[str]:
  """Markdown: `torch_side_by_side` for each (width, upsampler) U-Net in `models`."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return ['## PyTorch side by side', '', 'Skipped: torch is not installed '
            '(`pip install torch==2.13.0`; it is not a dependency).', '']
  rows = [torch_side_by_side(config, upsampler, width, repeats) for width, upsampler in models]
  return [*_train_step_table(config, rows), *_convolution_section(config, rows[0], repeats)]


def _convolution_section(config, step_row, repeats: int) -> list[str]:
  """Markdown: convolution_rows of the first side-by-side U-Net, and how much of each
  framework's step its convolutions take."""
  width, upsampler = step_row['width'], step_row['upsampler']
  info = data.dataset_info(config.data)
  model = train.build_model(_unet(config, upsampler, width), info.num_classes)
  x = np.zeros((config.batch_size, info.image_size, info.image_size, 3), np.float32)
  rows = convolution_rows(model, x, repeats)
  totals = {}
  for who in ('jax', 'torch'):
    totals[who] = sum(r['count'] * (r[f'{who}_forward_ms'] + r[f'{who}_kernel_grad_ms']
                                    + r['input_grad_needed'] * r[f'{who}_input_grad_ms'])
                      for r in rows)  # nan where a convolution has no PyTorch twin
  rest = {'jax': step_row['jax_ms'] - totals['jax'],
          'torch': step_row['torch_channels_last_ms'] - totals['torch']}
  columns = [('x', 'x', '{}'), ('kernel', 'kernel', '{}'), ('count', 'count', '{}')]
  for name, label in [('forward', 'forward'), ('input_grad', 'dx'), ('kernel_grad', 'dW')]:
    columns += [(f'jax_{name}_ms', f'JAX {label} ms', '{:.2f}'),
                (f'torch_{name}_ms', f'PyTorch {label} ms', '{:.2f}')]
  ratio = lambda key: (sum(r['count'] * r[f'jax_{key}_ms'] for r in rows)
                       / sum(r['count'] * r[f'torch_{key}_ms'] for r in rows))
  return [f'Where the time goes: each convolution of the width-{width} {upsampler} U-Net\'s '
          'forward pass (from its jaxpr; count: how often the pass runs it), timed alone in '
          'XLA and in PyTorch channels_last: forward, input gradient (dx) and kernel gradient '
          '(dW). All convolutions of a step together: '
          f'**JAX {totals["jax"]:.1f} ms, PyTorch {totals["torch"]:.1f} ms** '
          f'({totals["jax"] / totals["torch"]:.2f}×; forward {ratio("forward"):.2f}×, dx '
          f'{ratio("input_grad"):.2f}×, dW {ratio("kernel_grad"):.2f}×). The rest of the step (GroupNorm, '
          f'ReLU, upsampling, loss, optimizer): JAX {rest["jax"]:.1f} ms, PyTorch '
          f'{rest["torch"]:.1f} ms.', '',
          markdown_table(rows, columns), '']


def _unet(config, upsampler: str, width: int):
  c = config.copy_and_resolve_references()
  c.model.arch, c.model.upsampler, c.model.width = 'unet', upsampler, width
  return c


def _train_step_table(config, rows) -> list[str]:
  import torch  # pylint: disable=g-import-not-at-top
  return [f'## PyTorch {torch.__version__} eager side by side: U-Net, batch {config.batch_size}, '
          f'{config.data.image_size}×{config.data.image_size}', '',
          'The same network (research/torch_reference.py: same widths, depth, GroupNorm, '
          'upsampler; parameter counts checked equal) and the same step (cross-entropy, '
          'clipping, AdamW), timed in turn in this process. Speedup: JAX images/s '
          f'over the faster PyTorch layout. PyTorch threads: {rows[0]["torch_threads"]}.', '',
          markdown_table(rows, [
              ('width', 'width', '{}'), ('upsampler', 'upsampler', '{}'),
              ('params', 'params', '{:,}'), ('jax_ms', 'JAX ms/step', '{:.1f}'),
              ('torch_nchw_ms', 'PyTorch NCHW ms/step', '{:.1f}'),
              ('torch_channels_last_ms', 'PyTorch channels_last ms/step', '{:.1f}'),
              ('speedup', 'JAX / PyTorch images/s', '**{:.2f}×**')]), '']


def environment() -> dict:
  device = jax.devices()[0]
  try:
    commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True,
                            text=True, check=True).stdout.strip()
    dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'],
                           capture_output=True, text=True, check=True).stdout.strip()
    commit += '+dirty' if dirty else ''
  except (OSError, subprocess.CalledProcessError):
    commit = 'unknown'
  return {'device': f'{device.platform} ({device.device_kind}) × {jax.device_count()}',
          'processor': platform.processor() or platform.machine(),
          'versions': f'jax {jax.__version__}, flax {flax.__version__}, optax {optax.__version__}',
          'xla_flags': os.environ.get('XLA_FLAGS', ''),
          'commit': commit}


def markdown_table(rows, columns) -> str:
  """columns: (key, header, format)."""
  lines = ['| ' + ' | '.join(h for _, h, _ in columns) + ' |',
           '|' + '---|' * len(columns)]
  for row in rows:
    lines.append('| ' + ' | '.join(fmt.format(row[k]) for k, _, fmt in columns) + ' |')
  return '\n'.join(lines)
