"""research.panoptic_metrics (PQ, SQ, RQ on hand-computed cases) and research.panoptic
(Panoptic-DeepLab's targets and grouping) on constructed maps."""

import numpy as np
import pytest

from research import panoptic
from research import panoptic_metrics as pm
from research.data import lab_shapes

V = 255  # void
# Classes: 0 and 1 stuff, 2 a thing class.
THINGS, STUFF = (2,), (0, 1)
GT = np.array(
  [
    [0, 0, 0, 0, 1, 1, 1, 1],
    [0, 2, 2, 0, 1, 1, 1, 1],
    [0, 2, 2, 0, 1, 2, 2, V],
    [0, 0, 0, 0, 1, 2, 2, V],
  ]
)
GT_IDS = np.array(
  [
    [0, 0, 0, 0, 0, 0, 0, 0],
    [0, 1, 1, 0, 0, 0, 0, 0],
    [0, 1, 1, 0, 0, 2, 2, 0],
    [0, 0, 0, 0, 0, 2, 2, 0],
  ]
)
PRED = np.array(
  [
    [0, 0, 0, 0, 1, 1, 1, 1],
    [0, 2, 2, 0, 1, 1, 1, 1],
    [0, 2, 0, 0, 1, 1, 2, 2],
    [0, 0, 0, 0, 1, 1, 2, 2],
  ]
)
PRED_IDS = np.array(  # other numbers than the ground truth's: only segments matter
  [
    [0, 0, 0, 0, 0, 0, 0, 0],
    [0, 5, 5, 0, 0, 0, 0, 0],
    [0, 5, 0, 0, 0, 0, 7, 7],
    [0, 0, 0, 0, 0, 0, 7, 7],
  ]
)


def _stats(*maps):
  return pm.pq_stats(*(np.asarray(m)[None] for m in maps), num_classes=3, thing_classes=THINGS)


def test_pq_of_the_constructed_image():
  # Stuff 0: 12 px, predicted 13 (one of A's pixels): IoU 12/13. Stuff 1: 10 px, predicted 12
  # (two of B's): IoU 10/12. Thing A: 4 px, predicted 3 of them: IoU 3/4. Thing B: 4 px;
  # the prediction covers 2 of them and 2 void pixels, which leave its area: IoU 2 / (4 +
  # 2 - 2) = 0.5, not > 0.5: B is a false negative, and the prediction, half void (not
  # more), a false positive.
  stats = _stats(GT, GT_IDS, PRED, PRED_IDS)
  assert stats['tp'].tolist() == [[1, 1, 1]]
  assert stats['fp'].tolist() == [[0, 0, 1]] and stats['fn'].tolist() == [[0, 0, 1]]
  np.testing.assert_allclose(stats['iou_sum'], [[12 / 13, 10 / 12, 3 / 4]])
  s = pm.pq_summary({k: v.sum(0) for k, v in stats.items()}, THINGS, STUFF)
  np.testing.assert_allclose(s['pq_per_class'], [12 / 13, 10 / 12, 0.75 / 2])
  np.testing.assert_allclose(s['sq_per_class'], [12 / 13, 10 / 12, 0.75])
  np.testing.assert_allclose(s['rq_per_class'], [1, 1, 0.5])
  assert s['pq'] == pytest.approx((12 / 13 + 10 / 12 + 0.375) / 3)
  assert s['pq_things'] == pytest.approx(0.375) and s['rq_things'] == 0.5
  assert s['pq_stuff'] == pytest.approx((12 / 13 + 10 / 12) / 2) and s['rq_stuff'] == 1


def test_a_mostly_void_prediction_is_no_false_positive():
  pred, ids = PRED.copy(), PRED_IDS.copy()
  pred[2, 6], ids[2, 6] = 1, 0  # B's prediction: (2, 7), (3, 6), (3, 7): 2 of 3 void
  stats = _stats(GT, GT_IDS, pred, ids)
  assert stats['fp'][0, 2] == 0 and stats['fn'][0, 2] == 1 and stats['tp'][0, 2] == 1


def test_pq_of_a_perfect_prediction_is_1():
  renumbered = np.where(GT_IDS > 0, 10 - GT_IDS, 0)
  s = pm.pq_summary(
    {k: v.sum(0) for k, v in _stats(GT, GT_IDS, GT, renumbered).items()}, THINGS, STUFF
  )
  assert s['pq'] == s['sq'] == s['rq'] == s['pq_things'] == s['pq_stuff'] == 1


def test_a_dataset_sums_counts_rather_than_averaging_images():
  # Image 2: image 1's ground truth with B made background, predicted exactly. Class 2 over
  # both: TP 2 (IoU 3/4 and 1), FP 1, FN 1: PQ 1.75 / 3, not the mean of 0.375 and 1.
  gt2, ids2 = GT.copy(), GT_IDS.copy()
  gt2[ids2 == 2], ids2[ids2 == 2] = 0, 0
  both = [np.stack(pair) for pair in ((GT, gt2), (GT_IDS, ids2), (PRED, gt2), (PRED_IDS, ids2))]
  stats = pm.pq_stats(*both, num_classes=3, thing_classes=THINGS)
  assert stats['tp'].shape == (2, 3)
  s = pm.pq_summary({k: v.sum(0) for k, v in stats.items()}, THINGS, STUFF)
  assert s['pq_things'] == pytest.approx(1.75 / 3)


