"""Nominal peak FLOP/s of the processors and GPUs the bench knows, for its "% of peak"."""

import os

import jax

# Nominal peak FP32 FLOP per core and cycle (FMA = 2 FLOPs) for processors whose vector
# units are documented; None elsewhere. (vendor, family, models) -> (FLOP/cycle, name):
# AMD Zen 3 and Zen 4 (family 25): two 256-bit FMA pipes (Zen 4 issues AVX-512 as two
# halves) -> 2 × 8 × 2 = 32. Intel Xeon Scalable from Ice Lake-SP on (family 6: Ice Lake-SP,
# Sapphire, Emerald and Granite Rapids): two 512-bit FMA units -> 2 × 16 × 2 = 64 (nominal:
# XLA:CPU seldom emits 512-bit FMAs, so % of peak reads low there). Skylake-
# and Cascade Lake-SP (model 0x55) are left unknown: their FMA units (one or two) depend on
# the SKU. A virtual machine may report another model than its processor's (0xA7, Rocket
# Lake, which has no AMX, on one of ours with AMX); an Intel processor with AMX is a Xeon
# Scalable of Sapphire Rapids or later, all with two 512-bit FMA units, so AMX in the flags
# identifies the peak where the model does not.
_AMX_XEON = (64, 'Intel Xeon with AMX (Sapphire Rapids or later, by its flags)')
_CPU_PEAKS = (
  ('AuthenticAMD', 25, range(0x00, 0x10), 32, 'AMD Zen 3'),
  ('AuthenticAMD', 25, range(0x20, 0x30), 32, 'AMD Zen 3'),
  ('AuthenticAMD', 25, range(0x40, 0x60), 32, 'AMD Zen 3'),
  ('AuthenticAMD', 25, range(0x10, 0x20), 32, 'AMD Zen 4'),
  ('AuthenticAMD', 25, range(0x60, 0x80), 32, 'AMD Zen 4'),
  ('AuthenticAMD', 25, range(0xA0, 0xB0), 32, 'AMD Zen 4'),
  ('GenuineIntel', 6, (0x6A,), 64, 'Intel Ice Lake-SP'),
  ('GenuineIntel', 6, (0x8F,), 64, 'Intel Sapphire Rapids'),
  ('GenuineIntel', 6, (0xCF,), 64, 'Intel Emerald Rapids'),
  ('GenuineIntel', 6, (0xAD, 0xAE), 64, 'Intel Granite Rapids'),
)
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


_ISA = ('avx2', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_tile', 'amx_bf16')


def describe_cpu(info: dict | None = None) -> str:
  """The processor as the bench header names it: model name, family and model, and the
  instruction sets the convolutions' speed depends on (present ones only)."""
  info = _cpuinfo() if info is None else info
  if not info:
    return 'unknown (no /proc/cpuinfo)'
  flags = set(info.get('flags', '').split())
  family, model = info.get('cpu family', '?'), info.get('model', '?')
  isa = ', '.join(f for f in _ISA if f in flags) or 'none of ' + ', '.join(_ISA)
  return f'{info.get("model name", "unknown")} (family {family} model {model}; {isa})'


def peak_gflops() -> tuple[float | None, str]:
  """The device's nominal FP32 peak in GFLOP/s and how it was derived (None: unknown)."""
  device = jax.devices()[0]
  if device.platform == 'gpu':
    for name, tflops in _GPU_PEAK_TFLOPS.items():
      if name in device.device_kind:
        return 1e3 * tflops, f'{name} data sheet, dense FP32 (no tensor cores)'
    return None, f'unknown GPU {device.device_kind}'
  if device.platform == 'cpu':
    return cpu_peak_gflops(_cpuinfo(), len(os.sched_getaffinity(0)))
  return None, f'unknown platform {device.platform}'


def cpu_peak_gflops(info: dict, cores: int) -> tuple[float | None, str]:
  """FP32 peak of `cores` logical CPUs of the processor /proc/cpuinfo's first entry
  (`info`) describes, at its clock now; None where its vector units are not in the table.
  Hyper-threads share their core's vector units, so SMT siblings count once."""
  try:
    family, model, mhz = int(info['cpu family']), int(info['model']), float(info['cpu MHz'])
  except (KeyError, ValueError):
    return None, 'no /proc/cpuinfo'
  vendor = info.get('vendor_id', '')
  try:
    threads = max(int(info['siblings']) // int(info['cpu cores']), 1)
  except (KeyError, ValueError, ZeroDivisionError):
    threads = 1
  physical = max(cores // threads, 1)
  known = next(
    (
      (flops, name)
      for peak_vendor, peak_family, models, flops, name in _CPU_PEAKS
      if (vendor, family) == (peak_vendor, peak_family) and model in models
    ),
    None,
  )
  amx = 'amx_tile' in info.get('flags', '').split()
  if known is None and (vendor, family) == ('GenuineIntel', 6) and amx:
    known = _AMX_XEON
  if known is not None:
    flops, name = known
    return (
      physical * mhz * flops / 1e3,
      f'{name}: {physical} cores ({cores} logical CPUs) × {mhz / 1e3:.2f} GHz (clock now, '
      f'/proc/cpuinfo) × {flops} FP32 FLOP/cycle',
    )
  return None, f'no documented vector width for {vendor} CPU family {family} model {model}'
