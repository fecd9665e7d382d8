from matplotlib import colors
import numpy as np
import pytest
from scipy import stats as scipy_stats

from research import decoder_metrics as dm
from research import stats
from research.tables import stats_figures


def _confusions(rng, num_seeds=3, num_images=7, num_classes=3):
  """Random per-image confusions int [S, N, K, K], mostly on the diagonal."""
  off = rng.integers(0, 5, (num_seeds, num_images, num_classes, num_classes))
  return off + np.eye(num_classes, dtype=np.int64) * rng.integers(
    0, 40, (num_seeds, num_images, 1, 1)
  )


def _slow_bootstrap(reference, candidate, metric, num_resamples, seed):
  """Replays the documented draws with loops: the B differences of the per-seed-mean metric."""
  rng = np.random.default_rng(seed)
  num_seeds, num_images = reference.shape[:2]
  seeds = rng.integers(0, num_seeds, (num_resamples, num_seeds))
  images = rng.integers(0, num_images, (num_resamples, num_seeds, num_images))
  differences = []
  for b in range(num_resamples):
    per_slot = []
    for t in range(num_seeds):
      ref = sum(reference[seeds[b, t], n] for n in images[b, t])
      cand = sum(candidate[seeds[b, t], n] for n in images[b, t])
      per_slot.append(metric(cand) - metric(ref))
    differences.append(np.mean(per_slot))
  return np.array(differences)


def test_confusion_difference_replays_the_documented_draws():
  rng = np.random.default_rng(0)
  reference, candidate = _confusions(rng), _confusions(rng)
  result = stats.confusion_difference(
    reference, candidate, classes=(1, 2), num_resamples=50, seed=3
  )
  slow = _slow_bootstrap(reference, candidate, lambda c: dm.mean_iou(c, (1, 2)), 50, 3)
  assert (result.num_seeds, result.num_images, result.num_resamples) == (3, 7, 50)
  np.testing.assert_allclose([result.low, result.high], np.percentile(slow, [2.5, 97.5]))
  assert result.standard_error == pytest.approx(np.std(slow, ddof=1))
  per_seed = [dm.mean_iou(c.sum(0), (1, 2)) for c in candidate]
  per_seed_ref = [dm.mean_iou(c.sum(0), (1, 2)) for c in reference]
  assert result.difference == pytest.approx(np.mean(np.subtract(per_seed, per_seed_ref)))


def test_weighted_difference_replays_the_documented_draws():
  # A metric given each image's multiplicity (mIoU of the confusions repeated that often)
  # gives the bootstrap that loops over the same draws.
  rng = np.random.default_rng(5)
  reference, candidate = _confusions(rng), _confusions(rng)
  runs = (reference, candidate)

  def metric(side, s, weights):  # [M, N] -> [M]
    return dm.mean_iou(np.einsum('mn,nij->mij', weights, runs[side][s]))

  result = stats.weighted_difference(metric, 3, 7, num_resamples=60, seed=4)
  slow = _slow_bootstrap(reference, candidate, dm.mean_iou, 60, 4)
  np.testing.assert_allclose([result.low, result.high], np.percentile(slow, [2.5, 97.5]))
  assert result.standard_error == pytest.approx(np.std(slow, ddof=1))
  assert result == stats.confusion_difference(reference, candidate, num_resamples=60, seed=4)
  with pytest.raises(ValueError, match=r'num_seeds and num_images must be >= 1, got 0 and 7'):
    stats.weighted_difference(metric, 0, 7)
  with pytest.raises(ValueError, match=r'the metric must return \[M\]=\(\d+,\) values, got \(\)'):
    stats.weighted_difference(lambda side, s, weights: 0.5, 3, 7, num_resamples=20)


