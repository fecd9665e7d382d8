"""The benchmark's comparisons, as Markdown with their prose and targets: levers against the
baseline step, JAX against PyTorch eager (step and convolutions), oneDNN's convolutions
against XLA's and PyTorch's. The numbers come from measure, train_step and onednn_rows."""

import tempfile

import numpy as np

from research import cost
from research import data
from research import onednn
from research import steps
from research import xla_flags as xla_flags_lib
from research.bench import measure
from research.bench import onednn_rows
from research.bench import peaks
from research.bench import train_step
from research.bench.report import markdown_table


def levers_section(config, xla_flags, repeats: int) -> list[str]:
  """Markdown: each lever alone against the baseline step of `config`'s U-Net, in one run.

  In-process levers are timed in turn with an in-process baseline; XLA flags (read once
  per process) compare with a fresh process without them. The baseline is measured again
  last, alone, so that the table shows how much the same step drifts within the run.
  """
  b = config.batch_size
  width, upsampler = config.model.width, config.model.upsampler
  peak, peak_note = peaks.peak_gflops()

  def variant(**fields):
    c = config.copy_and_resolve_references()
    for key, value in fields.items():
      c[key] = value
    return c

  bf16 = variant()
  bf16.model.dtype = 'bfloat16'
  in_process = {  # name: (compiled step, seeds), timed in turn
    'baseline: fp32, state donated, batch ' + str(b): (train_step.compile_train_step(config), 1),
    'no buffer donation': (train_step.compile_train_step(config, donate=False), 1),
    'bf16 compute (params and optimizer fp32)': (train_step.compile_train_step(bf16), 1),
    f'batch {2 * b} (larger effective batch)': (
      train_step.compile_train_step(variant(batch_size=2 * b)),
      1,
    ),
    '3 seeds together (vmap), per seed': (train_step.compile_train_step(config, num_seeds=3), 3),
  }
  seconds = cost.interleaved_median_seconds(
    {name: step for name, ((_, step), _) in in_process.items()}, repeats
  )
  measured = {
    name: train_step.timed(row, seconds[name]) for name, ((row, _), _) in in_process.items()
  }
  base = next(iter(measured.values()))
  rows = [(name, measured[name], seeds, base) for name, (_, seeds) in in_process.items()]
  fresh = train_step.train_step_in_subprocess(config, repeats)
  defaults = ' '.join(f'{k}={v}' for k, v in xla_flags_lib.DEFAULTS.items())
  rows.append((f'fresh process, XLA flags of research/xla_flags.py ({defaults})', fresh, 1, fresh))
  for xla_flag in xla_flags:
    rows.append(
      (
        f'XLA_FLAGS={xla_flag} (fresh process)',
        train_step.train_step_in_subprocess(config, repeats, xla_flags=xla_flag),
        1,
        fresh,
      )
    )
  # bf16 once more, with the convolutions handed to YNNPACK (XLA's default path) instead.
  fresh_bf16 = train_step.train_step_in_subprocess(bf16, repeats)
  rows.append(
    ('fresh process, bf16 compute, XLA flags of research/xla_flags.py', fresh_bf16, 1, fresh_bf16)
  )
  ynn_convolutions = '--xla_cpu_experimental_ynn_fusion_type=+individual_convolution'
  rows.append(
    (
      f'bf16 compute, XLA_FLAGS={ynn_convolutions} (fresh process; against the bf16 row above)',
      train_step.train_step_in_subprocess(bf16, repeats, xla_flags=ynn_convolutions),
      1,
      fresh_bf16,
    )
  )
  rows.append(
    ('baseline again, at the end', train_step.train_step(config, repeats=repeats), 1, base)
  )
  lines = [
    '| lever | ms/step | images/s | vs its baseline | GFLOP/s | % of peak |',
    '|---|---|---|---|---|---|',
  ]
  for name, row, seeds, reference in rows:
    if 'error' in row or 'error' in reference:
      lines.append(f'| {name} | failed: {row.get("error", reference.get("error"))[:80]} | | | | |')
      continue
    rate = row['images_per_second'] / seeds
    if seeds > 1:
      name += f' ({seeds} × {b} images per step, {row["images_per_second"]:.0f} images/s in all)'
    pct = f'{100 * row["gflops_per_second"] / peak:.1f}' if peak else 'n/a'
    lines.append(
      f'| {name} | {row["step_ms"]:.1f} | {rate:.1f} | '
      f'{rate / reference["images_per_second"]:.2f}× | {row["gflops_per_second"]:.1f} | '
      f'{pct} |'
    )
  size = config.data.image_size
  shapes = [
    (size >> level, width << level) for level in range(config.model.options.get('depth', 4) + 1)
  ]
  norm_rows = measure.group_norm_rows(b, shapes, repeats)
  lines += [
    '',
    "GroupNorm + ReLU, forward and backward, at the shapes of the U-Net's blocks: "
    'layers.GroupNorm (its gradient written by hand, one reduction pass and one '
    "elementwise pass; what the models use) against Flax's nn.GroupNorm differentiated "
    'by JAX' + (', and torch.nn.GroupNorm.' if 'torch_ms' in norm_rows[0] else '.'),
    '',
    markdown_table(
      norm_rows,
      [
        ('shape', 'x', '{}'),
        ('flax_ms', 'nn.GroupNorm ms', '{:.2f}'),
        ('fused_ms', 'layers.GroupNorm ms', '{:.2f}'),
        ('speedup', 'speedup', '{:.2f}×'),
      ]
      + ([('torch_ms', 'PyTorch ms', '{:.2f}')] if 'torch_ms' in norm_rows[0] else []),
    ),
  ]
  with tempfile.TemporaryDirectory() as cache:  # what research.train enables in every workdir root
    compiles = [
      train_step.train_step_in_subprocess(config, 1, env={'JAX_COMPILATION_CACHE_DIR': cache})
      for _ in range(2)
    ]
  if all('error' not in c for c in compiles):
    first, second = compiles
    stages = ', '.join(
      f'{name} {first[key]:.2f} → {second[key]:.2f} s'
      for name, key in (
        ('tracing', 'trace_seconds'),
        ('lowering', 'lower_seconds'),
        ('XLA compilation', 'xla_compile_seconds'),
      )
    )
    lines += [
      '',
      f'Persistent compilation cache: the train step takes {first["compile_seconds"]:.1f} s '
      'from tracing to executable in a fresh process with an empty cache and '
      f"{second['compile_seconds']:.1f} s in a second fresh process with the first one's "
      f'cache: **{first["compile_seconds"] / second["compile_seconds"]:.1f}× faster** '
      f'(target ≥ 5×). By stage: {stages}; XLA compilation alone '
      f'{first["xla_compile_seconds"] / second["xla_compile_seconds"]:.1f}× faster. '
      "JAX's cache is keyed on the lowered program, so tracing and lowering run in "
      'every process.',
    ]
  return [
    f'## Levers: U-Net width {width}, {upsampler}, batch {b}, '
    f'{config.data.image_size}×{config.data.image_size}',
    '',
    'Each lever alone, in this run; images/s per seed. In-process levers timed in turn '
    'with the first baseline row and against it; XLA flags in fresh processes, one after '
    'the other, against the fresh process without them; the last row repeats the '
    'baseline alone to show the drift. '
    f'Peak: {peak_note}' + (f' = {peak:.0f} GFLOP/s.' if peak else '.'),
    '',
    *lines,
    '',
  ]


