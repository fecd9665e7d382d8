r"""Benchmarks upsamplers, train steps and the input pipeline; writes results/bench_<device>.md.

  python -m launch.bench                       # everything, CPU-sized defaults
  python -m launch.bench --suites=upsamplers --batch=32 --size=32 --channels=64
"""
import os
import sys

from absl import app
from absl import flags

from experiments import base
from experiments import design_costs
from research import bench
from research import data
from research import upsamplers
from research import workdir as workdir_lib

_SUITES = flags.DEFINE_multi_enum(
    'suites', ['upsamplers', 'train', 'pipeline', 'levers', 'pytorch'],
    ['upsamplers', 'train', 'pipeline', 'levers', 'pytorch', 'designs'],
    'What to benchmark (pytorch: only where torch is installed; designs: the inference cost '
    'of experiments/design_costs.py\'s three designs; minutes on 2 CPU cores, so not by default).')
_BATCH = flags.DEFINE_integer('batch', 32, 'Upsampler suite: batch size.')
_SIZE = flags.DEFINE_integer('size', 32, 'Upsampler suite: input height and width.')
_CHANNELS = flags.DEFINE_integer('channels', 64, 'Upsampler suite: channels.')
_ARCHS = flags.DEFINE_list('archs', ['unet', 'fcn8s', 'segnet'], 'Train suite: architectures.')
_UPSAMPLERS = flags.DEFINE_list('upsamplers', upsamplers.names(), 'Upsamplers to benchmark.')
_TRAIN_BATCH = flags.DEFINE_integer('train_batch', 16, 'Train suite: global batch size.')
_WIDTH = flags.DEFINE_integer('width', 16, 'Train suite: base width of the models.')
_TORCH_MODELS = flags.DEFINE_list(
    'torch_models', ['16:nearest', '32:transpose_conv'],
    'pytorch suite: U-Nets as WIDTH:UPSAMPLER (16:nearest is the default U-Net).')
_LEVER_MODEL = flags.DEFINE_string('lever_model', '16:nearest',
                                   'levers suite: the U-Net as WIDTH:UPSAMPLER.')
_XLA_LEVERS = flags.DEFINE_list(
    'xla_levers', ['--xla_cpu_experimental_ynn_fusion_type=+individual_convolution',
                   '--xla_cpu_experimental_ynn_fusion_type=',
                   '--xla_cpu_use_onednn=true', '--xla_cpu_experimental_onednn_custom_call=true',
                   '--xla_cpu_enable_fast_math=true',
                   '--xla_cpu_enable_concurrency_optimized_scheduler=true',
                   '--xla_cpu_multi_thread_eigen=false'],
    'levers suite: XLA flags, each tried alone in a fresh process (one that names a flag of '
    'research/xla_flags.py replaces its default there).')
