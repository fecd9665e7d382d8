import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from research import decoder_metrics as dm
from research import metrics


def _random_batch(seed, shape=(3, 12, 14), num_classes=4, ignore=0.1):
  """Blocky labels with ignored pixels and noisy predictions, int64 [B, H, W] each."""
  rng = np.random.default_rng(seed)
  labels = ndimage.zoom(
    rng.integers(0, num_classes, (shape[0], 4, 4)), (1, shape[1] / 4, shape[2] / 4), order=0
  )[:, : shape[1], : shape[2]]
  preds = np.where(
    rng.random(labels.shape) < 0.2,
    rng.integers(0, num_classes, labels.shape),
    np.roll(labels, 1, axis=2),
  )
  labels[rng.random(labels.shape) < ignore] = 255
  return labels, preds


# --- confusions, per-class, mean and thin IoU ---------------------------------------------------


def test_per_image_confusion_sums_to_the_batch_confusion_and_zeroes_invalid_images():
  labels, preds = _random_batch(0)
  valid = np.array([True, False, True])
  per_image = dm.per_image_confusion(labels, preds, 4, valid)
  assert per_image.shape == (3, 4, 4) and per_image.dtype == np.int64
  assert (per_image[1] == 0).all()
  np.testing.assert_array_equal(per_image.sum(0), metrics.confusion_matrix(labels, preds, 4, valid))
  expected = np.zeros((3, 4, 4), np.int64)
  for b, y, x in itertools.product((0, 2), *map(range, labels.shape[1:])):
    if labels[b, y, x] != 255:
      expected[b, labels[b, y, x], preds[b, y, x]] += 1
  np.testing.assert_array_equal(per_image, expected)


def test_iou_functions_match_segmentation_scores_and_hand_values():
  confusion = np.array([[1, 0, 0], [1, 1, 1], [0, 0, 1]])  # IoU 1/2, 1/3, 1/2
  np.testing.assert_allclose(dm.class_iou(confusion), [1 / 2, 1 / 3, 1 / 2])
  assert dm.mean_iou(confusion) == pytest.approx(4 / 9)
  assert dm.thin_iou(confusion, (1, 2)) == pytest.approx((1 / 3 + 1 / 2) / 2)
  absent = np.array([[3, 1, 0], [0, 0, 0], [0, 0, 0]])  # class 2 absent: skipped; 1 only predicted
  assert dm.mean_iou(absent) == pytest.approx(3 / 8)
  assert dm.thin_iou(absent, (1, 2)) == 0 and np.isnan(dm.thin_iou(absent, (2,)))
  rng = np.random.default_rng(1)
  batch = rng.integers(0, 5, (6, 4, 4)) * (rng.random((6, 4, 4)) < 0.7)  # [6, K, K]
  batch[0, 3, :] = batch[0, :, 3] = 0  # an absent class
  expected = [metrics.segmentation_scores(c) for c in batch]
  np.testing.assert_allclose(dm.mean_iou(batch), [e['miou'] for e in expected])
  np.testing.assert_allclose(dm.class_iou(batch), [e['iou_per_class'] for e in expected])


def test_iou_functions_reject_bad_input():
  with pytest.raises(ValueError, match='declares none'):
    dm.thin_iou(np.eye(3), ())
  with pytest.raises(ValueError, match=r'class ids in \[0, 3\)'):
    dm.mean_iou(np.eye(3), (0, 3))
  with pytest.raises(ValueError, match=r'\[\.\.\., K, K\]'):
    dm.class_iou(np.ones((2, 3)))
  with pytest.raises(ValueError, match=r'valid must be \[B\]'):
    dm.per_image_confusion(np.zeros((2, 4, 4)), np.zeros((2, 4, 4)), 2, np.ones(3, bool))
  with pytest.raises(ValueError, match=r'\[B, H, W\]'):
    dm.per_image_confusion(np.zeros((4, 4)), np.zeros((4, 4)), 2)


# --- trimap ------------------------------------------------------------------------------------


def _slow_distance(labels):
  """Per-pixel loops: distance to the nearest boundary pixel (boundary as documented)."""
  h, w = labels.shape
  scored = labels != 255
  edge = [
    (y, x)
    for y in range(h)
    for x in range(w)
    if scored[y, x]
    and any(
      0 <= v < h and 0 <= u < w and scored[v, u] and labels[v, u] != labels[y, x]
      for v, u in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1))
    )
  ]
  return np.array(
    [
      [min((np.hypot(y - v, x - u) for v, u in edge), default=np.inf) for x in range(w)]
      for y in range(h)
    ]
  )


