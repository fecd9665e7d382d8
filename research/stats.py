"""Paired hierarchical bootstrap: a decoder's difference to a reference decoder, with its interval.

Sweep cells that differ only in the decoder share a seed (same initialisation seed and data
order) and are scored on the same test images, so a candidate and the reference are paired
twice: by seed and, within a seed, by image. The quantity a table reports is

    difference = mean over seeds s of [M(candidate, s) - M(reference, s)],

where M(., s) is the split metric of run s computed from its per-image sufficient statistics:
mIoU (or per-class / thin / trimap IoU) from the confusion matrix summed over the split,
never a mean of per-image IoUs, or a weighted mean of per-image scores (boundary F1, shift
consistency; small-object recall as sum of hits / sum of totals).

Method (hierarchical, or two-stage, bootstrap; Davison & Hinkley 1997, sec. 3.8; Saravanan et
al. 2020): each of B resamples draws S seeds with replacement from the S seeds, then for each
drawn seed N images with replacement from its N images, and recomputes the difference with the
same draws for both decoders (the pairing is kept). The interval is the percentile interval of
the B differences (2.5th and 97.5th percentiles at level 0.95), B = 2000 by default (Efron &
Tibshirani 1993 ask for >= 1000 for percentile intervals; 2000 puts the Monte Carlo error of a
95% endpoint near 0.1 standard errors). With few seeds the seed stage alone is too narrow by
about sqrt((S - 1) / S), and the image stage adds image noise that the seed means already
carry, so the interval errs on the wide side when image noise dominates and on the narrow
side when seed-to-seed variation dominates. Measured coverage of the 95% interval (5 seeds x
40 images, 200 repetitions, 400 resamples; the setup of tests/test_stats.py with the seed and
image standard deviations of the difference varied): 0.98 with image noise only (0, 0.05),
0.96 for (0.005, 0.05), 0.92 for (0.01, 0.03), and 0.83 when seeds dominate (0.02, 0.01): with
5 seeds and large seed-to-seed spread, prefer more seeds to trusting the interval.

The smallest detectable difference of a design is (z_{1 - alpha/2} + z_{0.8}) * SE, with SE the
standard deviation of the bootstrap differences: the true difference a two-sided test at
alpha = 1 - level detects with 80% power (2.80 SE at level 0.95), under a normal approximation.

Draws, in this order from numpy.random.default_rng(seed): seeds = integers(0, S, (B, S)), then
images = integers(0, N, (B, S, N)); the tests replay them.
"""

import dataclasses

import numpy as np
from scipy import stats as scipy_stats

from research import decoder_metrics

NUM_RESAMPLES = 2000
LEVEL = 0.95
POWER = 0.8  # of the smallest detectable difference


@dataclasses.dataclass(frozen=True)
class PairedDifference:
  """Candidate minus reference, on the scale of the metric (a fraction, not %)."""

  difference: float  # mean over seeds of the per-seed difference, on all images
  low: float  # percentile interval at `level`
  high: float
  standard_error: float  # standard deviation of the bootstrap differences
  detectable: float  # smallest detectable difference: (z_{1-alpha/2} + z_power) * SE
  excludes_zero: bool  # the interval lies strictly on one side of zero
  num_seeds: int
  num_images: int  # per seed
  num_resamples: int  # bootstrap differences the interval is made of (undefined ones dropped)
  level: float


def _check_pair(reference, candidate, trailing, what):
  """float64 [2, S, N, *trailing]: the pair stacked; raises on mismatched or bad shapes."""
  reference, candidate = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
  if (
    reference.shape != candidate.shape
    or reference.ndim != 2 + len(trailing)
    or (trailing and reference.shape[2:] != trailing)
    or 0 in reference.shape[:2]
  ):
    raise ValueError(
      f'reference and candidate must both be {what} with S, N >= 1, '
      f'got {reference.shape} and {candidate.shape}'
    )
  return np.stack([reference, candidate])


def _check_options(num_resamples, level):
  if num_resamples < 10:
    raise ValueError(f'num_resamples must be >= 10, got {num_resamples}')
  if not 0 < level < 1:
    raise ValueError(f'level must be in (0, 1), got {level}')


