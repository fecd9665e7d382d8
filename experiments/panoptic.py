r"""Panoptic segmentation bottom-up, as Panoptic-DeepLab (issue 20): U-Net × upsamplers with
one decoder making the semantic logits, the instance-centre heatmap and the offsets.

  python -m launch.sweep --config experiments/panoptic.py --root workdirs/panoptic \
      --archive results/runs/panoptic
  python -m launch.table --root results/runs/panoptic --name panoptic --reference nearest \
      --out results

One cell: `python -m launch.train --config experiments/panoptic.py:upsampler=transpose_conv
--workdir workdirs/panoptic_transpose_conv`. Each cell trains U-Net (width 8, 2400 steps,
batch 16) on lab_shapes/res64_instances (res64's images with instance ids; every object a
thing, background the one stuff class) with Panoptic-DeepLab's loss and scores the test
split: PQ, SQ, RQ per class, over things and stuff, the semantic mIoU, and the checkerboard
score of the offsets and of the heatmap (research/panoptic_run.py says where it departs from
the paper). Grid: every upsampler U-Net takes (`decoders=classic`: the 8 classic ones) ×
`seeds` seeds, seed 0 of every row first; the rows where a dense regression should show a
transposed convolution's artifacts can go first: `launch.sweep ... --only
'upsampler=nearest|bilinear|transpose_conv|resize_conv|pixel_shuffle'`.
Smoke test: `:steps=30,seeds=1`.

Loss weights and length, measured (U-Net nearest, seed 0, 800 steps, test split; runs
from da956ae to d7dade6, the same model and loss). With the paper's weights (heatmap 200,
offsets 0.01) the heatmap term's gradient at initialisation is 270× the semantic one's
(norms 440 and 1.6, so the global gradient clipping spends the early steps on it) and
still 15× after training, while the offsets' is 0.05×: semantic mIoU 24.7 against 37.9
for the same model trained on the semantic term alone, PQ over things 4.5, offsets still
7.8 px off (L1). The paper's weights are for 1024×2048 images, offsets of tens of pixels
and a decoder per head; here one width-8 decoder makes all three at 64 px. With heatmap
10 and offsets 0.1 (the defaults): mIoU 26.7, PQ over things 9.0, flat from step 400 on.
At 800 steps even the semantic-only model leaves lines, polygons and specks near IoU 0
(0.02, 0.22, 0.00), so PQ over things has little to measure: cells train 2400 steps, the
length at which the decoder ablation's U-Net classes separated
(experiments/decoder_ablation_long.py).

Time: 0.29 s per train step (the 800-step runs above, beside one other cell on the 2 CPU
cores, oneDNN convolutions), so ~12 min of training per cell at 2400 steps; the
evaluation groups every image on the host (~1 min).
Expected numbers (3 seeds, test split, %, mean ± std; cells run from ed92241 (seed 0) and
at 11ea619..55d0288 (seeds 1-2), 7-20 min each, median 11, mostly beside one other cell,
1.6 cell-hours for the 9; results/panoptic.md from results/runs/panoptic): nearest mIoU
49.2 ± 5.4, PQ 49.2 ± 6.5, PQ things 39.3 ± 7.7; transpose_conv 49.3 ± 5.0 / 50.0 ± 3.8 /
40.3 ± 4.5; resize_conv 48.7 ± 4.2 / 48.8 ± 3.6 / 39.0 ± 4.2. Paired against nearest, no PQ
or mIoU difference is detected (transpose_conv PQ +0.8 [−1.2, +3.8], resize_conv −0.3 [−3.7,
+3.1]; detectable 4.7 points), while the checkerboard score of the offsets is +15.1 [+2.9,
+30.3] points for transpose_conv (0.0 for resize_conv): the artifact shows in the dense
regression and not in PQ. The other 11 rows: not run yet.
"""

import ml_collections

from experiments import decoder_ablation
from research import config_utils
from research.data import lab_shapes


def parse_args(arg):
  return config_utils.parse_arg(
    arg,
    **{**decoder_ablation.TASK_ARGS, 'steps': 2400},
    variant='res64_instances',
    sigma=2.0,
    heatmap_weight=10.0,
    offset_weight=0.1,
  )


def get_config(arg=None):
  arg = parse_args(arg)
  c = decoder_ablation.unet_config(arg)
  c.method = 'panoptic'  # research.runners runs research.panoptic_run
  c.eval_every = c.checkpoint_every = max(arg.steps // 4, 1)  # each evaluation groups on the host
  c.data.variant = arg.variant
  c.panoptic = ml_collections.ConfigDict(
    dict(
      thing_classes=lab_shapes.THING_CLASSES,
      stuff_classes=lab_shapes.STUFF_CLASSES,
      sigma=arg.sigma,  # px, of the centre Gaussian (the paper: 8 px on Cityscapes)
      heatmap_weight=arg.heatmap_weight,  # Panoptic-DeepLab's: 200 and 0.01 (see above)
      offset_weight=arg.offset_weight,
      threshold=0.1,  # centre post-processing, as the paper
      nms_kernel=7,
      top_k=200,
    )
  )
  return c


def get_sweep(arg=None):
  arg = parse_args(arg)
  return decoder_ablation.unet_sweep(arg.decoders, arg.seeds)