def test_boundary_distance_matches_brute_force():
  labels, _ = _random_batch(2)
  labels[2] = np.where(labels[2] == 255, 255, 1)  # one class: no boundary, all inf
  distance = dm.boundary_distance(labels, 4)
  for b in range(3):
    np.testing.assert_allclose(distance[b], _slow_distance(labels[b]))
  assert np.isinf(distance[2]).all()


def test_trimap_band_of_a_straight_edge_is_w_columns_each_side():
  labels = np.zeros((1, 8, 40), np.int64)
  labels[:, :, 20:] = 1  # vertical edge between columns 19 and 20
  trimap = dm.trimap_confusion(labels, labels, 2)  # [1, 5, 2, 2]
  assert trimap.shape == (1, 5, 2, 2)
  np.testing.assert_array_equal(trimap.sum((2, 3))[0], [16, 32, 64, 128, 256])  # 2w * 8 rows,
  # w = 16 takes every column but the outer 4 on each side (40 - 2 * 4 = 32 columns)
  shifted = np.roll(labels, 1, axis=2)  # the prediction's edge is one column to the right
  shifted[:, :, 0] = 0
  iou = dm.class_iou(dm.trimap_confusion(labels, shifted, 2)[0])  # [5, 2]
  w = np.array(dm.TRIMAP_WIDTHS, np.float64)
  np.testing.assert_allclose(iou, np.stack([w / (w + 1), (w - 1) / w], 1))


def test_trimap_band_around_a_square():
  labels = np.zeros((1, 20, 20), np.int64)
  labels[:, 5:15, 5:15] = 1
  trimap = dm.trimap_confusion(labels, labels, 2, widths=(1, 2))
  # w = 1: the square's 36 border pixels and the 40 background pixels 4-adjacent to them.
  # w = 2: plus the next ring inside (28) and 52 outside: the 12 pixels two rows or columns
  # out on each side (within sqrt(2) of the boundary at the ends) and 4 diagonal corner pixels.
  np.testing.assert_array_equal(trimap[0, :, 1, 1], [36, 64])
  np.testing.assert_array_equal(trimap[0, :, 0, 0], [40, 92])
  assert trimap[0].trace(axis1=1, axis2=2).tolist() == trimap[0].sum((1, 2)).tolist()


def test_trimap_matches_a_per_pixel_reference_and_skips_ignored_and_invalid():
  labels, preds = _random_batch(3)
  valid = np.array([True, True, False])
  widths = (1, 2.5, 4)
  trimap = dm.trimap_confusion(labels, preds, 4, valid, widths)
  assert (trimap[2] == 0).all()
  for b in (0, 1):
    distance = _slow_distance(labels[b])
    for i, w in enumerate(widths):
      expected = np.zeros((4, 4), np.int64)
      for y, x in itertools.product(*map(range, labels.shape[1:])):
        if labels[b, y, x] != 255 and distance[y, x] < w:
          expected[labels[b, y, x], preds[b, y, x]] += 1
      np.testing.assert_array_equal(trimap[b, i], expected)


def test_trimap_rejects_bad_widths():
  with pytest.raises(ValueError, match='widths'):
    dm.trimap_confusion(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)), 2, widths=(0, 1))


# --- small-object recall -----------------------------------------------------------------------


def _slow_small_objects(labels, preds, classes, max_area):
  """Loops over every pair of components: (hits, totals) per class of one image."""
  hits, totals = {}, {}
  for c in classes:
    truth, num_truth = ndimage.label(labels == c, np.ones((3, 3)))
    found, num_found = ndimage.label(preds == c, np.ones((3, 3)))
    hits[c] = totals[c] = 0
    for t in range(1, num_truth + 1):
      if (truth == t).sum() >= max_area:
        continue
      totals[c] += 1
      ious = [
        ((truth == t) & (found == p)).sum()
        / ((truth == t) | ((found == p) & (labels != 255))).sum()
        for p in range(1, num_found + 1)
      ]
      hits[c] += max(ious, default=0) >= 0.5
  return hits, totals


