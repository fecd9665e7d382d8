"""Nominal peak FLOP/s of the processors and GPUs the bench knows, for its "% of peak"."""

import os

import jax

# Nominal peak FP32 FLOP/s per core and cycle (FMA = 2 FLOPs) for processors whose vector
# units are documented; None elsewhere. AMD Zen 4 (family 25, models 0x10-0x1f, 0x60-0x7f,
# 0xa0-0xaf): two 256-bit FMA pipes, AVX-512 issued as two halves -> 2 × 8 × 2 = 32.
_ZEN4_MODELS = set(range(0x10, 0x20)) | set(range(0x60, 0x80)) | set(range(0xA0, 0xB0))
# GPUs: dense FP32 without tensor cores (NVIDIA data sheets, SXM parts).
_GPU_PEAK_TFLOPS = {'H100': 67.0, 'H200': 67.0, 'A100': 19.5}


def _cpuinfo() -> dict:
  try:
    with open('/proc/cpuinfo') as f:
      first = f.read().split('\n\n')[0]
  except OSError:
    return {}
  return dict(
    (k.strip(), v.strip())
    for k, _, v in (line.partition(':') for line in first.splitlines())
    if k.strip()
  )


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
      return (
        cores * mhz * 32 / 1e3,
        f'AMD Zen 4: {cores} logical CPUs × {mhz / 1e3:.2f} GHz (clock now, /proc/cpuinfo) '
        '× 32 FP32 FLOP/cycle',
      )
    return None, f'no documented vector width for CPU family {family} model {model}'
  return None, f'unknown platform {device.platform}'
