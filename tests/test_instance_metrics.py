"""research.instance_metrics on constructed cases whose answers are computed by hand."""

import numpy as np
import pytest

from research import instance_metrics as im

# Two ground-truth squares of 100 px on a 30 × 30 canvas, and predictions with IoU 0.81 and
# 0.62 with them.
H = W = 30


def _mask(*rects):
  mask = np.zeros((H, W), bool)
  for y0, y1, x0, x1 in rects:
    mask[y0:y1, x0:x1] = True
  return mask


GT_A = _mask((0, 10, 0, 10))
GT_B = _mask((15, 25, 15, 25))
PRED_A = _mask((0, 9, 0, 9))  # 81 px inside A: IoU 81 / 100
PRED_B = _mask((15, 21, 15, 25), (21, 23, 15, 16))  # 60 + 2 = 62 px inside B: IoU 0.62
PRED_FP = _mask((0, 5, 20, 30))  # overlaps nothing


def test_mask_iou_of_the_constructed_masks():
  iou = im.mask_iou([PRED_A, PRED_B, PRED_FP], [GT_A, GT_B])
  np.testing.assert_allclose(iou, [[0.81, 0], [0, 0.62], [0, 0]])
  half = _mask((0, 10, 0, 5))  # 50 of A, and A is 100: IoU 0.5
  assert im.mask_iou([half], [GT_A])[0, 0] == 0.5
  assert im.mask_iou(np.zeros((1, H, W)), np.zeros((1, H, W)))[0, 0] == 0


def _ap(scores, masks=(PRED_A, PRED_B, PRED_FP), classes=(1, 1, 1)):
  match = im.match_image(list(masks), scores, classes, [GT_A, GT_B], [1, 1])
  return im.mask_ap([match], num_classes=2)


def test_ap_of_two_hits_and_a_false_positive_ranked_last():
  # Thresholds 0.50, 0.55, 0.60: both hits come before the false positive, precision 1 up
  # to recall 1: AP 1. 0.65 to 0.80: only A is a hit, precision 1 up to recall 1/2, so 51
  # of the 101 recall points (0, ..., 0.50): AP 51/101. 0.85 to 0.95: no hit, AP 0.
  ap = _ap([0.9, 0.8, 0.7])
  want = [1, 1, 1] + [51 / 101] * 4 + [0] * 3
  np.testing.assert_allclose(ap['per_threshold'], want)
  assert ap['ap'] == pytest.approx((3 + 4 * 51 / 101) / 10)
  assert ap['ap50'] == 1 and ap['ap75'] == pytest.approx(51 / 101)
  assert np.isnan(ap['per_class'][0]) and ap['per_class'][1] == pytest.approx(ap['ap'])


def test_ap_with_the_false_positive_ranked_first():
  # Ranking FP, B, A. At 0.50-0.60: FP, TP, TP: precision 0, 1/2, 2/3 at recall 0, 1/2, 1,
  # made non-increasing from the right: 2/3 at every recall point, AP 2/3. At 0.65-0.80 B
  # is no hit: FP, FP, TP: precision 1/3 at recall 1/2, so 51 points of 1/3.
  ap = _ap([0.8, 0.9, 0.95])
  np.testing.assert_allclose(ap['per_threshold'], [2 / 3] * 3 + [51 / 101 / 3] * 4 + [0] * 3)


def test_each_ground_truth_is_matched_once():
  # Two detections on A: the higher-scored one takes it, the other is a false positive.
  # At 0.5: TP, FP, TP (B) -> precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> interpolated
  # 1 up to recall 1/2 and 2/3 after: AP (51 + 50 * 2/3) / 101.
  ap = _ap([0.9, 0.7, 0.8], masks=(PRED_A, PRED_B, GT_A))
  # Order: PRED_A (0.9, IoU 0.81), GT_A (0.8, IoU 1 but A taken -> FP), PRED_B (0.7).
  assert ap['per_threshold'][0] == pytest.approx((51 + 50 * 2 / 3) / 101)


def test_detections_of_another_class_match_nothing():
  ap = _ap([0.9, 0.8, 0.7], classes=(0, 1, 1))  # A predicted as class 0: a miss in class 1
  # Class 1 at 0.5: B (TP), FP -> precision 1 up to recall 1/2: 51 / 101. Class 0 has no
  # ground truth: left out, its detection counts nowhere.
  assert ap['per_threshold'][0] == pytest.approx(51 / 101)
  assert np.isnan(ap['per_class'][0])


def test_a_perfect_prediction_scores_ap_1_and_no_ground_truth_is_nan():
  match = im.match_image([GT_A, GT_B], [0.3, 0.6], [1, 2], [GT_B, GT_A], [2, 1])
  assert im.mask_ap([match], num_classes=3)['ap'] == 1
  empty = im.match_image(np.zeros((1, H, W)), [0.5], [1], np.zeros((0, H, W)), [])
  assert np.isnan(im.mask_ap([empty], num_classes=2)['ap'])
  missed = im.match_image(np.zeros((0, H, W)), [], [], [GT_A], [1])  # nothing detected
  assert im.mask_ap([missed], num_classes=2)['ap'] == 0


def test_boundary_f1_of_pasted_masks():
  f1 = im.boundary_f1([GT_A, PRED_A, _mask((20, 30, 0, 10))], [GT_A, GT_A, GT_A])
  assert f1[0] == 1 and 0 < f1[1] < 1 and f1[2] == 0