def pytorch_section(config, models, repeats: int) -> list[str]:
  """Markdown: `torch_side_by_side` for each (width, upsampler) U-Net in `models`."""
  try:
    import torch  # optional dependency: the section says so when it is missing
  except ImportError:
    return [
      '## PyTorch side by side',
      '',
      'Skipped: torch is not installed (`pip install torch==2.13.0`; it is not a dependency).',
      '',
    ]
  rows = [
    train_step.torch_side_by_side(config, upsampler, width, repeats) for width, upsampler in models
  ]
  return [
    *_train_step_table(config, rows, torch.__version__),
    *_convolution_section(config, rows[0], repeats),
  ]


def _convolution_section(config, step_row, repeats: int) -> list[str]:
  """Markdown: convolution_rows of the first side-by-side U-Net, and how much of each
  framework's step its convolutions take."""
  width, upsampler = step_row['width'], step_row['upsampler']
  info = data.dataset_info(config.data)
  c = train_step.unet_config(config, upsampler, width)
  c.model.conv_impl = 'xla'  # lax's convolutions, which model_convolutions finds in the jaxpr
  model = steps.build_model(c, info.num_classes)
  x = np.zeros((config.batch_size, info.image_size, info.image_size, 3), np.float32)
  rows = measure.convolution_rows(model, x, repeats)
  totals = {}
  for who in ('jax', 'torch'):
    totals[who] = sum(
      r['count']
      * (
        r[f'{who}_forward_ms']
        + r[f'{who}_kernel_grad_ms']
        + r['input_grad_needed'] * r[f'{who}_input_grad_ms']
      )
      for r in rows
    )  # nan where a convolution has no PyTorch twin
  # The per-layer JAX times are XLA's; a step on oneDNN's convolutions has no rest to take
  # them from (its per-layer times: --suites=onednn).
  jax_rest = (
    f'JAX {step_row["jax_ms"] - totals["jax"]:.1f} ms, '
    if step_row['conv_impl'] == 'xla'
    else "JAX not comparable (its step ran oneDNN's convolutions: --suites=onednn), "
  )
  columns = [('x', 'x', '{}'), ('kernel', 'kernel', '{}'), ('count', 'count', '{}')]
  for name, label in [('forward', 'forward'), ('input_grad', 'dx'), ('kernel_grad', 'dW')]:
    columns += [
      (f'jax_{name}_ms', f'JAX {label} ms', '{:.2f}'),
      (f'torch_{name}_ms', f'PyTorch {label} ms', '{:.2f}'),
    ]
  ratio = lambda key: (
    sum(r['count'] * r[f'jax_{key}_ms'] for r in rows)
    / sum(r['count'] * r[f'torch_{key}_ms'] for r in rows)
  )
  return [
    f"Where the time goes: each convolution of the width-{width} {upsampler} U-Net's "
    'forward pass (from its jaxpr; count: how often the pass runs it), timed alone in '
    'XLA and in PyTorch channels_last: forward, input gradient (dx) and kernel gradient '
    '(dW). All convolutions of a step together: '
    f'**XLA {totals["jax"]:.1f} ms, PyTorch {totals["torch"]:.1f} ms** '
    f'({totals["jax"] / totals["torch"]:.2f}×; forward {ratio("forward"):.2f}×, dx '
    f'{ratio("input_grad"):.2f}×, dW {ratio("kernel_grad"):.2f}×). The rest of the step '
    '(GroupNorm, '
    f'ReLU, upsampling, loss, optimizer): {jax_rest}PyTorch '
    f'{step_row["torch_channels_last_ms"] - totals["torch"]:.1f} ms.',
    '',
    markdown_table(rows, columns),
    '',
  ]


