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
from launch import cli
from research import data
from research import upsamplers
from research import workdir as workdir_lib
from research.bench import comparisons
from research.bench import measure
from research.bench import report
from research.bench import train_step
from research.data import bench as data_bench

_SUITES = flags.DEFINE_multi_enum(
  'suites',
  ['upsamplers', 'train', 'pipeline', 'levers', 'pytorch'],
  ['upsamplers', 'train', 'pipeline', 'levers', 'pytorch', 'designs', 'onednn'],
  'What to benchmark (pytorch: only where torch is installed; designs: the inference cost '
  "of experiments/design_costs.py's three designs; onednn: the convolutions and train step by "
  'XLA, oneDNN and PyTorch; minutes on 2 CPU cores each, so not by default).',
)
_BATCH = flags.DEFINE_integer('batch', 32, 'Upsampler suite: batch size.')
_SIZE = flags.DEFINE_integer('size', 32, 'Upsampler suite: input height and width.')
_CHANNELS = flags.DEFINE_integer('channels', 64, 'Upsampler suite: channels.')
_ARCHS = flags.DEFINE_list('archs', ['unet', 'fcn8s', 'segnet'], 'Train suite: architectures.')
_UPSAMPLERS = flags.DEFINE_list('upsamplers', upsamplers.names(), 'Upsamplers to benchmark.')
_TRAIN_BATCH = flags.DEFINE_integer('train_batch', 16, 'Train suite: global batch size.')
_WIDTH = flags.DEFINE_integer('width', 16, 'Train suite: base width of the models.')
_TORCH_MODELS = flags.DEFINE_list(
  'torch_models',
  ['16:nearest', '32:transpose_conv'],
  'pytorch suite: U-Nets as WIDTH:UPSAMPLER (16:nearest is the default U-Net).',
)
_LEVER_MODEL = flags.DEFINE_string(
  'lever_model', '16:nearest', 'levers suite: the U-Net as WIDTH:UPSAMPLER.'
)
_XLA_LEVERS = flags.DEFINE_list(
  'xla_levers',
  [
    '--xla_cpu_experimental_ynn_fusion_type=+individual_convolution',
    '--xla_cpu_experimental_ynn_fusion_type=',
    '--xla_cpu_use_onednn=true',
    '--xla_cpu_experimental_onednn_custom_call=true',
    '--xla_cpu_enable_fast_math=true',
    '--xla_cpu_enable_concurrency_optimized_scheduler=true',
    '--xla_cpu_multi_thread_eigen=false',
  ],
  'levers suite: XLA flags, each tried alone in a fresh process (one that names a flag of '
  'research/xla_flags.py replaces its default there).',
)
_REPEATS = flags.DEFINE_integer('repeats', 10, 'Timed calls per measurement (median).')
_OUT = flags.DEFINE_string('out', 'results', 'Folder for bench_<device>.md ("" to only print).')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  unknown = sorted(set(_UPSAMPLERS.value) - set(upsamplers.names()))
  if unknown:
    raise app.UsageError(f'Unknown upsampler(s) {unknown}; known: {", ".join(upsamplers.names())}.')
  env = report.environment()
  sections = report.header(env, ' '.join(sys.argv[1:]), _REPEATS.value)
  train_images_per_second = None
  if 'upsamplers' in _SUITES.value:
    b, s, c = _BATCH.value, _SIZE.value, _CHANNELS.value
    rows = measure.upsampler_rows(_UPSAMPLERS.value, b, s, c, _REPEATS.value)
    sections += report.upsamplers_section(rows, b, s, c)
  if 'train' in _SUITES.value:
    config = base.get_config()
    config.batch_size, config.model.width = _TRAIN_BATCH.value, _WIDTH.value
    rows = train_step.train_step_rows(config, _ARCHS.value, _UPSAMPLERS.value, _REPEATS.value)
    sections += report.train_section(config, rows)
    unet = [r for r in rows if r['arch'] == 'unet' and r['upsampler'] == 'nearest']
    train_images_per_second = unet[0]['images_per_second'] if unet else None
  if 'levers' in _SUITES.value:
    config = base.get_config()
    config.batch_size = _TRAIN_BATCH.value
    config.model.width, config.model.upsampler = _model(_LEVER_MODEL.value)
    sections += comparisons.levers_section(config, _XLA_LEVERS.value, _REPEATS.value)
  if 'pytorch' in _SUITES.value:
    config = base.get_config()
    config.batch_size = _TRAIN_BATCH.value
    sections += comparisons.pytorch_section(
      config, [_model(m) for m in _TORCH_MODELS.value], _REPEATS.value
    )
  if 'onednn' in _SUITES.value:
    config = base.get_config()
    config.batch_size = _TRAIN_BATCH.value
    config.model.width, config.model.upsampler = _model(_LEVER_MODEL.value)
    sections += comparisons.onednn_section(config, _REPEATS.value)
  if 'designs' in _SUITES.value:
    config = design_costs.get_config()
    info = data.dataset_info(config.data)
    rows = measure.design_rows(
      design_costs.DESIGNS,
      info.num_classes,
      info.image_size,
      config.eval_batch_size,
      _REPEATS.value,
    )
    sections += report.designs_section(rows, config.eval_batch_size, info.image_size)
  if 'pipeline' in _SUITES.value:
    config = base.get_config()
    rate = data_bench.pipeline_images_per_second(config.data, _TRAIN_BATCH.value, 200)
    sections += report.pipeline_section(config, _TRAIN_BATCH.value, rate, train_images_per_second)
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
    raise app.UsageError(
      f'Expected WIDTH:UPSAMPLER (e.g. 16:nearest), upsampler one of '
      f'{", ".join(upsamplers.names())}; got {spec!r}.'
    )
  return int(width), upsampler


if __name__ == '__main__':
  cli.run(main)