def _resample_counts(num_seeds, num_images, num_resamples, rng):
  """The draws of the module docstring, as multiplicities: seeds [B * S] (slot t of resample b
  is row b * S + t) and counts float64 [B * S, N] (how often that slot drew each image)."""
  seeds = rng.integers(0, num_seeds, (num_resamples, num_seeds)).ravel()  # [B * S]
  images = rng.integers(0, num_images, (num_resamples * num_seeds, num_images))  # [B * S, N]
  row = np.arange(num_resamples * num_seeds)[:, None] * num_images
  counts = np.bincount((row + images).ravel(), minlength=images.size).reshape(images.shape)
  return seeds, counts.astype(np.float64)  # float for a BLAS product


def _resampled(per_seed_metric, num_seeds, num_images, num_resamples, rng):
  """[2, B, S]: per_seed_metric(side, s, counts [M, N]) -> [M] on every resample slot that drew
  seed s (side 0 the reference, 1 the candidate), the counts being that slot's draws."""
  seeds, counts = _resample_counts(num_seeds, num_images, num_resamples, rng)
  values = np.empty((2, num_resamples * num_seeds))
  for side in range(2):
    for s in range(num_seeds):
      drawn = seeds == s
      if not drawn.any():
        continue
      got = np.asarray(per_seed_metric(side, s, counts[drawn]), np.float64)
      if got.shape != (drawn.sum(),):
        raise ValueError(f'the metric must return [M]=({drawn.sum()},) values, got {got.shape}')
      values[side, drawn] = got
  return values.reshape(2, num_resamples, num_seeds)


def _summarize(per_seed, resampled, num_images, level) -> 'PairedDifference':
  """PairedDifference from the metric of each run [2, S] and of each resample [2, B, S]."""
  num_seeds = per_seed.shape[1]
  difference = float(np.mean(per_seed[1] - per_seed[0]))
  differences = (resampled[1] - resampled[0]).mean(-1)  # [B]
  differences = differences[~np.isnan(differences)]
  if differences.size < 2:
    raise ValueError('the metric is undefined (NaN) in all but at most one resample')
  alpha = 1 - level
  low, high = np.percentile(differences, [100 * alpha / 2, 100 * (1 - alpha / 2)])
  standard_error = float(np.std(differences, ddof=1))
  z = scipy_stats.norm.ppf(1 - alpha / 2) + scipy_stats.norm.ppf(POWER)
  return PairedDifference(
    difference=difference,
    low=float(low),
    high=float(high),
    standard_error=standard_error,
    detectable=float(z * standard_error),
    excludes_zero=bool(low > 0 or high < 0),
    num_seeds=num_seeds,
    num_images=num_images,
    num_resamples=int(differences.size),
    level=level,
  )


def _paired_bootstrap(statistics, metric, num_resamples, level, seed):
  """PairedDifference of metric(sums [..., F]) -> [...] over statistics [2, S, N, F]: a
  resample's sums are its counts times the per-image statistics, one product per seed."""
  _check_options(num_resamples, level)
  _, num_seeds, num_images, _ = statistics.shape

  def per_seed_metric(side, s, counts):  # counts [M, N] @ [N, F]
    return metric(counts @ statistics[side, s])

  rng = np.random.default_rng(seed)
  resampled = _resampled(per_seed_metric, num_seeds, num_images, num_resamples, rng)
  return _summarize(metric(statistics.sum(2)), resampled, num_images, level)


def weighted_difference(
  metric, num_seeds: int, num_images: int, num_resamples=NUM_RESAMPLES, level=LEVEL, seed=0
) -> PairedDifference:
  """Bootstrap of a split metric that is not a function of per-image sums (COCO AP ranks
  the split's detections), computed on each resample from how often it drew each image.

  metric(side, s, weights float64 [M, N]) -> float [M]: the metric of run s of the reference
  (side 0) or the candidate (side 1) on the split with image n counted weights[m, n] times,
  as if repeated that often; all ones is the split itself. Resamples where it is NaN are
  dropped, as in the other differences, whose draws these are.
  """
  _check_options(num_resamples, level)
  if num_seeds < 1 or num_images < 1:
    raise ValueError(f'num_seeds and num_images must be >= 1, got {num_seeds} and {num_images}')
  rng = np.random.default_rng(seed)
  resampled = _resampled(metric, num_seeds, num_images, num_resamples, rng)
  ones = np.ones((1, num_images))
  per_seed = np.array([[metric(side, s, ones)[0] for s in range(num_seeds)] for side in range(2)])
  return _summarize(per_seed, resampled, num_images, level)