def _train_step_table(config, rows, torch_version: str) -> list[str]:
  return [
    f'## PyTorch {torch_version} eager side by side: U-Net, batch {config.batch_size}, '
    f'{config.data.image_size}×{config.data.image_size}',
    '',
    'The same network (research/torch_reference.py: same widths, depth, GroupNorm, '
    'upsampler; parameter counts checked equal) and the same step (cross-entropy, '
    'clipping, AdamW), timed in turn in this process. Speedup: JAX images/s '
    f'over the faster PyTorch layout. PyTorch threads: {rows[0]["torch_threads"]}.',
    '',
    markdown_table(
      rows,
      [
        ('width', 'width', '{}'),
        ('upsampler', 'upsampler', '{}'),
        ('params', 'params', '{:,}'),
        ('conv_impl', 'JAX convolutions', '{}'),
        ('jax_ms', 'JAX ms/step', '{:.1f}'),
        ('torch_nchw_ms', 'PyTorch NCHW ms/step', '{:.1f}'),
        ('torch_channels_last_ms', 'PyTorch channels_last ms/step', '{:.1f}'),
        ('speedup', 'JAX / PyTorch images/s', '**{:.2f}×**'),
      ],
    ),
    '',
  ]


def onednn_section(config, repeats: int) -> list[str]:
  """Markdown: the U-Net's convolutions and train step by XLA, oneDNN and PyTorch, in turn."""
  try:
    import torch  # noqa: F401  (optional dependency: the section says so when it is missing)
  except ImportError:
    return ['## oneDNN convolutions', '', 'Skipped: torch is not installed.', '']
  if onednn.load_error():
    return ['## oneDNN convolutions', '', f'Skipped: {onednn.load_error()}', '']
  rows = onednn_rows.layer_rows(config, repeats)
  who = ('xla', 'onednn', 'onednn_1t', 'onednn_bf16', 'torch')
  who = tuple(w for w in who if (w, 'forward') in rows[0])  # bf16: where oneDNN has it
  totals = dict.fromkeys(who, 0.0)
  table = []
  for r in rows:
    for w in who:
      totals[w] += r['count'] * (
        r[w, 'forward'] + r[w, 'kernel_grad'] + r['input_grad_needed'] * r[w, 'input_grad']
      )
    table.append(
      {
        'x': r['x'],
        'kernel': r['kernel'],
        'count': r['count'],
        **{
          f'{w}_{what}': r[w, what]
          for w in who
          for what in ('forward', 'input_grad', 'kernel_grad')
        },
        **{
          f'ratio_{what}': r['onednn', what] / r['torch', what]
          for what in ('forward', 'input_grad', 'kernel_grad')
        },
      }
    )
  columns = [('x', 'x', '{}'), ('kernel', 'kernel', '{}'), ('count', 'count', '{}')]
  for what, label in [('forward', 'fwd'), ('input_grad', 'dx'), ('kernel_grad', 'dW')]:
    columns += [(f'{w}_{what}', f'{w} {label} ms', '{:.2f}') for w in who]
    columns.append((f'ratio_{what}', f'oneDNN/PyTorch {label}', '{:.2f}'))
  step = onednn_rows.step_row(config, repeats)
  b = config.batch_size
  return [
    f'## oneDNN convolutions: U-Net width {config.model.width}, {config.model.upsampler}, '
    f'batch {b}',
    '',
    "Each convolution of the forward pass, timed in turn by XLA, oneDNN (OpenMP's "
    'default threads, one thread: onednn_1t, and on bfloat16 operands where the processor '
    'has those kernels: onednn_bf16) and PyTorch channels_last, all float32 otherwise (target: '
    'oneDNN within 1.1× of PyTorch per layer). All convolutions of a step: '
    + ', '.join(f'{w} {v:.1f} ms' for w, v in totals.items())
    + '.',
    '',
    markdown_table(table, columns),
    '',
    'Train step, timed in turn: '
    + ', '.join(f'{w} {v:.1f} ms ({1e3 * b / v:.0f} images/s)' for w, v in step.items())
    + f'. **oneDNN / PyTorch eager images/s: {step["torch"] / step["onednn"]:.3f}×** '
    '(targets: ≥ 1.15× for the default U-Net, width 16 with nearest; ≥ 1.1× for width 32 '
    f'with transposed convolutions); XLA / PyTorch: {step["torch"] / step["xla"]:.3f}×.',
    '',
    *_bf16_lines(step, totals),
  ]


