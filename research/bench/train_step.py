"""Benchmark measurements of whole train steps: the real sharded step of research.train
compiled and timed (in this process or a fresh one), and side by side with PyTorch eager."""

import json
import os
import pathlib
import subprocess
import sys
import time

import jax
import numpy as np

from research import cost
from research import data
from research import onednn
from research import steps
from research import xla_flags as xla_flags_lib
from research.bench import measure


def compile_train_step(config, num_seeds: int = 1, donate: bool = True):
  """The real sharded train step of research.train for `config` (random data), compiled:
  (row, step). row: parameters, images and FLOPs per step, compile seconds by stage; step:
  a zero-argument call running one step (see `timed`)."""
  info = data.dataset_info(config.data)
  mesh = steps.make_mesh(config)
  s, b = info.image_size, config.batch_size
  rng = np.random.default_rng(0)
  batch_np = {
    'image': rng.random((num_seeds, b, s, s, 3), np.float32),
    'label': rng.integers(0, info.num_classes, (num_seeds, b, s, s)).astype(np.int32),
  }
  model = steps.build_model(config, info.num_classes)
  n = steps.pixels_per_image(config, model, s)
  if n:  # sampled pixels, as the training loop draws them
    batch_np['pixels'] = np.stack(
      [steps.sample_pixels(i, 1, b, s * s, n) for i in range(num_seeds)]
    )
  tx = steps.make_optimizer(config)
  compiled_steps = steps.make_steps(
    model, tx, config, info.num_classes, mesh, num_seeds, donate=donate
  )
  step_fn, batch_sharding = compiled_steps.train, compiled_steps.seeds_batch_sharding
  replicated = compiled_steps.replicated
  init = jax.jit(
    steps.over_seeds(lambda k: steps.create_state(model, tx, s, k), num_seeds),
    out_shardings=replicated,
  )
  state = init(steps.seed_keys(range(num_seeds)))
  params = cost.count_params(state['params']) // num_seeds
  batch = steps.to_global(batch_np, batch_sharding)
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

  return {
    'params': params,
    'images': num_seeds * b,
    # XLA's count; for oneDNN's convolutions (custom calls) that of the same step with lax's.
    'flops': steps.train_step_flops(
      model,
      tx,
      config,
      info,
      mesh,
      compiled,
      num_seeds,
      jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state),
      n,
    ),
    'compile_seconds': t3 - t0,
    'trace_seconds': t1 - t0,
    'lower_seconds': t2 - t1,
    'xla_compile_seconds': t3 - t2,
  }, step


def timed(row: dict, seconds: float) -> dict:
  """A compile_train_step row with its measured seconds per step: ms/step, images/s
  (all seeds), GFLOP/s."""
  return {
    **row,
    'step_ms': 1e3 * seconds,
    'images_per_second': row['images'] / seconds,
    'gflops_per_second': row['flops'] / seconds / 1e9,
  }


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
  seconds = cost.interleaved_median_seconds({k: step for k, (_, step) in compiled.items()}, repeats)
  return [
    {'arch': arch, 'upsampler': name, **timed(row, seconds[arch, name])}
    for (arch, name), (row, _) in compiled.items()
  ]


def train_step_in_subprocess(
  config, repeats: int, xla_flags: str = '', env: dict | None = None
) -> dict:
  """`train_step` of `config` in a fresh process (research.bench.child), with
  `xla_flags` added to XLA_FLAGS, replacing the flags of the same names (XLA reads its
  flags once, when the backend starts), and `env` set."""
  inherited = xla_flags_lib.without(os.environ.get('XLA_FLAGS', ''), xla_flags)
  env = {**os.environ, **(env or {}), 'XLA_FLAGS': ' '.join(inherited + xla_flags.split())}
  out = subprocess.run(
    [sys.executable, '-m', 'research.bench.child', config.to_json(), str(repeats)],
    env=env,
    capture_output=True,
    text=True,
    cwd=pathlib.Path(__file__).resolve().parents[2],
  )
  if out.returncode != 0:
    return {'error': out.stderr.strip().splitlines()[-1] if out.stderr.strip() else 'failed'}
  return json.loads(out.stdout.strip().splitlines()[-1])


def torch_side_by_side(config, upsampler: str, width: int, repeats: int) -> dict:
  """The same U-Net trained by research.train (JAX) and by PyTorch eager (NCHW and
  channels_last), in this process, timed in turn on the same data shapes; refuses models
  of different sizes."""
  import torch  # optional dependency: only the PyTorch comparison needs it

  from research import torch_reference  # imports torch

  c = unet_config(config, upsampler, width)
  jax_row, jax_step = compile_train_step(c)
  info = data.dataset_info(c.data)
  s, b = info.image_size, c.batch_size
  rng = np.random.default_rng(0)
  images = rng.random((b, s, s, 3), np.float32)
  labels = rng.integers(0, info.num_classes, (b, s, s))
  calls = {'jax_ms': jax_step}
  for layout, channels_last in [('nchw', False), ('channels_last', True)]:
    torch.manual_seed(0)
    model = torch_reference.UNet(
      info.num_classes,
      upsampler,
      width,
      depth=c.model.options.get('depth', 4),
      upsampler_options=c.model.upsampler_options.to_dict(),
    )
    if torch_reference.count_params(model) != jax_row['params']:
      raise ValueError(
        f'PyTorch U-Net has {torch_reference.count_params(model):,} parameters, '
        f'the Flax one {jax_row["params"]:,}: they are not the same network.'
      )
    calls[f'torch_{layout}_ms'] = torch_reference.make_train_step(
      model,
      images,
      labels,
      c.optim.learning_rate,
      c.optim.weight_decay,
      c.optim.grad_clip,
      channels_last=channels_last,
    )
  row = {
    'upsampler': upsampler,
    'width': width,
    'params': jax_row['params'],
    'conv_impl': onednn.resolve(c.model.conv_impl, c.model.dtype),
    'torch_threads': torch.get_num_threads(),
    **measure.milliseconds(calls, repeats, warmup=3),
  }
  row['speedup'] = min(row['torch_nchw_ms'], row['torch_channels_last_ms']) / row['jax_ms']
  return row


def unet_config(config, upsampler: str, width: int):
  """`config` with a U-Net of this width and upsampler."""
  c = config.copy_and_resolve_references()
  c.model.arch, c.model.upsampler, c.model.width = 'unet', upsampler, width
  return c
