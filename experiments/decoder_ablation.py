r"""Decoder ablation: {FCN-8s, U-Net, SegNet} × every upsampler each can take × 5 seeds.

  python -m launch.sweep --config experiments/decoder_ablation.py --root workdirs/decoder_ablation
  python -m launch.table --root workdirs/decoder_ablation --name decoder_ablation --out results

The grid names every registered upsampler each architecture can take (models.compatible:
FADE and SAPA-I need U-Net's skip of x's width, SegNet gives no skip), 37 rows × 5 seeds
(decoder comparisons are paired by seed from now on: `launch.table --reference nearest`);
seed 0 of every row runs first, so that a sweep cut short still gives every row. The dynamic
upsamplers have not been run on this grid yet (the results issue runs it).
`decoders=classic,seeds=3` is the grid of the committed results: the 8 classic upsamplers, 72 cells
of 800 steps at width 8, batch 16, one at a time, about 2 h 10 min on 2 CPU cores (shared
with other work; FCN cells ~55 s each, U-Net and SegNet cells 90-150 s). Expected
(results/decoder_ablation.md, test mIoU %): FCN-8s 13.6-29.3 (sparse unpooling ~13.7,
learned or smooth decoders 26-29), U-Net 35-37, SegNet 25-26. One cell alone:

  python -m launch.train --config experiments/decoder_ablation.py:arch=segnet,upsampler=max_unpool \
      --workdir workdirs/segnet_max_unpool

Smoke test (2 steps, 1 seed): `experiments/decoder_ablation.py:steps=2,seeds=1`;
the committed grid: `experiments/decoder_ablation.py:decoders=classic,seeds=3`.
Results: see results/decoder_ablation.md.
"""

from experiments import base
from research import config_utils
from research import models
from research import upsamplers
from research.sweep import grids

ARCHS = ('fcn8s', 'unet', 'segnet')
CLASSIC = (
  'nearest',
  'bed_of_nails',
  'max_unpool',
  'transpose_conv',
  'bilinear',
  'resize_conv',
  'pixel_shuffle',
  'bilinear_additive',
)
DECODERS = ('all', 'classic')


def parse_args(arg, **defaults):
  """The argument string over this ablation's defaults, and `defaults` (a variant's own
  keys, or other default values). `seeds` is read by get_sweep only; get_config accepts
  it so both take the same string."""
  return config_utils.parse_arg(
    arg,
    **{
      **dict(arch='unet', upsampler='nearest', seed=0, steps=800, width=8, seeds=5, decoders='all'),
      **defaults,
    },
  )


def get_config(arg=None):
  return config_from(parse_args(arg))


def config_from(arg):
  """The ablation's config for parsed arguments (see parse_args); variants build on it."""
  c = base.get_config()
  c.seed = arg.seed
  c.model.arch = arg.arch
  c.model.upsampler = arg.upsampler
  c.model.width = arg.width
  c.num_steps = arg.steps
  c.log_every = 25
  c.eval_every = 200
  c.checkpoint_every = 200
  return c


def upsampler_names(decoders: str = 'all') -> tuple[str, ...]:
  """The classic eight, or every registered upsampler (the classic ones first)."""
  if decoders not in DECODERS:
    raise ValueError(f'decoders must be one of {", ".join(DECODERS)}; got {decoders!r}.')
  if decoders == 'classic':
    return CLASSIC
  return CLASSIC + tuple(u for u in upsamplers.names() if u not in CLASSIC)


def decoder_rows(decoders: str = 'all') -> list[dict]:
  """(arch, upsampler) rows: the classic eight in every architecture, or every registered
  upsampler in every architecture that can take it."""
  names = upsampler_names(decoders)
  return [
    {'model.arch': arch, 'model.upsampler': name}
    for arch in ARCHS
    for name in names
    if models.compatible(arch, name)
  ]


def get_sweep(arg=None):
  return sweep_from(parse_args(arg))


def sweep_from(arg):
  """The grid for parsed arguments (see parse_args); variants build on it."""
  cells = grids.product(decoder_rows(arg.decoders), grids.axis('seed', range(arg.seeds)))
  return sorted(cells, key=lambda cell: cell['seed'])  # stable: seed 0 of every row first


# The argument keys the task experiments (video, panoptic, instance) share, with their defaults.
TASK_ARGS = dict(upsampler='nearest', seed=0, steps=800, width=8, seeds=3, decoders='all')


def unet_config(arg):
  """This ablation's U-Net config for a task experiment's parsed TASK_ARGS."""
  return config_from(
    parse_args(
      None, arch='unet', upsampler=arg.upsampler, seed=arg.seed, steps=arg.steps, width=arg.width
    )
  )


def unet_sweep(decoders: str, seeds: int) -> list[dict]:
  """U-Net with each upsampler of `decoders` (upsampler_names) that it can
  take × `seeds` seeds, seed 0 of every row first."""
  rows = [{'model.upsampler': u} for u in upsampler_names(decoders) if models.compatible('unet', u)]
  cells = grids.product(rows, grids.axis('seed', range(seeds)))
  return sorted(cells, key=lambda cell: cell['seed'])
