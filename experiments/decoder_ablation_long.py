r"""Decoder ablation, U-Net rows trained 3× longer: do decoders separate once training converges?

  python -m launch.sweep --config experiments/decoder_ablation_long.py \
      --root workdirs/decoder_ablation_long --parallel 2
  python -m launch.table --root workdirs/decoder_ablation_long --name decoder_ablation_long \
      --out results

At 800 steps (experiments/decoder_ablation.py) the U-Net rows had not converged (val mIoU
still rising at the last eval) and their seed spread swamped the decoders: nearest gave
43.2 / 34.8 / 27.3 mIoU for seeds 0-2 (std 7.9) while the decoders' means spanned 2.3
points, and seed 1 was at 33.4-34.8 for every decoder. This variant changes only the run's
length and how often it evaluates and checkpoints: 2400 steps (cosine decay over all of
them; the 50 warm-up steps are now 2% of the run instead of 6%), same width 8, batch 16,
optimiser and seeds. 8 upsamplers × 3 seeds = 24 cells, two at a time: 2 h 8 min on 2
CPU cores (4.3 h of cell time, 8-13 min per cell while another ran beside it; cells run
at 11e65b4).
Expected (results/decoder_ablation_long.md, test mIoU %, mean ± std over 3 seeds):
resize_conv 61.8 ± 3.4, the best decoder on each seed; the other seven 53.2-56.8, within
each other's seed spread (bilinear 54.2 ± 9.4, max_unpool 56.5 ± 0.9).
Smoke test (2 steps, 1 seed): `experiments/decoder_ablation_long.py:steps=2,seeds=1`.
Results: see results/decoder_ablation_long.md.
"""

from experiments import decoder_ablation


def get_config(arg=None):
  c = decoder_ablation.config_from(decoder_ablation.parse_args(arg, steps=2400))
  c.eval_every = 600
  c.checkpoint_every = 600
  return c


def get_sweep(arg=None):
  """The decoder ablation's U-Net cells of the classic eight (seed 0 of every row first)."""
  cells = decoder_ablation.sweep_from(
    decoder_ablation.parse_args(arg, steps=2400, seeds=3, decoders='classic')
  )
  return [c for c in cells if c['model.arch'] == 'unet']