_REPEATS = flags.DEFINE_integer('repeats', 10, 'Timed calls per measurement (median).')
_OUT = flags.DEFINE_string('out', 'results', 'Folder for bench_<device>.md ("" to only print).')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  unknown = sorted(set(_UPSAMPLERS.value) - set(upsamplers.names()))
  if unknown:
    raise app.UsageError(f'Unknown upsampler(s) {unknown}; known: {", ".join(upsamplers.names())}.')
  env = bench.environment()
  sections = [f'# Benchmark: {env["device"]}', '',
              f'Command: `python -m launch.bench {" ".join(sys.argv[1:])}` at commit {env["commit"]}  ',
              f'Processor: {env["processor"]}; {env["versions"]}; XLA_FLAGS '
              f'`{env["xla_flags"]}`. Medians of {_REPEATS.value} timed calls after warm-up; what a '
              'table compares is timed in turn, in rounds.', '']
  train_images_per_second = None
  if 'upsamplers' in _SUITES.value:
    b, s, c = _BATCH.value, _SIZE.value, _CHANNELS.value
    rows = bench.upsampler_rows(_UPSAMPLERS.value, b, s, c, _REPEATS.value)
    by_name = {r['upsampler']: r for r in rows}
    sections += [f'## Upsamplers: x [{b}, {s}, {s}, {c}] -> [{b}, {2 * s}, {2 * s}, ·]', '',
                 bench.markdown_table(rows, [
                     ('upsampler', 'upsampler', '{}'), ('forward_ms', 'forward ms', '{:.2f}'),
                     ('forward_backward_ms', 'fwd+bwd ms', '{:.2f}'),
                     ('forward_backward_memory_mb', 'fwd+bwd memory MB', '{:.1f}'),
                     ('params', 'params', '{:,}')]), '']
    if {'max_unpool', 'nearest'} <= set(by_name):
      ratio = by_name['max_unpool']['forward_backward_ms'] / by_name['nearest']['forward_backward_ms']
      mem = bench.switch_memory(b, s, c)
      sections += [f'max_unpool / nearest forward+backward: **{ratio:.2f}×** (target ≤ 1.5×). '
                   f'Switches kept per pool: {mem["switches_mb"]:.1f} MB (uint8, one per window) '
                   f'against {mem["prepool_activations_mb"]:.1f} MB of float32 pre-pool '
                   'activations (16× less).', '']
  if 'train' in _SUITES.value:
    config = base.get_config()
    config.batch_size, config.model.width = _TRAIN_BATCH.value, _WIDTH.value
    rows = bench.train_step_rows(config, _ARCHS.value, _UPSAMPLERS.value, _REPEATS.value)
    peak, peak_note = bench.peak_gflops()
    for row in rows:
      row['peak_percent'] = 100 * row['gflops_per_second'] / peak if peak else float('nan')
    unet = [r for r in rows if r['arch'] == 'unet' and r['upsampler'] == 'nearest']
    train_images_per_second = unet[0]['images_per_second'] if unet else None
    sections += [f'## Train steps: batch {config.batch_size}, {config.data.image_size}×'
                 f'{config.data.image_size}, width {config.model.width}', '',
                 f'% of peak: XLA\'s FLOP count over measured time, against {peak_note}'
                 + (f' = {peak:.0f} GFLOP/s.' if peak else ' (unknown: n/a).'), '',
                 bench.markdown_table(rows, [
                     ('arch', 'arch', '{}'), ('upsampler', 'upsampler', '{}'),
                     ('params', 'params', '{:,}'), ('step_ms', 'ms/step', '{:.1f}'),
                     ('images_per_second', 'images/s', '{:.0f}'),
                     ('gflops_per_second', 'GFLOP/s', '{:.1f}'),
                     ('peak_percent', '% of peak', '{:.1f}'),
                     ('compile_seconds', 'compile s', '{:.1f}')]), '']
  if 'levers' in _SUITES.value:
    config = base.get_config()
    config.batch_size = _TRAIN_BATCH.value
    config.model.width, config.model.upsampler = _model(_LEVER_MODEL.value)
    sections += bench.levers_section(config, _XLA_LEVERS.value, _REPEATS.value)
  if 'pytorch' in _SUITES.value:
    config = base.get_config()
    config.batch_size = _TRAIN_BATCH.value
    sections += bench.pytorch_section(config, [_model(m) for m in _TORCH_MODELS.value],
                                      _REPEATS.value)
  if 'designs' in _SUITES.value:
    config = design_costs.get_config()
    info = data.dataset_info(config.data)
    rows = bench.design_rows(design_costs.DESIGNS, info.num_classes, info.image_size,
                             config.eval_batch_size, _REPEATS.value)
    sections += [f'## Three ways to label every pixel: inference cost at batch '
                 f'{config.eval_batch_size}, {info.image_size}×{info.image_size}', '',
                 'experiments/design_costs.py\'s designs (parameters matched within 4%); '
                 'forward pass only.', '',
                 bench.markdown_table(rows, [
                     ('arch', 'arch', '{}'), ('width', 'width', '{}'),
                     ('params', 'params', '{:,}'), ('gflops_per_image', 'GFLOPs/image', '{:.3f}'),
                     ('forward_ms_per_image', 'forward ms/image', '{:.2f}'),
                     ('forward_memory_mb', 'forward memory MB', '{:.1f}')]), '']
  if 'pipeline' in _SUITES.value:
    config = base.get_config()
    rate = bench_pipeline(config)
    line = (f'## Input pipeline\n\n{config.data.name}/{config.data.variant}, batch '
            f'{_TRAIN_BATCH.value}: **{rate:.0f} images/s**')
    if train_images_per_second:
      line += (f'; the default U-Net (nearest) trains at {train_images_per_second:.0f} images/s, '
               f'so the pipeline is {rate / train_images_per_second:.1f}× faster (target ≥ 5×).')
    sections += [line, '']
  text = '\n'.join(sections)
  print(text)
  if _OUT.value:
    os.makedirs(_OUT.value, exist_ok=True)
    name = env['device'].split(' ')[0]
    path = os.path.join(_OUT.value, f'bench_{name}.md')
    workdir_lib.write_text_atomic(path, text)
    print(f'Wrote {path}')


def _model(spec: str):
  width, _, upsampler = spec.partition(':')
  if not width.isdigit() or upsampler not in upsamplers.names():
    raise app.UsageError(f'Expected WIDTH:UPSAMPLER (e.g. 16:nearest), upsampler one of '
                         f'{", ".join(upsamplers.names())}; got {spec!r}.')
  return int(width), upsampler


def bench_pipeline(config):
  from research.data import bench as data_bench  # pylint: disable=g-import-not-at-top
  return data_bench.pipeline_images_per_second(config.data, _TRAIN_BATCH.value, 200)


if __name__ == '__main__':
  app.run(main)