def confusion_difference(
  reference, candidate, classes=None, num_resamples=NUM_RESAMPLES, level=LEVEL, seed=0
) -> PairedDifference:
  """Bootstrap of the mean IoU difference, the IoU coming from summed confusion matrices.

  reference, candidate: int [S, N, K, K], the per-image confusions of S paired runs on the
  same N test images (seed s and image n the same in both), e.g. stacked
  decoder_metrics.per_image_confusion over the split, invalid images dropped; for trimap IoU
  at one width, trimap_confusion[:, i] stacked the same way. classes: the ids mean_iou
  averages (None: all = mIoU; the dataset's thin_classes = thin IoU; [c] = IoU of class c).
  """
  reference = np.asarray(reference)
  if reference.ndim != 4 or reference.shape[2] != reference.shape[3]:
    raise ValueError(f'reference must be [S, N, K, K], got {reference.shape}')
  num_classes = reference.shape[-1]
  statistics = _check_pair(reference, candidate, reference.shape[2:], '[S, N, K, K]')

  def metric(sums):  # [..., K * K] -> [...]
    return decoder_metrics.mean_iou(
      sums.reshape(*sums.shape[:-1], num_classes, num_classes), classes
    )

  flat = statistics.reshape(*statistics.shape[:3], num_classes**2)  # [2, S, N, K * K]
  return _paired_bootstrap(flat, metric, num_resamples, level, seed)


def sums_difference(
  reference, candidate, metric, num_resamples=NUM_RESAMPLES, level=LEVEL, seed=0
) -> PairedDifference:
  """Bootstrap of the difference of a metric of per-image statistics summed over images.

  reference, candidate: float [S, N, F], F statistics per image of S paired runs on the same
  N images; metric: summed statistics [..., F] -> [...] (e.g. panoptic quality from summed
  TP, FP, FN and IoU sums). confusion_difference is this for flattened confusions and mIoU.
  """
  reference = np.asarray(reference)
  if reference.ndim != 3:
    raise ValueError(f'reference must be [S, N, F], got {reference.shape}')
  statistics = _check_pair(reference, candidate, reference.shape[2:], '[S, N, F]')
  return _paired_bootstrap(statistics, metric, num_resamples, level, seed)


def score_difference(
  reference,
  candidate,
  reference_weights=None,
  candidate_weights=None,
  num_resamples=NUM_RESAMPLES,
  level=LEVEL,
  seed=0,
) -> PairedDifference:
  """Bootstrap of the difference of a weighted mean of per-image scores.

  reference, candidate: float [S, N] per-image scores of S paired runs on the same N images;
  weights: float [S, N] or None (1 each). Per seed, the metric is sum(w * score) / sum(w) with
  NaN scores weighing 0: boundary F1 as its np.nanmean, shift consistency (an image's mean
  over shifts, or one shift) as a plain mean, small-object recall as hits / totals with
  weights = totals, i.e. sum of hits / sum of totals.
  """
  scores = _check_pair(reference, candidate, (), '[S, N]')  # [2, S, N]
  weights = [
    np.ones(scores.shape[1:]) if w is None else np.asarray(w, np.float64)
    for w in (reference_weights, candidate_weights)
  ]
  if any(w.shape != scores.shape[1:] or (w < 0).any() for w in weights):
    raise ValueError(
      f'weights must be None or non-negative [S, N]={scores.shape[1:]}, '
      f'got {[w.shape for w in weights]}'
    )
  weights = np.where(np.isnan(scores), 0, np.stack(weights))  # [2, S, N]
  statistics = np.stack([np.where(weights > 0, scores * weights, 0), weights], -1)

  def metric(sums):  # [..., 2] -> [...]
    return np.divide(
      sums[..., 0], sums[..., 1], out=np.full(sums.shape[:-1], np.nan), where=sums[..., 1] > 0
    )

  return _paired_bootstrap(statistics, metric, num_resamples, level, seed)
