"""The benchmark's report: Markdown sections with their prose and targets, around the
numbers research.bench.measure takes. Nothing here times anything itself."""

import os
import subprocess

import flax
import jax
import optax

from research.bench import measure
from research.bench import peaks


def environment() -> dict:
  device = jax.devices()[0]
  try:
    commit = subprocess.run(
      ['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True, check=True
    ).stdout.strip()
    dirty = subprocess.run(
      ['git', 'status', '--porcelain', '--untracked-files=no'],
      capture_output=True,
      text=True,
      check=True,
    ).stdout.strip()
    commit += '+dirty' if dirty else ''
  except (OSError, subprocess.CalledProcessError):
    commit = 'unknown'
  return {
    'device': f'{device.platform} ({device.device_kind}) × {jax.device_count()}',
    'processor': peaks.describe_cpu() if device.platform == 'cpu' else device.device_kind,
    'versions': f'jax {jax.__version__}, flax {flax.__version__}, optax {optax.__version__}',
    'xla_flags': os.environ.get('XLA_FLAGS', ''),
    'commit': commit,
  }


def markdown_table(rows, columns) -> str:
  """columns: (key, header, format)."""
  lines = ['| ' + ' | '.join(h for _, h, _ in columns) + ' |', '|' + '---|' * len(columns)]
  for row in rows:
    lines.append('| ' + ' | '.join(fmt.format(row[k]) for k, _, fmt in columns) + ' |')
  return '\n'.join(lines)


def header(env: dict, args: str, repeats: int) -> list[str]:
  return [
    f'# Benchmark: {env["device"]}',
    '',
    f'Command: `python -m launch.bench {args}` at commit {env["commit"]}  ',
    f'Processor: {env["processor"]}; {env["versions"]}; XLA_FLAGS '
    f'`{env["xla_flags"]}`. Medians of {repeats} timed calls after warm-up; what a '
    'table compares is timed in turn, in rounds.',
    '',
  ]


def upsamplers_section(rows, b: int, s: int, c: int) -> list[str]:
  by_name = {r['upsampler']: r for r in rows}
  lines = [
    f'## Upsamplers: x [{b}, {s}, {s}, {c}] -> [{b}, {2 * s}, {2 * s}, ·]',
    '',
    markdown_table(
      rows,
      [
        ('upsampler', 'upsampler', '{}'),
        ('forward_ms', 'forward ms', '{:.2f}'),
        ('forward_backward_ms', 'fwd+bwd ms', '{:.2f}'),
        ('forward_memory_mb', 'fwd memory MB', '{:.1f}'),
        ('forward_backward_memory_mb', 'fwd+bwd memory MB', '{:.1f}'),
        ('params', 'params', '{:,}'),
        ('forward_gflops', 'fwd GFLOPs', '{:.3f}'),
      ],
    ),
    "Memory: XLA's memory analysis of the compiled program (arguments, outputs and "
    "temporaries); GFLOPs: XLA's count for the forward pass of the whole batch.",
    '',
  ]
  if {'max_unpool', 'nearest'} <= set(by_name):
    ratio = by_name['max_unpool']['forward_backward_ms'] / by_name['nearest']['forward_backward_ms']
    mem = measure.switch_memory(b, s, c)
    lines += [
      f'max_unpool / nearest forward+backward: **{ratio:.2f}×** (target ≤ 1.5×). '
      f'Switches kept per pool: {mem["switches_mb"]:.1f} MB (uint8, one per window) '
      f'against {mem["prepool_activations_mb"]:.1f} MB of float32 pre-pool '
      'activations (16× less).',
      '',
    ]
  return lines


def train_section(config, rows) -> list[str]:
  peak, peak_note = peaks.peak_gflops()
  for row in rows:
    row['peak_percent'] = 100 * row['gflops_per_second'] / peak if peak else float('nan')
  return [
    f'## Train steps: batch {config.batch_size}, {config.data.image_size}×'
    f'{config.data.image_size}, width {config.model.width}',
    '',
    f"% of peak: XLA's FLOP count over measured time, against {peak_note}"
    + (f' = {peak:.0f} GFLOP/s.' if peak else ' (unknown: n/a).'),
    '',
    markdown_table(
      rows,
      [
        ('arch', 'arch', '{}'),
        ('upsampler', 'upsampler', '{}'),
        ('params', 'params', '{:,}'),
        ('step_ms', 'ms/step', '{:.1f}'),
        ('images_per_second', 'images/s', '{:.0f}'),
        ('gflops_per_second', 'GFLOP/s', '{:.1f}'),
        ('peak_percent', '% of peak', '{:.1f}'),
        ('compile_seconds', 'compile s', '{:.1f}'),
      ],
    ),
    '',
  ]


def designs_section(rows, batch: int, size: int) -> list[str]:
  return [
    f'## Three ways to label every pixel: inference cost at batch {batch}, {size}×{size}',
    '',
    "experiments/design_costs.py's designs (parameters matched within 4%); forward pass only.",
    '',
    markdown_table(
      rows,
      [
        ('arch', 'arch', '{}'),
        ('width', 'width', '{}'),
        ('params', 'params', '{:,}'),
        ('gflops_per_image', 'GFLOPs/image', '{:.3f}'),
        ('forward_ms_per_image', 'forward ms/image', '{:.2f}'),
        ('forward_memory_mb', 'forward memory MB', '{:.1f}'),
      ],
    ),
    '',
  ]


def pipeline_section(config, batch: int, rate: float, train_images_per_second) -> list[str]:
  line = (
    f'## Input pipeline\n\n{config.data.name}/{config.data.variant}, batch '
    f'{batch}: **{rate:.0f} images/s**'
  )
  if train_images_per_second:
    line += (
      f'; the default U-Net (nearest) trains at {train_images_per_second:.0f} images/s, '
      f'so the pipeline is {rate / train_images_per_second:.1f}× faster (target ≥ 5×).'
    )
  return [line, '']
