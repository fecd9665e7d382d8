r"""Decoder benchmark v2: every upsampler each architecture takes, paired by seed, four parts.

  python -m launch.sweep --config experiments/benchmark.py:part=fcn8s \
      --root workdirs/benchmark/fcn8s --archive results/runs/benchmark/fcn8s
  python -m launch.table --root results/runs/benchmark/fcn8s --name benchmark_fcn8s \
      --reference nearest,bilinear --out results
  python -m launch.findings --root results/runs/benchmark --out results/FINDINGS.md

The archive (results/runs/benchmark/PART, committed) keeps every finished cell's results
without its checkpoints: the sweep restores it first and skips those cells, so the
benchmark adds up over machines whose workdirs do not last; the findings read it. Rows
that claims need can go first: `--only 'upsampler=bilinear|carafe' --only 'seed=0|1|2'`.

`part` picks the grid (one sweep root each, under workdirs/benchmark/):
  unet     U-Net, all 14 upsamplers, 5 seeds, 2400 steps (the length at which the classic
           decoders separated in experiments/decoder_ablation_long.py), lab_shapes/res64.
  fcn8s    FCN-8s, the 12 upsamplers FCN can take (they see class scores: the linear-head
           case), 3 seeds, 800 steps.
  segnet   SegNet, the 11 it can take (its only skips are pooling switches), 5 seeds, 2400.
  fashion  the U-Net rows on fashion_scenes (real garment shapes), 3 seeds, 2400 steps.
Every part is width 8, batch 16, the decoder ablation's optimiser; cells are seed-major
(seed 0 of every row first), so a sweep cut short still gives every row. The findings
(CLAIMS below) also read experiments/fcn_skips.py and experiments/checkerboard.py, run
and archived the same way under the names fcn_skips and checkerboard (SWEEPS).

Cost, measured on 2 CPU cores from 94f7ec1 on (results/FINDINGS.md keeps the cell
hours of every sweep and the hours left at that rate): an FCN-8s cell alone takes 2.3 min
on a Zen 4 (0.07 s/step; evaluation, FLOP counting and compilation are more than half of
it), 4-5 min beside another cell; on an AMD EPYC 0.9-2.0 min (its 24 cells of the eight
classic and IndexNet rows: 31 min in all, the dataset build included), SAPA-B 7-15 min and
CARAFE 3-9.5 (timing.json, earlier machines, some beside another cell). The FCN-8s part
is complete: 36 cells. Per U-Net train step at width 8 (50-step probes, one at a time):
nearest 0.11 s, DySample 0.18 s, SAPA-I 0.20 s, CARAFE 0.27 s (its 64-channel compressor
and 3×3 encoder cost more than its reassembly): measured below, a 2400-step U-Net cell
is 3.4-21.1 min, and the four parts together are about 26 CPU-hours at the cell costs so
far (12.8 spent; the unet and fcn8s parts are complete, about 10 left for segnet, fcn_skips
and checkerboard, fashion not counted), over the issue's 12: segnet next; fashion last,
with fewer seeds (`seeds=1`) if the budget is short.
Measured U-Net cells (2400 steps, one at a time, oneDNN convolutions; timing.json of the
archive, seeds 0-1 on an AMD Zen 4, seed 2 and nearest on an Intel Xeon, seeds 3-4 on an AMD
EPYC): bilinear 3.4-4.1 min, bilinear_additive 3.4-4.2, nearest 3.9-4.4, DySample 4.9-6.1,
CARAFE 7.7-8.8, FADE 10.6-12.2, SAPA-B 15.6-21.1; on the EPYC bed_of_nails 4.1-4.2,
transpose_conv 4.3-4.9, resize_conv 4.6-4.8, pixel_shuffle 4.6-4.7, IndexNet 4.6-5.0,
max_unpool 4.7-4.8, SAPA-I 8.7-9.1 (their seed-0 cells, 5.1-10.0, ran beside tests); their
seeds 3-4 on a slower EPYC (2026-12-02): 4.8-7.1 min, SAPA-I 12.2-12.4, 101 min for the 14. The
seven 5-seed rows take 50-60 min a seed (seeds 3-4 of all seven: 119.5 cell-minutes on the
EPYC), the other seven about 40 min a seed (their seeds 0-2: 118.5 cell-minutes). (The
archived wall times of bilinear seeds 0 and 2, 34 and 20 min, include time paused for
benchmarks.)
Expected (5 seeds, test mIoU %, results/benchmark_unet.md): nearest 55.5 ± 7.8, bilinear
54.9 ± 7.9, bilinear_additive 51.4 ± 5.2, bed_of_nails 52.9 ± 6.5, CARAFE 53.1 ± 10.6,
DySample 55.9 ± 4.3, FADE 57.0 ± 7.8, IndexNet 56.6 ± 8.6, max_unpool 54.4 ± 7.1,
pixel_shuffle 54.0 ± 8.2, resize_conv 56.9 ± 10.2, SAPA-B 52.4 ± 6.9, SAPA-I 53.6 ± 6.9,
transpose_conv 52.0 ± 7.0; seed 4 is hard for every row and seed 3 easy, so the spreads are
mostly shared: read the paired differences, not the spreads (none beats bilinear on mIoU;
detectable 7.2 points).
Expected FCN-8s (3 seeds, test mIoU %, results/benchmark_fcn8s.md): bilinear 28.1 ± 0.1 (and
bilinear_additive, identical: one channel per group), nearest 24.7 ± 0.1, resize_conv 29.2 ±
0.5, CARAFE 29.1 ± 0.3, pixel_shuffle 28.6 ± 0.2, DySample 28.1 ± 0.1, transpose_conv 26.3 ±
1.1, IndexNet 22.3 ± 0.2, bed_of_nails 13.8 ± 0.0, max_unpool 13.6 ± 0.0, SAPA-B 32.6 ± 6.3
(seeds 25.5, 34.8, 37.5).
Smoke test: `experiments/benchmark.py:part=unet,steps=2,seeds=1`.
"""