def _bf16_lines(step: dict, conv_ms: dict) -> list[str]:
  """The bfloat16 step against the float32 one (issue targets: ≥ 2× with AMX, ≥ 1.3× with
  AVX512-BF16 only) and where its time goes, or why it was not timed."""
  if 'onednn_bf16' not in step:
    return [f'bfloat16 compute not timed: {onednn.bf16_error()}.', '']
  rest = {w: step[w] - conv_ms[w] for w in ('onednn', 'onednn_bf16')}
  return [
    'bfloat16 compute, float32 step / bfloat16 step (same convolutions; target ≥ 2× where the '
    f'processor has AMX, ≥ 1.3× with AVX512-BF16 only): **oneDNN '
    f'{step["onednn"] / step["onednn_bf16"]:.2f}×**, one oneDNN thread '
    f'{step["onednn_1t"] / step["onednn_1t_bf16"]:.2f}×, '
    f'XLA {step["xla"] / step["xla_bf16"]:.2f}×; oneDNN bfloat16 / PyTorch eager float32 '
    f'images/s: {step["torch"] / step["onednn_bf16"]:.2f}×. '
    f'Where the time goes (step minus its convolutions timed alone above): convolutions '
    f'{conv_ms["onednn"]:.1f} ms in float32 and {conv_ms["onednn_bf16"]:.1f} ms in bfloat16, '
    f'the rest of the step {rest["onednn"]:.1f} and {rest["onednn_bf16"]:.1f} ms.',
    '',
  ]
