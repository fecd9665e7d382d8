"""Benchmarks: upsamplers alone, whole train steps, and the input pipeline.

Every timing is the median of `repeats` calls after warm-up, each ended with
`block_until_ready`, so that asynchronous dispatch does not hide the work.
"""
import platform
import statistics
import subprocess
import time

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from research import cost
from research import data
from research import pooling
from research import train
from research import upsamplers


def median_seconds(fn, *args, repeats: int = 10, warmup: int = 2) -> float:
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


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
  rows = []
  for name in names:
    module = upsamplers.build(name)
    params = module.init(key, x, switches=switches)

    def forward(params, x):
      return module.apply(params, x, switches=switches)

    def forward_backward(params, x):
      """The output and the gradients for a fixed cotangent. Returning the output keeps
      XLA from skipping the forward pass, whose result the backward of a linear op
      does not need (as in a network, where the next layer consumes it)."""
      out, vjp = jax.vjp(forward, params, x)
      return out, vjp(cotangent[..., :out.shape[-1]])

    fwd = jax.jit(forward).lower(params, x).compile()
    fwd_bwd = jax.jit(forward_backward).lower(params, x).compile()
    rows.append({
        'upsampler': name,
        'forward_ms': 1e3 * median_seconds(fwd, params, x, repeats=repeats),
        'forward_backward_ms': 1e3 * median_seconds(fwd_bwd, params, x, repeats=repeats),
        'forward_backward_memory_mb': _memory_mb(fwd_bwd),
        'params': cost.count_params(params),
    })
  return rows


def switch_memory(batch: int, size: int, channels: int) -> dict:
  """What max-unpooling keeps per pool: uint8 switches vs the float32 pre-pool activations."""
  windows = batch * size * size * channels
  return {'switches_mb': windows / 2**20, 'prepool_activations_mb': 16 * windows / 2**20}


def train_step_rows(config, archs, names, repeats: int):
  """Images/s, GFLOP/s and compile time of the real sharded train step (research.train)."""
  info = data.dataset_info(config.data)
  mesh = train.make_mesh(config)
  s = info.image_size
  batch_np = {'image': np.random.default_rng(0).random((config.batch_size, s, s, 3), np.float32),
              'label': np.random.default_rng(1).integers(0, info.num_classes,
                                                         (config.batch_size, s, s), np.int32)}
  rows = []
  for arch in archs:
    for name in names:
      c = config.copy_and_resolve_references()
      c.model.arch, c.model.upsampler = arch, name
      model = train.build_model(c, info.num_classes)
      tx = train.make_optimizer(c)
      train_step, _, batch_sharding, _, replicated = train.make_steps(model, tx, c,
                                                                      info.num_classes, mesh)
      state = jax.jit(lambda k: train.create_state(model, tx, s, k),  # pylint: disable=cell-var-from-loop
                      out_shardings=replicated)(jax.random.key(0))
      params = state['params']
      state = jax.tree.map(lambda x: x[None], state)  # a seed axis of one
      batch = train.to_global({k: v[None] for k, v in batch_np.items()}, batch_sharding)
      start = time.perf_counter()
      compiled = train_step.lower(state, batch).compile()
      compile_seconds = time.perf_counter() - start
      holder = [state]

      def step():  # threads the donated state through, as the training loop does
        holder[0], metrics = compiled(holder[0], batch)
        return metrics['loss']

      seconds = median_seconds(step, repeats=repeats)
      flops = cost.compiled_flops(compiled)
      rows.append({'arch': arch, 'upsampler': name, 'params': cost.count_params(params),
                   'step_ms': 1e3 * seconds, 'images_per_second': c.batch_size / seconds,
                   'gflops_per_second': flops / seconds / 1e9, 'compile_seconds': compile_seconds})
  return rows


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
          'commit': commit}


def markdown_table(rows, columns) -> str:
  """columns: (key, header, format)."""
  lines = ['| ' + ' | '.join(h for _, h, _ in columns) + ' |',
           '|' + '---|' * len(columns)]
  for row in rows:
    lines.append('| ' + ' | '.join(fmt.format(row[k]) for k, _, fmt in columns) + ' |')
  return '\n'.join(lines)
