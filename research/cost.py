"""What a run costs: parameters, FLOPs from XLA's cost analysis, memory."""
import resource

import jax
import numpy as np


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


def peak_memory() -> dict:
  """Peak device memory where the backend reports it (GPU/TPU), and peak host RSS."""
  stats = jax.local_devices()[0].memory_stats() or {}
  device_peak = stats.get('peak_bytes_in_use')
  return {
      'peak_device_memory_mb': None if device_peak is None else device_peak / 2**20,
      'peak_host_memory_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10,
  }