def test_small_object_counts_on_components_of_known_size():
  labels = np.zeros((1, 20, 20), np.int64)
  labels[0, 1:4, 1:4] = 1  # 9 px, found exactly
  labels[0, 1:4, 10:13] = 1  # 9 px, predicted 3 x 6: IoU 9 / 18 = 0.5, a hit
  labels[0, 10:13, 1:4] = 1  # 9 px, predicted 3 x 7: IoU 9 / 21, missed
  labels[0, 10:14, 10:14] = 1  # 16 px: not small under 12 px (3% of 400)
  for i in range(4):
    labels[0, 16 + i, 16 + i] = 2  # a 4 px diagonal line: one 8-connected component, missed
  preds = np.zeros_like(labels)
  preds[0, 1:4, 1:4] = 1
  preds[0, 1:4, 10:16] = 1
  preds[0, 10:13, 1:8] = 1
  preds[0, 16:18, 16:18] = 2  # IoU 2 / 6 with the line
  hits, totals = dm.small_object_counts(labels, preds, 3, classes=(1, 2), max_fraction=0.03)
  assert hits.dtype == totals.dtype == np.int64
  np.testing.assert_array_equal(totals, [[0, 3, 1]])
  np.testing.assert_array_equal(hits, [[0, 2, 0]])
  preds[0, 16:20, 16:20] = 2  # a 4 x 4 square over the line: IoU 4 / 16, but ignoring the
  labels[0, 16:20, 16:20] = np.where(labels[0, 16:20, 16:20] == 2, 2, 255)  # rest: IoU 1
  hits, totals = dm.small_object_counts(labels, preds, 3, classes=(1, 2), max_fraction=0.03)
  np.testing.assert_array_equal(hits, [[0, 2, 1]])


def test_small_object_counts_match_pairwise_loops():
  rng = np.random.default_rng(4)
  labels = (rng.random((4, 16, 16)) < 0.15) * rng.integers(1, 3, (4, 16, 16))  # sparse specks
  labels[0, 2:10, 3:9] = 1  # one large object
  preds = np.where(rng.random(labels.shape) < 0.1, rng.integers(0, 3, labels.shape), labels)
  preds = ndimage.grey_dilation(preds, size=(1, 1, 2))  # segments grow: IoU at or below 1/2
  labels[rng.random(labels.shape) < 0.05] = 255
  valid = np.array([True, True, True, False])
  hits, totals = dm.small_object_counts(labels, preds, 3, (1, 2), valid, max_fraction=0.05)
  assert (hits[3] == 0).all() and (totals[3] == 0).all() and (totals[:, 0] == 0).all()
  assert 0 < hits[:3].sum() < totals[:3].sum()  # the case exercises both outcomes
  for b in range(3):
    slow_hits, slow_totals = _slow_small_objects(labels[b], preds[b], (1, 2), 0.05 * 256)
    assert hits[b, 1:].tolist() == [slow_hits[1], slow_hits[2]]
    assert totals[b, 1:].tolist() == [slow_totals[1], slow_totals[2]]


def test_small_object_counts_reject_bad_input():
  labels = np.zeros((1, 8, 8), np.int64)
  with pytest.raises(ValueError, match='class ids'):
    dm.small_object_counts(labels, labels, 2, classes=(2,))
  with pytest.raises(ValueError, match='max_fraction'):
    dm.small_object_counts(labels, labels, 2, classes=(1,), max_fraction=0)


# --- shift consistency -------------------------------------------------------------------------

STRIPES = np.broadcast_to(
  (np.arange(16) % 2).astype(np.float32)[None, None, :, None], (2, 16, 16, 3)
)  # vertical stripes of width 1: x mod 2


def _threshold(images):  # per-pixel classifier: shift-equivariant
  return (images[..., 0] > 0.5).astype(np.int64)


def _stride_two(images):  # reads every other pixel, repeats it: equivariant to even shifts only
  return np.repeat(np.repeat(_threshold(images)[:, ::2, ::2], 2, 1), 2, 2)


def test_translate_moves_content_down_right_and_mirrors_the_uncovered_edge():
  images = np.arange(25, dtype=np.float32).reshape(1, 5, 5, 1)
  moved = dm.translate(images, 2)
  np.testing.assert_array_equal(moved[0, 2:, 2:, 0], images[0, :3, :3, 0])
  np.testing.assert_array_equal(moved[0, 2:, :2, 0], images[0, :3, 2:0:-1, 0])  # reflect
  np.testing.assert_array_equal(dm.translate(images, 0), images)


def test_shift_agreement_of_a_stripe_image_shifted_by_one_pixel():
  preds = np.broadcast_to(np.arange(6) % 2, (1, 6, 6))
  assert dm.shift_agreement(preds, np.roll(preds, 1, axis=(1, 2)), 1)[0] == 1  # moved along
  assert dm.shift_agreement(preds, preds, 1)[0] == 0  # stayed put: every stripe is off by one
  half = np.roll(preds, 1, axis=(1, 2)).copy()
  half[0, 1:, 1:4] = 1 - half[0, 1:, 1:4]  # 15 of the 25 overlap pixels flipped
  assert dm.shift_agreement(preds, half, 1)[0] == pytest.approx(10 / 25)