def test_instance_boxes_are_tight_pixel_edges():
  ids = np.zeros((8, 8), np.uint8)
  ids[2:5, 1:3] = 4
  ids[6, 6] = 1
  got_ids, boxes = im.instance_boxes(ids)
  assert got_ids.tolist() == [1, 4]
  assert boxes.tolist() == [[6, 6, 7, 7], [2, 1, 5, 3]]


def test_bad_arguments_say_what_is_valid():
  with pytest.raises(ValueError, match=r'pred_masks must be \[N, H, W\] masks'):
    im.mask_iou(GT_A, [GT_A])
  with pytest.raises(ValueError, match=r'scores and pred_classes must be \[P\]=\(1,\)'):
    im.match_image([GT_A], [0.1, 0.2], [1, 1], [GT_A], [1])
  with pytest.raises(ValueError, match=r'gt_classes must be \[G\]=\(1,\)'):
    im.match_image([GT_A], [0.1], [1], [GT_A], [1, 1])
  match = im.match_image([GT_A], [0.1], [3], [GT_A], [1])
  with pytest.raises(ValueError, match=r'classes must lie in \[0, 2\), got \[1, 3\]'):
    im.mask_ap([match], num_classes=2)


def _random_matches(rng, num_images, num_classes=4):
  """Images with random detections (distinct scores) and ground truth, matched as match_image
  would: in score order, each detection takes a still unmatched ground truth of its class if
  its (random) IoU reaches the threshold."""
  matches = []
  for _ in range(num_images):
    p, g = rng.integers(0, 6), rng.integers(0, 6)
    scores, classes = rng.random(p), rng.integers(0, num_classes, p)
    gt_classes, iou = rng.integers(0, num_classes, g), rng.uniform(0.3, 1.0, p)
    matched = np.zeros((p, len(im.IOU_THRESHOLDS)), bool)
    for t, threshold in enumerate(im.IOU_THRESHOLDS):
      left = np.bincount(gt_classes, minlength=num_classes)
      for d in np.argsort(-scores):
        if iou[d] >= threshold and left[classes[d]]:
          matched[d, t], left[classes[d]] = True, left[classes[d]] - 1
    matches.append(
      {'scores': scores, 'classes': classes, 'matched': matched, 'gt_classes': gt_classes}
    )
  return matches


def _slow_ap(matches, num_classes):
  """COCO AP from its definition, with loops: per class with ground truth and threshold, the
  mean over recall points r of the highest precision at any recall >= r (0 if none)."""
  aps = []
  for c in range(num_classes):
    num_gt = sum(int((m['gt_classes'] == c).sum()) for m in matches)
    if not num_gt:
      continue
    found = [
      (s, hit)
      for m in matches
      for s, k, hit in zip(m['scores'], m['classes'], m['matched'])
      if k == c
    ]
    found.sort(key=lambda d: -d[0])
    for t in range(len(im.IOU_THRESHOLDS)):
      tp = fp = 0
      curve = []
      for _, hit in found:
        tp, fp = tp + hit[t], fp + (not hit[t])
        curve.append((tp / num_gt, tp / (tp + fp)))
      aps.append(
        np.mean(
          [max([p for r, p in curve if r >= point], default=0.0) for point in im.RECALL_POINTS]
        )
      )
  return np.mean(aps)


def test_weighted_ap_equals_ap_of_the_split_with_images_repeated():
  # The slow reference: COCO AP of a list in which image n appears weights[m, n] times.
  rng = np.random.default_rng(0)
  matches = _random_matches(rng, 12)
  stacked = im.stack_matches(matches, num_classes=4, width=8)
  weights = rng.integers(0, 4, (6, 12)).astype(float)
  weights[0] = 1
  got = im.weighted_mask_ap(stacked, weights)
  for m, w in enumerate(weights):
    repeated = [match for match, count in zip(matches, w) for _ in range(int(count))]
    assert got[m] == pytest.approx(_slow_ap(repeated, num_classes=4), abs=1e-12)
  assert got[0] == pytest.approx(im.mask_ap(matches, num_classes=4)['ap'], abs=1e-12)
  assert 0 < got.min() and got.max() < 1 and np.ptp(got) > 0.05  # the weights matter


def test_weighted_ap_of_no_ground_truth_is_nan_and_padding_is_checked():
  matches = _random_matches(np.random.default_rng(1), 3)
  stacked = im.stack_matches(matches, num_classes=4)
  assert np.isnan(im.weighted_mask_ap(stacked, np.zeros((1, 3))))[0]
  with pytest.raises(ValueError, match=r'weights must be \[M, N=3\], got \(3,\)'):
    im.weighted_mask_ap(stacked, np.ones(3))
  with pytest.raises(ValueError, match=r'width must be >= the most detections'):
    im.stack_matches(matches, num_classes=4, width=0)


def test_recall_points_reached_is_searchsorted_at_and_beside_every_point():
  rng = np.random.default_rng(2)
  points = im.RECALL_POINTS
  x = np.concatenate(
    [rng.random(10_000), points, np.nextafter(points, -1), np.nextafter(points, 2)]
  )
  x = np.clip(x, 0, 1)
  np.testing.assert_array_equal(im._points_reached(x), np.searchsorted(points, x, side='right'))