from experiments import decoder_ablation
from research import models
from research import upsamplers
from research.sweep import grids

PARTS = {
  # part: (architecture, dataset, seeds, steps)
  'unet': ('unet', 'lab_shapes', 5, 2400),
  'fcn8s': ('fcn8s', 'lab_shapes', 3, 800),
  'segnet': ('segnet', 'lab_shapes', 5, 2400),
  'fashion': ('unet', 'fashion_scenes', 3, 2400),
}


def parse_args(arg):
  """`part` and the ablation's keys; a part sets the ablation's defaults it changes."""
  part = decoder_ablation.parse_args(arg, part='unet').part
  if part not in PARTS:
    raise ValueError(f'part must be one of {", ".join(PARTS)}; got {part!r}.')
  arch, dataset, seeds, steps = PARTS[part]
  return decoder_ablation.parse_args(
    arg, part='unet', arch=arch, dataset=dataset, seeds=seeds, steps=steps
  )


def get_config(arg=None):
  arg = parse_args(arg)
  c = decoder_ablation.config_from(arg)
  c.data.name = arg.dataset
  c.eval_every = max(arg.steps // 4, 1)
  c.checkpoint_every = max(arg.steps // 4, 1)
  return c


def get_sweep(arg=None):
  """Every upsampler the part's architecture takes × its seeds, seed 0 of every row first."""
  arg = parse_args(arg)
  rows = grids.axis(
    'model.upsampler', [u for u in upsamplers.names() if models.compatible(arg.arch, u)]
  )
  cells = grids.product(rows, grids.axis('seed', range(arg.seeds)))
  return sorted(cells, key=lambda cell: cell['seed'])


# The findings (python -m launch.findings) read these sweeps, each archived under
# results/runs/benchmark/: `python -m launch.sweep --config CONFIG --root
# workdirs/benchmark/NAME --archive results/runs/benchmark/NAME`.
SWEEPS = {
  **{part: f'experiments/benchmark.py:part={part}' for part in PARTS},
  'fcn_skips': 'experiments/fcn_skips.py',
  'checkerboard': 'experiments/checkerboard.py',
}
_DYNAMIC_GAINS = 'FADE README (SegFormer-B1, ADE20K): bilinear 41.68 mIoU'
CLAIMS = [
  *[
    dict(
      claim=f'Skips help: {better.upper()[:3]}-{better[3:]} beats {worse.upper()[:3]}-{worse[3:]}',
      source='Long et al. 2015, Table 2',
      published=published,
      sweep='fcn_skips',
      metric='mIoU',
      candidate={'model.arch': better, 'model.upsampler': 'transpose_conv'},
      reference={'model.arch': worse, 'model.upsampler': 'transpose_conv'},
      expect='greater',
    )
    for better, worse, published in (
      ('fcn8s', 'fcn16s', 'mIoU 16s 62.4, 8s 62.7 (VOC 2011)'),
      ('fcn16s', 'fcn32s', 'mIoU 32s 59.4, 16s 62.4 (VOC 2011)'),
    )
  ],
  dict(
    claim="SegNet's max-unpooling gives better boundaries than bilinear upsampling",
    source='Badrinarayanan et al. 2017, Table 1',
    published='BF 35.78 (SegNet-Basic) vs 20.83 (bilinear), CamVid',
    sweep='segnet',
    metric='boundary F1',
    candidate={'model.upsampler': 'max_unpool'},
    reference={'model.upsampler': 'bilinear'},
    expect='greater',
  ),
  *[
    dict(
      claim=claim,
      source='Odena et al. 2016',
      published='qualitative',
      sweep='checkerboard',
      metric='checkerboard (logits)',
      candidate={
        'model.upsampler': 'transpose_conv',
        'model.upsampler_options': {'kernel_size': 3},
      },
      reference={'model.upsampler': 'resize_conv', 'model.upsampler_options': {}},
      expect='greater',
      init=init,
    )
    for claim, init in (
      ('Uneven overlap (kernel 3, stride 2) makes checkerboard artifacts, at initialisation', True),
      ('Uneven overlap still shows after training; resize-convolution avoids it', False),
    )
  ],
  dict(
    claim='ICNR removes the artifacts of sub-pixel convolution at initialisation',
    source='Aitken et al. 2017',
    published='qualitative',
    sweep='checkerboard',
    metric='checkerboard (logits)',
    candidate={'model.upsampler': 'pixel_shuffle', 'model.upsampler_options': {'icnr': True}},
    reference={'model.upsampler': 'pixel_shuffle', 'model.upsampler_options': {}},
    expect='less',
    init=True,
  ),
  dict(
    claim='Bilinear additive upsampling beats plain bilinear in the decoder',
    source='Wojna et al. 2019',
    published='tables not verified here (ANCHORS.md)',
    sweep='unet',
    metric='mIoU',
    candidate={'model.upsampler': 'bilinear_additive'},
    reference={'model.upsampler': 'bilinear'},
    expect='greater',
  ),
  *[
    dict(
      claim=f'{name} beats bilinear ({part})',
      source=source,
      published=published,
      sweep=part,
      metric='mIoU',
      candidate={'model.upsampler': upsampler},
      reference={'model.upsampler': 'bilinear'},
      expect='greater',
    )
    for part in ('unet', 'fashion')
    for name, upsampler, source, published in (
      ('CARAFE', 'carafe', 'Wang et al. 2019', f'{_DYNAMIC_GAINS}, CARAFE 42.82'),
      ('FADE', 'fade', 'Lu et al. 2022', f'{_DYNAMIC_GAINS}, FADE 44.41'),
      ('SAPA-B', 'sapa_b', 'Lu et al. 2022 (SAPA)', 'SAPA README: SAPA-B 43.20 mIoU'),
      (
        'DySample',
        'dysample',
        'Liu et al. 2023',
        'COCO box AP against nearest (37.5 -> 38.6); here mIoU against bilinear',
      ),
    )
  ],
  *[
    dict(
      claim=f'With a linear head, {name} does not beat bilinear (JAFAR upsamples features '
      'before a linear probe; FCN-8s upsamples the class scores of its linear head)',
      source='JAFAR (arXiv 2506.11136), Table 1',
      published=published,
      sweep='fcn8s',
      metric='mIoU',
      candidate={'model.upsampler': upsampler},
      reference={'model.upsampler': 'bilinear'},
      expect='not_greater',
    )
    for name, upsampler, published in (
      ('CARAFE', 'carafe', 'ADE20K mIoU: bilinear 39.23, CARAFE 38.30'),
      ('SAPA-B', 'sapa_b', 'ADE20K mIoU: bilinear 39.23, SAPA 35.87'),
      ('DySample', 'dysample', 'ADE20K mIoU: bilinear 39.23, DySample 38.99'),
    )
  ],
]