def test_shift_agreement_matches_a_pixel_loop():
  rng = np.random.default_rng(5)
  preds, shifted = rng.integers(0, 2, (2, 2, 9, 7))
  for s in (1, 3):
    expected = [
      np.mean(
        [shifted[b, y + s, x + s] == preds[b, y, x] for y in range(9 - s) for x in range(7 - s)]
      )
      for b in range(2)
    ]
    np.testing.assert_allclose(dm.shift_agreement(preds, shifted, s), expected)


def test_shift_consistency_equivariant_and_stride_two_predictors():
  np.testing.assert_array_equal(dm.shift_consistency(_threshold, STRIPES), np.ones((2, 7)))
  consistency = dm.shift_consistency(_stride_two, STRIPES, valid=np.array([True, False]))
  np.testing.assert_array_equal(consistency[0], [0, 1, 0, 1, 0, 1, 0])
  assert np.isnan(consistency[1]).all()


def test_shift_functions_reject_bad_input():
  with pytest.raises(ValueError, match=r'shift in \[0, min\(H, W\)\)'):
    dm.translate(STRIPES, 16)
  with pytest.raises(ValueError, match='shift must be'):
    dm.shift_agreement(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)), -1)
  with pytest.raises(ValueError, match='valid'):
    dm.shift_consistency(_threshold, STRIPES, valid=np.ones(3, bool))


# --- checkerboard on probabilities, logits and features ----------------------------------------

Y, X = np.mgrid[:16, :16]
CHECKER = ((-1.0) ** (X + Y)).astype(np.float32)  # [16, 16]


def test_checkerboard_scores_per_map():
  smooth = np.stack([np.sin(0.2 * X), np.cos(0.3 * Y), 0 * X], -1).astype(np.float32)
  common = smooth + 0.5 * CHECKER[..., None]  # same pattern on every class: softmax ignores it
  own = smooth + 0.5 * CHECKER[..., None] * np.array([1, 0, 0], np.float32)
  logits = np.stack([common, own])  # [2, 16, 16, 3]
  features = np.stack([CHECKER[..., None] * np.ones(4), np.sin(0.2 * X)[..., None] * np.ones(4)])
  scores = jax.jit(dm.checkerboard_scores)(logits, features, np.array([True, True]))
  np.testing.assert_allclose(
    scores['probs'], metrics.checkerboard_score(jax.nn.softmax(jnp.asarray(logits)))
  )
  assert scores['logits'][0] < 1e-4 < 0.1 < scores['logits'][1]
  assert float(metrics.checkerboard_score(logits)[0]) > 0.1  # uncentred, it would count
  np.testing.assert_allclose(scores['features'], [1, 0], atol=1e-4)
  masked = dm.checkerboard_scores(logits, valid=np.array([False, True]))
  assert set(masked) == {'probs', 'logits'} and np.isnan(masked['logits'][0])


# --- one batch, one split ----------------------------------------------------------------------


def test_batch_metrics_drop_padding_and_split_summary_pools_them():
  labels, preds = _random_batch(6, shape=(3, 16, 16))
  labels[:, 7:10, 7:10] = preds[:, 7:10, 7:10] = 0
  labels[:, 8, 8] = 3  # a 1 px object in each image, found in the first only
  preds[0, 8, 8] = 3
  valid = np.array([True, False, True])
  values = dm.batch_metrics(labels, preds, 4, object_classes=(1, 2, 3), valid=valid)
  assert {k: v.shape for k, v in values.items()} == {
    'confusion': (2, 4, 4),
    'trimap': (2, 5, 4, 4),
    'small_hits': (2, 4),
    'small_totals': (2, 4),
    'boundary_f1': (2,),
  }
  kept = labels[valid], preds[valid]
  np.testing.assert_array_equal(values['confusion'], dm.per_image_confusion(*kept, 4))
  np.testing.assert_array_equal(values['boundary_f1'], metrics.boundary_f1(*kept, 4))
  values['shift_consistency'] = np.array([[1.0] * 7, [0.5, 1, 0.5, 1, 0.5, 1, 0.5]])
  summary = dm.split_summary(values, thin_classes=(2, 3))
  scores = metrics.segmentation_scores(metrics.confusion_matrix(labels, preds, 4, valid))
  assert summary['miou'] == pytest.approx(scores['miou'])
  np.testing.assert_allclose(summary['iou_per_class'], scores['iou_per_class'])
  assert summary['thin_iou'] == pytest.approx(np.mean(scores['iou_per_class'][2:]))
  assert len(summary['trimap_miou']) == 5
  assert summary['small_object_recall'] == 1 / 2
  assert summary['shift_consistency_per_shift'] == [0.75, 1, 0.75, 1, 0.75, 1, 0.75]
  assert summary['shift_consistency'] == pytest.approx(6 / 7)
  assert 'checkerboard_logits' not in summary