def test_an_absent_class_is_left_out_and_a_missed_class_scores_0():
  gt = np.zeros((4, 4), int)
  pred = gt.copy()
  pred[:, :1] = 1  # a stuff segment of class 1 that the ground truth lacks: FP
  s = pm.pq_summary(
    {k: v.sum(0) for k, v in _stats(gt, 0 * gt, pred, 0 * gt).items()}, THINGS, STUFF
  )
  assert np.isnan(s['pq_per_class'][2]) and np.isnan(s['pq_things'])
  assert s['pq_per_class'][1] == 0 and s['sq_per_class'][1] == 0
  assert s['pq_per_class'][0] == pytest.approx(12 / 16)  # IoU 12/16, TP
  assert s['pq'] == pytest.approx(12 / 16 / 2)


def test_targets_put_a_gaussian_at_each_mass_centre_and_offsets_towards_it():
  instances = np.zeros((40, 40), int)
  instances[4:9, 10:13] = 1  # mass centre (6, 11)
  instances[20:30, 20:24] = 3  # mass centre (24.5, 21.5): the Gaussian at (24, 22)
  labels = np.where(instances > 0, 2, 0)
  heatmap, offsets, centres = panoptic.targets(instances, labels, THINGS)
  np.testing.assert_allclose(centres, [[6, 11], [24, 22]])  # rounded half to even
  assert heatmap[6, 11] == 1 and heatmap[24, 22] == 1
  assert heatmap[6, 11 + 8] == pytest.approx(np.exp(-0.5), rel=1e-6)  # one sigma along x
  one = np.where(instances == 1, 1, 0)
  alone = panoptic.targets(one, np.where(one > 0, 2, 0), THINGS)[0]
  assert alone[6, 11 + 25] > 0 and alone[6, 11 + 26] == 0  # cut 3 sigma + 1 px from centre
  np.testing.assert_allclose(offsets[4, 10], [2, 1])
  np.testing.assert_allclose(offsets[29, 23], [24 - 29, 22 - 23])  # to the heatmap's peak
  assert not offsets[instances == 0].any()


def test_find_centres_keeps_local_maxima_above_the_threshold():
  heatmap = np.zeros((20, 20))
  heatmap[5, 5], heatmap[5, 8], heatmap[15, 15], heatmap[10, 2] = 0.9, 0.5, 0.4, 0.05
  # (5, 8) is within the 7 × 7 window of (5, 5); (10, 2) is under the threshold.
  assert panoptic.find_centres(heatmap).tolist() == [[5, 5], [15, 15]]
  assert panoptic.find_centres(heatmap, nms_kernel=5).tolist() == [[5, 5], [5, 8], [15, 15]]
  assert panoptic.find_centres(heatmap, top_k=1).tolist() == [[5, 5]]


def _same_partition(a, b):
  """Whether id maps a and b (int [H, W]) split the pixels alike, whatever the numbers."""
  pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)  # [2, pairs]
  return len(pairs[0]) == len(np.unique(a)) == len(np.unique(b))


@pytest.mark.parametrize('index', [0, 1, 2])
def test_grouping_the_targets_gives_the_instances_back(index):
  _, labels, instances = lab_shapes.generate_instances(64, 0, 'train', index)
  things = lab_shapes.THING_CLASSES
  heatmap, offsets, _ = panoptic.targets(instances, labels, things)
  got_labels, got_ids = panoptic.group(labels, heatmap, offsets, things)
  np.testing.assert_array_equal(got_labels, labels)
  assert _same_partition(got_ids, instances)
  stats = pm.pq_stats(*(m[None] for m in (labels, instances, got_labels, got_ids)), 6, things)
  summary = pm.pq_summary({k: v.sum(0) for k, v in stats.items()}, things, (0,))
  assert summary['pq'] == 1


def test_grouping_votes_the_class_and_zero_offsets_go_to_the_nearest_centre():
  semantic = np.zeros((10, 12), int)
  semantic[2:6, 1:5] = 2
  semantic[2, 1] = 1  # a stray stuff pixel inside, left to stuff
  semantic[3:5, 6:11] = 2
  semantic[4, 10] = 0
  heatmap = np.zeros((10, 12))
  heatmap[3, 2], heatmap[3, 9] = 0.8, 0.7
  labels, ids = panoptic.group(semantic, heatmap, np.zeros((10, 12, 2)), THINGS)
  assert (ids[2:6, 1:5][semantic[2:6, 1:5] == 2] == 1).all()
  assert (ids[3:5, 6:11][semantic[3:5, 6:11] == 2] == 2).all()
  assert (labels == semantic).all() and (ids[semantic != 2] == 0).all()
  # Without a centre, thing pixels are void; a small stuff region goes void with stuff_area.
  labels, ids = panoptic.group(
    semantic, np.zeros((10, 12)), np.zeros((10, 12, 2)), THINGS, stuff_area=2
  )
  assert (labels[semantic == 2] == 255).all() and labels[2, 1] == 255 and not ids.any()