def test_sums_difference_of_flattened_confusions_is_the_confusion_difference():
  rng = np.random.default_rng(3)
  reference, candidate = _confusions(rng), _confusions(rng)
  flat = lambda c: c.reshape(*c.shape[:2], -1)
  by_sums = stats.sums_difference(
    flat(reference), flat(candidate), lambda s: dm.mean_iou(s.reshape(*s.shape[:-1], 3, 3)), 300
  )
  assert by_sums == stats.confusion_difference(reference, candidate, num_resamples=300)
  with pytest.raises(ValueError, match=r'must be \[S, N, F\]'):
    stats.sums_difference(reference, candidate, np.sum)


def test_score_difference_replays_the_documented_draws_with_weights_and_nan():
  rng = np.random.default_rng(1)
  reference, candidate = rng.random((2, 4, 6))
  reference[0, 2] = np.nan  # an image without a score weighs nothing
  weights = rng.integers(0, 4, (4, 6)).astype(float)  # e.g. small-object totals
  result = stats.score_difference(reference, candidate, weights, weights, num_resamples=40, seed=2)
  as_pairs = [
    np.stack([np.nan_to_num(s) * w * ~np.isnan(s), w * ~np.isnan(s)], -1)
    for s, w in ((reference, weights), (candidate, weights))
  ]  # [S, N, 2] each
  slow = _slow_bootstrap(*as_pairs, lambda p: p[0] / p[1], 40, 2)
  np.testing.assert_allclose([result.low, result.high], np.percentile(slow, [2.5, 97.5]))
  per_seed = [
    np.nansum(s * weights, 1) / np.sum(weights * ~np.isnan(s), 1) for s in (reference, candidate)
  ]
  assert result.difference == pytest.approx(np.mean(per_seed[1] - per_seed[0]))


def test_point_estimate_pools_confusions_rather_than_averaging_image_ious():
  # One seed, two images. Reference: class 1 found in the small image only; candidate: in the
  # large image only. Pooled IoU of class 1: 1/11 against 10/11; per-image mean would tie.
  reference = np.array([[[[10, 0], [0, 1]], [[10, 0], [10, 0]]]])  # [1, 2, 2, 2]
  candidate = np.array([[[[10, 0], [1, 0]], [[10, 0], [0, 10]]]])
  result = stats.confusion_difference(reference, candidate, classes=(1,), num_resamples=20)
  assert result.difference == pytest.approx(10 / 11 - 1 / 11)


def test_identical_decoders_differ_by_exactly_zero():
  confusions = _confusions(np.random.default_rng(2))
  result = stats.confusion_difference(confusions, confusions)
  assert result.difference == result.low == result.high == result.detectable == 0
  assert not result.excludes_zero and result.num_resamples == stats.NUM_RESAMPLES


def test_smallest_detectable_difference_is_2_8_standard_errors():
  rng = np.random.default_rng(3)
  result = stats.score_difference(rng.random((5, 30)), rng.random((5, 30)), num_resamples=200)
  z = scipy_stats.norm.ppf(0.975) + scipy_stats.norm.ppf(0.8)
  assert z == pytest.approx(2.80, abs=0.01)
  assert result.detectable == pytest.approx(z * result.standard_error)


def test_intervals_cover_a_known_difference_at_about_the_nominal_rate():
  # Paired synthetic runs: 5 seeds x 40 images, images of shared difficulty, a seed effect
  # common to both decoders plus a smaller one on the difference, and image noise. True
  # difference 0.02. 200 repetitions with 400 resamples each (fewer than the default 2000, to
  # keep the test at about two seconds; the endpoints are then a little noisier).
  rng = np.random.default_rng(0)
  truth, covered, excluded, detectable = 0.02, 0, 0, []
  for repetition in range(200):
    difficulty = rng.normal(0.7, 0.1, (5, 40)) + rng.normal(0, 0.02, (5, 1))
    reference = difficulty + rng.normal(0, 0.05, (5, 40))
    candidate = difficulty + truth + rng.normal(0, 0.005, (5, 1)) + rng.normal(0, 0.05, (5, 40))
    result = stats.score_difference(reference, candidate, num_resamples=400, seed=repetition)
    covered += result.low <= truth <= result.high
    excluded += result.excludes_zero
    detectable.append(result.detectable)
  assert 0.90 <= covered / 200 <= 0.99
  # Power: a truth at the detectable difference is found 80% of the time; this one lies above.
  assert np.mean(detectable) < truth and excluded / 200 >= 0.8


