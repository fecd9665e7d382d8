r"""Instance masks, the mask head's upsampler (Mask R-CNN, issue 20): on ground-truth boxes,
RoIAlign to 14×14, four 3×3 convolutions, the ×2 upsampler under test, 28×28 mask logits.

  python -m launch.sweep --config experiments/instance.py --root workdirs/instance \
      --archive results/runs/instance
  python -m launch.table --root workdirs/instance --name instance --out results

One cell: `python -m launch.train --config experiments/instance.py:upsampler=transpose_conv,k=2
--workdir workdirs/instance_transpose_conv_k2` (k=2: Mask R-CNN's 2×2 stride-2
deconvolution). Each cell trains the mask head model (research/models/mask_head.py: a U-Net
backbone of width 8 with nearest upsampling at full resolution, a head of 32 channels) for
800 steps, batch 16, on lab_shapes/res64_instances' ground-truth boxes (at most 17 per
image, padded to 17), and scores the test split's pasted masks: mask IoU, boundary F1,
COCO mask AP over IoU 0.50:0.95 (masks scored by their mean probability), and the
checkerboard of the 28×28 logits (research/instance_run.py). Grid: Mask R-CNN's transposed
convolution (k=2) and every upsampler the head takes (not max_unpool, indexnet: no pooling
in the head; `decoders=classic`: the classic ones only) × `seeds` seeds, seed 0 of every
row first. Smoke test: `:steps=30,seeds=1`.

Time: 1.04 s per train step with XLA's convolutions (median of the smoke run `launch.train
--config experiments/instance.py:steps=20`, 2 shared CPU cores; 1.46 s with 24 padded boxes
per image): the head runs 16 × 17 RoIs through four 3×3 convolutions. With oneDNN's
(conv_impl='auto'), 0.33-0.36 s per step: a whole cell (800 steps, evaluation included)
took 5.1-5.6 min on an Intel Xeon, 6.3-7.4 min on an AMD EPYC (2 cores); the 9 cells of
the rows below, 1.0 hours on the EPYC. Expected numbers (results/instance.md: the archive's 3
seeds, rerun on the EPYC, test split, %): mask AP nearest 74.5 ± 1.3, bilinear 79.3 ± 0.4,
transpose_conv k=2 79.0 ± 0.4; mask IoU 87.8 ± 0.7, 90.0 ± 0.3, 89.8 ± 0.2; boundary F1
96.2 ± 0.7, 96.8 ± 0.2, 96.3 ± 0.1. The table's
command: `python -m launch.table --root results/runs/instance --name instance --reference
nearest,bilinear --out results`: paired columns (mask AP recomputed on each bootstrap resample,
mask IoU and boundary F1 as means over instances) between runs that keep per-image values
(per_image_<split>.npz; runs made before the runner wrote it have none).
"""

import ml_collections

from experiments import decoder_ablation
from research import config_utils
from research.models import mask_head
from research.sweep import grids


def parse_args(arg):
  return config_utils.parse_arg(
    arg,
    **{**decoder_ablation.TASK_ARGS, 'upsampler': 'transpose_conv'},
    k=2,  # transpose_conv's kernel size (2: Mask R-CNN's); other upsamplers ignore it
    variant='res64_instances',
  )


def get_config(arg=None):
  arg = parse_args(arg)
  c = decoder_ablation.unet_config(arg)
  c.method = 'instance'  # research.runners runs research.instance_run
  c.data.variant = arg.variant
  if arg.upsampler == 'transpose_conv':
    c.model.upsampler_options = {'kernel_size': arg.k}
  c.instance = ml_collections.ConfigDict(
    dict(
      head_width=32,  # the mask head's channels (Mask R-CNN: 256)
      max_instances=17,  # boxes per image, padded: res64 draws at most 17 objects (3 blobs,
      # 3 polygons, 3 lines, 2 rings, 6 specks); every padded box costs a full head pass
      backbone_upsampler='nearest',  # the backbone's, the same for every cell
    )
  )
  return c


def get_sweep(arg=None):
  arg = parse_args(arg)
  rows = [{'model.upsampler': 'transpose_conv', 'model.upsampler_options': {'kernel_size': 2}}]
  for name in decoder_ablation.upsampler_names(arg.decoders):
    try:
      mask_head.check_upsampler(name)
    except ValueError:
      continue
    rows.append({'model.upsampler': name, 'model.upsampler_options': {}})
  cells = grids.product(rows, grids.axis('seed', range(arg.seeds)))
  return sorted(cells, key=lambda cell: cell['seed'])