def test_bad_arguments_say_what_is_valid():
  with pytest.raises(ValueError, match=r'must all be \[B, H, W\]'):
    pm.pq_stats(GT, GT_IDS, PRED, PRED_IDS, 3, THINGS)
  with pytest.raises(ValueError, match=r'thing_classes must be class ids in \[0, 3\)'):
    _ = pm.pq_stats(GT[None], GT_IDS[None], PRED[None], PRED_IDS[None], 3, (3,))
  with pytest.raises(ValueError, match=r'stats must be summed over images to \[K\]'):
    pm.pq_summary(_stats(GT, GT_IDS, PRED, PRED_IDS), THINGS, STUFF)
  with pytest.raises(ValueError, match='nms_kernel must be an odd number'):
    panoptic.find_centres(np.zeros((4, 4)), nms_kernel=4)
  with pytest.raises(ValueError, match=r'offsets \[H, W, 2\]'):
    panoptic.group(GT, np.zeros((4, 8)), np.zeros((4, 8)), THINGS)


def _pq_reference(gt, gt_ids, pred, pred_ids, num_classes, things):
  """Kirillov et al. 2019, Sec. 4.1-4.2, segment by segment with pixel sets: (tp, fp, fn,
  iou_sum) per class for one image."""
  void = {tuple(p) for p in np.argwhere((gt < 0) | (gt >= num_classes))}

  def segments(labels, ids, drop):
    found = {}
    for y, x in np.ndindex(labels.shape):
      c = int(labels[y, x])
      if not 0 <= c < num_classes or (c in things and ids[y, x] == 0):
        if drop:
          void.add((y, x))  # a ground-truth thing pixel without an id is void
        continue
      found.setdefault((c, int(ids[y, x]) if c in things else 0), set()).add((y, x))
    return found

  truth, found = segments(gt, gt_ids, True), segments(pred, pred_ids, False)
  tp, fp, fn, iou_sum = (np.zeros(num_classes) for _ in range(4))
  matched = set()
  for (c, _), g_pixels in truth.items():
    hit = False
    for (d, p), p_pixels in found.items():
      if d == c:
        seen = p_pixels - void
        iou = len(g_pixels & seen) / len(g_pixels | seen)
        if iou > 0.5:
          hit = True
          matched.add((d, p))
          tp[c], iou_sum[c] = tp[c] + 1, iou_sum[c] + iou
    fn[c] += not hit
  for key, p_pixels in found.items():
    if key not in matched and len(p_pixels & void) <= 0.5 * len(p_pixels):
      fp[key[0]] += 1
  return tp, fp, fn, iou_sum


@pytest.mark.parametrize('seed', range(4))
def test_pq_stats_match_the_definition_on_random_maps(seed):
  rng = np.random.default_rng(seed)
  # Blocky random maps, so that segments overlap a lot: 3 classes (2 a thing), ids 0-3, void.
  block = lambda high: np.kron(rng.integers(0, high, (4, 4)), np.ones((3, 3), int))
  gt, gt_ids = block(3), block(3)
  pred = np.where(block(4) == 0, block(3), gt)  # a quarter of the blocks redrawn
  pred_ids = np.where(block(4) == 0, block(3), gt_ids)
  gt[block(6) == 5] = V
  stats = _stats(gt, gt_ids, pred, pred_ids)
  want = _pq_reference(gt, gt_ids, pred, pred_ids, 3, THINGS)
  for name, value in zip(('tp', 'fp', 'fn', 'iou_sum'), want):
    np.testing.assert_allclose(stats[name][0], value, err_msg=name)


def test_vectorised_pq_is_pq_summary_for_every_resample():
  rng = np.random.default_rng(0)
  stats = rng.integers(0, 6, (5, 4, 4)).astype(float)  # 5 resamples × (tp, fp, fn, iou) × K
  stats[:, 3] = stats[:, 0] * rng.random((5, 4))  # IoU sums: at most one per true positive
  stats[1, :3, 2] = 0  # class 2 has no segment in resample 1
  stats[4, :3] = 0  # nor any class in resample 4
  pq_all = pm.panoptic_quality(stats)
  pq_things = pm.panoptic_quality(stats, classes=(1, 2))
  for b in range(4):
    sums = dict(zip(('tp', 'fp', 'fn', 'iou_sum'), stats[b]))
    want = pm.pq_summary(sums, thing_classes=(1, 2), stuff_classes=(0, 3))
    assert pq_all[b] == pytest.approx(want['pq']) and pq_things[b] == pytest.approx(
      want['pq_things']
    )
  assert np.isnan(pq_all[4]) and np.isnan(pq_things[4])


def test_pq_stats_of_no_image_are_empty_counts():
  empty = np.zeros((0, 8, 8), int)
  stats = pm.pq_stats(empty, empty, empty, empty, 3, THINGS)
  assert {k: v.shape for k, v in stats.items()} == {
    k: (0, 3) for k in ('tp', 'fp', 'fn', 'iou_sum')
  }