def test_bootstrap_rejects_bad_input():
  confusions = _confusions(np.random.default_rng(4))
  with pytest.raises(ValueError, match=r'\[S, N, K, K\]'):
    stats.confusion_difference(confusions, confusions[:, :3])
  with pytest.raises(ValueError, match=r'\[S, N, K, K\]'):
    stats.confusion_difference(confusions[0], confusions[0])
  with pytest.raises(ValueError, match=r'\[S, N\]'):
    stats.score_difference(np.ones((2, 3)), np.ones((2, 4)))
  with pytest.raises(ValueError, match='weights'):
    stats.score_difference(np.ones((2, 3)), np.ones((2, 3)), -np.ones((2, 3)))
  with pytest.raises(ValueError, match='num_resamples'):
    stats.score_difference(np.ones((2, 3)), np.ones((2, 3)), num_resamples=5)
  with pytest.raises(ValueError, match='level'):
    stats.score_difference(np.ones((2, 3)), np.ones((2, 3)), level=95)
  with pytest.raises(ValueError, match='undefined'):
    stats.score_difference(np.full((2, 3), np.nan), np.ones((2, 3)))


# --- figures -----------------------------------------------------------------------------------


def test_forest_plot_fills_the_dots_whose_interval_excludes_zero(tmp_path):
  better = stats.PairedDifference(0.02, 0.01, 0.03, 0.005, 0.014, True, 5, 300, 2000, 0.95)
  differences = {
    'bilinear': better,
    'transpose_conv': dict(difference=-0.004, low=-0.012, high=0.003, excludes_zero=False),
  }
  path = tmp_path / 'forest.png'
  fig = stats_figures.plot_differences(differences, 'nearest', 'mIoU', str(path))
  assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  ax = fig.axes[0]
  dots = [c.lines[0] for c in ax.containers]  # one errorbar per decoder, top to bottom
  assert [d.get_xdata()[0] for d in dots] == pytest.approx([2.0, -0.4])
  assert colors.to_rgba(dots[0].get_markerfacecolor()) == colors.to_rgba('C0')
  assert colors.to_rgba(dots[1].get_markerfacecolor()) == colors.to_rgba('white')
  assert [t.get_text() for t in ax.get_yticklabels()] == ['bilinear', 'transpose_conv']
  with pytest.raises(ValueError, match='at least one'):
    stats_figures.plot_differences({}, 'nearest', 'mIoU', str(path))


def test_curve_plots_draw_one_line_per_decoder(tmp_path):
  widths = dm.TRIMAP_WIDTHS
  iou = {'nearest': [40, 50, 60, 65, 70], 'bilinear': [45, 55, 62, 66, 70]}
  fig = stats_figures.plot_trimap(
    widths, iou, str(tmp_path / 'trimap.png'), spread={k: np.ones(5) for k in iou}
  )
  ax = fig.axes[0]
  assert ax.get_xscale() == 'log' and len(ax.containers) == 2
  np.testing.assert_array_equal(ax.containers[1].lines[0].get_ydata(), iou['bilinear'])
  fig = stats_figures.plot_shift_consistency(
    dm.SHIFTS, {'nearest': np.linspace(0.9, 1, 7)}, str(tmp_path / 'shift.png')
  )
  np.testing.assert_array_equal(fig.axes[0].containers[0].lines[0].get_xdata(), dm.SHIFTS)
  assert (tmp_path / 'shift.png').stat().st_size > 0
  with pytest.raises(ValueError, match='5 numbers, one per band width'):
    stats_figures.plot_trimap(widths, {'nearest': [1, 2]}, str(tmp_path / 'bad.png'))
