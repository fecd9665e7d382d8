"""What a run costs: parameters, FLOPs from XLA's cost analysis, time, memory."""

import resource
import statistics
import time

import jax
import numpy as np


def median_seconds(fn, *args, repeats: int = 10, warmup: int = 2) -> float:
  """Median wall time of fn(*args) over `repeats` calls after `warmup` calls, each ended
  with `block_until_ready`, so that asynchronous dispatch does not hide the work."""
  return interleaved_median_seconds({'': lambda: fn(*args)}, repeats, warmup)['']


def interleaved_median_seconds(
  calls: dict, repeats: int = 10, warmup: int = 2, rounds: int = 5
) -> dict:
  """{name: median wall time over `repeats` calls} of zero-argument calls, each ended with
  `block_until_ready`, timed in turn: after `warmup` calls of each, `rounds` rounds, each
  giving every entry one untimed call and then its share of the timed ones. On a shared
  machine a slow spell then falls on every entry alike instead of on whichever ran during
  it, so ratios between entries hold while absolute times drift; the untimed call keeps
  what ran just before (another program's buffers in the allocator, PyTorch's
  still-spinning OpenMP threads) out of the times. A lone entry needs no untimed call."""
  for _ in range(warmup):
    for fn in calls.values():
      jax.block_until_ready(fn())
  rounds = max(1, min(rounds, repeats))
  times = {name: [] for name in calls}
  for r in range(rounds):
    for name, fn in calls.items():
      if len(calls) > 1:
        jax.block_until_ready(fn())
      for _ in range(repeats // rounds + (r < repeats % rounds)):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times[name].append(time.perf_counter() - start)
  return {name: statistics.median(t) for name, t in times.items()}


def count_params(params) -> int:
  return int(sum(np.size(p) for p in jax.tree.leaves(params)))


def compiled_flops(compiled) -> float:
  """FLOPs of one call of an AOT-compiled function, as XLA's cost analysis counts them."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older jax: one dict per device program
    analysis = analysis[0]
  return float(analysis.get('flops', float('nan'))) if analysis else float('nan')


def forward_gflops_per_image(apply_fn, params, image_shape) -> float:
  """Forward GFLOPs for one image [H, W, C], compiled at batch 1 on one device."""
  x = jax.ShapeDtypeStruct((1,) + tuple(image_shape), np.float32)
  return compiled_flops(jax.jit(apply_fn).lower(params, x).compile()) / 1e9


def forward_ms_per_image(apply_fn, params, image_shape, batch: int, repeats: int = 5) -> float:
  """Milliseconds per image of the jitted forward pass at `batch` (median after warm-up)."""
  x = np.zeros((batch,) + tuple(image_shape), np.float32)
  forward = jax.jit(apply_fn).lower(params, x).compile()
  return 1e3 * median_seconds(forward, params, x, repeats=repeats, warmup=1) / batch


def peak_memory() -> dict:
  """Peak device memory where the backend reports it (GPU/TPU), and peak host RSS."""
  stats = jax.local_devices()[0].memory_stats() or {}
  device_peak = stats.get('peak_bytes_in_use')
  host_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
  device_peak = None if device_peak is None else device_peak / 2**20
  return {
    'peak_device_memory_mb': device_peak,
    'peak_host_memory_mb': host_peak,
    # The device's where it reports one (GPU/TPU); on CPU the process's peak RSS.
    'peak_memory_mb': host_peak if device_peak is None else device_peak,
  }


def run_cost(
  flop_model,
  params,
  image_shape,
  batch: int,
  train_step_gflops: float,
  compile_seconds: float,
  num_seeds: int,
  devices: int,
  timed_apply,
) -> dict:
  """The cost figures every seed of a run shares (final.json's 'cost'): parameters, forward
  GFLOPs per image (XLA's count, of `flop_model`, whose convolutions XLA can count), the
  train step's GFLOPs, the forward's ms per image (of `timed_apply`, the model as it runs)."""
  return {
    'params': count_params(params),
    'gflops_per_image': forward_gflops_per_image(
      lambda p, x: flop_model.apply({'params': p}, x), params, image_shape
    ),
    # XLA's count for one device's SPMD program (1/devices of the global step), per seed.
    'train_step_gflops': train_step_gflops,
    'forward_ms_per_image': forward_ms_per_image(timed_apply, params, image_shape, batch),
    'compile_seconds': compile_seconds,
    'seeds_together': num_seeds,  # > 1: step_seconds is the joint step of all of them
    'devices': devices,
    'platform': jax.devices()[0].platform,
  }
