r"""Decoder ablation: {FCN-8s, U-Net, SegNet} × 8 upsamplers × 3 seeds on lab_shapes/res64.

  python -m launch.sweep --config experiments/decoder_ablation.py --root workdirs/decoder_ablation
  python -m launch.table --root workdirs/decoder_ablation --name decoder_ablation --out results

72 cells of 800 steps at width 8, batch 16, one at a time: about 2 h 10 min on 2 CPU cores
(shared with other work; FCN cells ~55 s each, U-Net and SegNet cells 90-150 s). Seed 0
of every configuration runs first, so that a sweep cut short still gives every row.
Expected (results/decoder_ablation.md, test mIoU %): FCN-8s 13.6-29.3 (sparse unpooling
~13.7, learned or smooth decoders 26-29), U-Net 35-37, SegNet 25-26. One cell alone:

  python -m launch.train --config experiments/decoder_ablation.py:arch=segnet,upsampler=max_unpool \
      --workdir workdirs/segnet_max_unpool

Smoke test (2 steps, 1 seed): `experiments/decoder_ablation.py:steps=2,seeds=1`.
Results: see results/decoder_ablation.md.
"""
from experiments import base
from research import config_utils
from research.sweep import grids

ARCHS = ('fcn8s', 'unet', 'segnet')
UPSAMPLERS = ('nearest', 'bed_of_nails', 'max_unpool', 'transpose_conv', 'bilinear',
              'resize_conv', 'pixel_shuffle', 'bilinear_additive')


def parse_args(arg, **defaults):
  """The argument string over this ablation's defaults, and `defaults` (a variant's own
  keys, or other default values). `seeds` is read by get_sweep only; get_config accepts
  it so both take the same string."""
  return config_utils.parse_arg(arg, **{**dict(arch='unet', upsampler='nearest', seed=0,
                                                steps=800, width=8, seeds=3), **defaults})


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


def get_sweep(arg=None):
  arg = parse_args(arg)
  cells = grids.product(grids.axis('model.arch', ARCHS), grids.axis('model.upsampler', UPSAMPLERS),
                        grids.axis('seed', range(arg.seeds)))
  return sorted(cells, key=lambda cell: cell['seed'])  # stable: seed 0 of every row first
