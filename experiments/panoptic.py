r"""Panoptic segmentation bottom-up, as Panoptic-DeepLab (issue 20): U-Net × upsamplers with
one decoder making the semantic logits, the instance-centre heatmap and the offsets.

  python -m launch.sweep --config experiments/panoptic.py --root workdirs/panoptic \
      --archive results/runs/panoptic
  python -m launch.table --root workdirs/panoptic --name panoptic --out results

One cell: `python -m launch.train --config experiments/panoptic.py:upsampler=transpose_conv
--workdir workdirs/panoptic_transpose_conv`. Each cell trains U-Net (width 8, 800 steps,
batch 16) on lab_shapes/res64_instances (res64's images with instance ids; every object a
thing, background the one stuff class) with Panoptic-DeepLab's loss and scores the test
split: PQ, SQ, RQ per class, over things and stuff, the semantic mIoU, and the checkerboard
score of the offsets and of the heatmap (research/panoptic_run.py says where it departs from
the paper). Grid: every upsampler U-Net takes (`decoders=classic`: the 8 classic ones) ×
`seeds` seeds, seed 0 of every row first. Smoke test: `:steps=30,seeds=1`.

Time: 0.28 s per train step (median of the smoke run `launch.train --config
experiments/panoptic.py:steps=30` at 852a8b6, 2 shared CPU cores, XLA's convolutions), so
~4 min of training per cell at 800 steps; the evaluation groups every image on the host
(the 30-step smoke run took 2 min 30 s in all).
Expected numbers: pending the runs (3 seeds; tables committed with them).
"""

import ml_collections

from experiments import decoder_ablation
from research import config_utils
from research.data import lab_shapes


def parse_args(arg):
  return config_utils.parse_arg(
    arg,
    **decoder_ablation.TASK_ARGS,
    variant='res64_instances',
    sigma=2.0,
  )


def get_config(arg=None):
  arg = parse_args(arg)
  c = decoder_ablation.unet_config(arg)
  c.method = 'panoptic'  # research.runners runs research.panoptic_run
  c.data.variant = arg.variant
  c.panoptic = ml_collections.ConfigDict(
    dict(
      thing_classes=lab_shapes.THING_CLASSES,
      stuff_classes=lab_shapes.STUFF_CLASSES,
      sigma=arg.sigma,  # px, of the centre Gaussian (the paper: 8 px on Cityscapes)
      heatmap_weight=200.0,  # Panoptic-DeepLab's loss weights
      offset_weight=0.01,
      threshold=0.1,  # centre post-processing, as the paper
      nms_kernel=7,
      top_k=200,
    )
  )
  return c


def get_sweep(arg=None):
  arg = parse_args(arg)
  return decoder_ablation.unet_sweep(arg.decoders, arg.seeds)
