import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from research.metrics import boundary_f1
from research.metrics import boundary_map
from research.metrics import boundary_tolerance
from research.metrics import checkerboard_score
from research.metrics import confusion_matrix
from research.metrics import segmentation_scores

# 2x3 image, K = 3, one ignored pixel. Pairs (gt, pred): (0,0) (1,2) (2,2) / (1,1) (1,0) ignored.
HAND_LABELS = np.array([[[0, 1, 2], [1, 1, 255]]], np.uint8)  # [1, 2, 3]
HAND_PREDS = np.array([[[0, 2, 2], [1, 0, 1]]])  # [1, 2, 3]
HAND_CONFUSION = np.array([[1, 0, 0], [1, 1, 1], [0, 0, 1]])

# Jitted once per shape, as the training loop calls them; eager dispatch would dominate runtime.
jit_confusion = jax.jit(confusion_matrix, static_argnums=2)
jit_checkerboard = jax.jit(checkerboard_score)


def _square(size, top, left, side=10):
  """One-hot label map [size, size]: class 1 on a side x side square, class 0 elsewhere."""
  seg = np.zeros((size, size), np.int32)
  seg[top : top + side, left : left + side] = 1
  return seg


def _two_class(p):
  """[1, H, W, 2] probability maps from the class-1 map p [H, W]."""
  return np.stack([1 - p, p], -1)[None].astype(np.float32)


def _score(p):
  return float(jit_checkerboard(_two_class(p))[0])


# --- confusion matrix -------------------------------------------------------------------------


def test_confusion_matrix_hand_example_excludes_ignore_label():
  cm = jit_confusion(HAND_LABELS, HAND_PREDS, 3)
  assert cm.dtype == jnp.int32
  np.testing.assert_array_equal(cm, HAND_CONFUSION)
  other_out_of_range = HAND_LABELS.astype(np.int32)
  other_out_of_range[0, 1, 2] = -1  # any label outside [0, K) is excluded like 255
  np.testing.assert_array_equal(jit_confusion(other_out_of_range, HAND_PREDS, 3), HAND_CONFUSION)
  other_out_of_range[0, 1, 2] = 3
  np.testing.assert_array_equal(jit_confusion(other_out_of_range, HAND_PREDS, 3), HAND_CONFUSION)


def test_confusion_matrix_uint8_labels_with_many_classes():
  cm = jit_confusion(np.array([[[99, 255]]], np.uint8), np.array([[[5, 7]]]), 100)  # 99 * 100 > 255
  assert cm[99, 5] == 1 and cm.sum() == 1


def test_confusion_matrix_excludes_padded_examples_and_pixels():
  labels = np.concatenate([HAND_LABELS, np.zeros_like(HAND_LABELS)])  # [2, 2, 3]; 2nd is padding
  preds = np.concatenate([HAND_PREDS, np.ones_like(HAND_PREDS)])
  for valid in (np.array([True, False]), np.array([True, False])[:, None, None]):
    np.testing.assert_array_equal(jit_confusion(labels, preds, 3, valid), HAND_CONFUSION)
  pixel_valid = np.ones(labels.shape, bool)
  pixel_valid[0, 0, 0] = False  # drops the single (0, 0) pair
  expected = HAND_CONFUSION - np.diag([1, 0, 0])
  expected[0, 1] += 6  # the padding example, now valid: gt 0 -> pred 1 on all 6 pixels
  np.testing.assert_array_equal(jit_confusion(labels, preds, 3, pixel_valid), expected)


def test_confusion_matrix_sums_over_batches_like_the_concatenation():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 5, (6, 7, 9))
  labels[rng.random(labels.shape) < 0.2] = 255
  preds = rng.integers(0, 5, labels.shape)
  summed = sum(
    np.asarray(jit_confusion(labels[i : i + 2], preds[i : i + 2], 5), np.int64) for i in (0, 2, 4)
  )
  np.testing.assert_array_equal(summed, jit_confusion(labels, preds, 5))
  assert summed.sum() == (labels != 255).sum()


def test_confusion_matrix_rejects_bad_input():
  with pytest.raises(ValueError, match='num_classes'):
    confusion_matrix(HAND_LABELS, HAND_PREDS, 0)
  with pytest.raises(ValueError, match=r'\[B, H, W\]'):
    confusion_matrix(HAND_LABELS, HAND_PREDS[:, :1], 3)
  with pytest.raises(ValueError, match='valid'):
    confusion_matrix(HAND_LABELS, HAND_PREDS, 3, np.ones((1, 2, 2), bool))


# --- region scores ----------------------------------------------------------------------------


def test_segmentation_scores_match_hand_values():
  scores = segmentation_scores(HAND_CONFUSION, ['a', 'b', 'c'])
  np.testing.assert_allclose(scores['iou_per_class'], [1 / 2, 1 / 3, 1 / 2])
  assert scores['miou'] == pytest.approx(4 / 9)
  assert scores['pixel_accuracy'] == pytest.approx(3 / 5)
  np.testing.assert_allclose(scores['accuracy_per_class'], [1, 1 / 3, 1])
  assert scores['mean_class_accuracy'] == pytest.approx(7 / 9)
  assert scores['class_names'] == ['a', 'b', 'c'] and scores['num_pixels'] == 5


def test_segmentation_scores_absent_and_prediction_only_classes():
  # class 2 absent everywhere: NaN, not averaged; class 1 only predicted: IoU 0, averaged in.
  confusion = np.array([[3, 1, 0], [0, 0, 0], [0, 0, 0]])
  scores = segmentation_scores(confusion)
  np.testing.assert_allclose(scores['iou_per_class'], [3 / 4, 0, np.nan])
  assert scores['miou'] == pytest.approx(3 / 8)
  np.testing.assert_allclose(scores['accuracy_per_class'], [3 / 4, np.nan, np.nan])
  assert scores['mean_class_accuracy'] == pytest.approx(3 / 4)


def test_perfect_prediction_scores_one():
  labels = np.random.default_rng(1).integers(0, 4, (2, 5, 5))
  scores = segmentation_scores(jit_confusion(labels, labels, 4))
  assert scores['miou'] == scores['pixel_accuracy'] == scores['mean_class_accuracy'] == 1.0


def test_segmentation_scores_rejects_bad_input():
  with pytest.raises(ValueError, match='square'):
    segmentation_scores(np.ones((2, 3)))
  with pytest.raises(ValueError, match='empty'):
    segmentation_scores(np.zeros((2, 2)))
  with pytest.raises(ValueError, match='class_names'):
    segmentation_scores(np.eye(2), ['only one'])


# --- boundary F1 ------------------------------------------------------------------------------


def test_boundary_map_by_hand_with_unscored_pixels_transparent():
  seg = np.array([[0, 0, 1], [0, 0, 1], [2, 2, 1]])
  np.testing.assert_array_equal(boundary_map(seg), [[0, 1, 1], [1, 1, 1], [1, 1, 1]])
  scored = np.ones_like(seg, bool)
  scored[1, 1] = False  # (1, 2) loses its only differing neighbour
  np.testing.assert_array_equal(boundary_map(seg, scored), [[0, 1, 1], [1, 0, 0], [1, 1, 1]])


def test_boundary_tolerance_is_three_quarter_percent_of_diagonal_at_least_one_pixel():
  assert boundary_tolerance(40, 40) == 1.0
  assert boundary_tolerance(200, 200) == pytest.approx(0.0075 * 200 * np.sqrt(2))


def test_boundary_f1_perfect_and_one_pixel_shift_score_one():
  labels = _square(20, 5, 5)[None]  # tolerance 1 px
  np.testing.assert_array_equal(boundary_f1(labels, labels, 2), [1.0])
  np.testing.assert_array_equal(boundary_f1(labels, _square(20, 5, 6)[None], 2), [1.0])


def test_boundary_f1_shift_beyond_tolerance_hand_value():
  # 40x40 (tolerance 1 px), square shifted right by 3. Square class: 36 ring pixels per side,
  # 8 + 8 (top, bottom rows) + 2 (near side) within 1 px -> P = R = 1/2. Background: 40 outer
  # ring pixels, 8 + 8 + 2 matched -> P = R = 9/20. BF = (1/2 + 9/20) / 2.
  labels, preds = _square(40, 10, 10)[None], _square(40, 10, 13)[None]
  np.testing.assert_allclose(boundary_f1(labels, preds, 2), [(0.5 + 0.45) / 2])


def test_boundary_f1_tolerance_scales_with_image_size():
  labels = np.zeros((200, 200), np.int32)
  labels[:, 100:] = 1  # vertical step; tolerance 2.12 px
  preds = np.stack([np.roll(labels, 2, axis=1), np.roll(labels, 3, axis=1)])
  preds[:, :, :3] = 0  # undo the wrap-around
  np.testing.assert_array_equal(boundary_f1(np.stack([labels] * 2), preds, 2), [1.0, 0.0])


def test_boundary_f1_scores_only_ground_truth_classes():
  labels = np.zeros((1, 20, 20), np.int32)
  labels[:, :, 10:] = 1
  preds = labels.copy()
  preds[:, 4:6, 2:4] = 2  # hallucinated blob: 8 unmatched class-0 boundary pixels around it
  # class 0: P = 20/28, R = 1 -> F1 = 5/6; class 1: 1; class 2 not scored on its own.
  np.testing.assert_allclose(boundary_f1(labels, preds, 3), [(5 / 6 + 1) / 2])
  uniform = np.zeros_like(labels)  # no ground-truth boundary: the false contour scores 0
  np.testing.assert_array_equal(boundary_f1(uniform, preds, 3), [0.0])


def test_boundary_f1_ignores_ignore_label_and_invalid_images():
  labels = np.stack([_square(20, 5, 5)] * 3)
  labels[:, 0:3, :] = 255
  preds = labels.copy()
  preds[:, 0:3] = np.arange(20) % 2  # stripes under the ignored pixels: not boundaries
  flat = np.zeros((1, 20, 20), np.int32)  # one class, no boundary anywhere
  banded = np.zeros((1, 20, 20), np.int32)
  banded[:, :, 10:] = 1
  banded[:, :, 9:11] = 255  # an ignore band hides the only contour
  scores = boundary_f1(
    np.concatenate([labels, flat, banded]),
    np.concatenate([preds, flat, np.zeros_like(banded)]),
    2,
    valid=np.array([True, False, True, True, True]),
  )
  np.testing.assert_array_equal(scores, [1.0, np.nan, 1.0, np.nan, np.nan])


def _brute_force_bf(gt, pred, tol):
  """Pixel-by-pixel BF of one image, as the boundary_f1 docstring words it."""
  h, w = gt.shape

  def edges(seg):  # {(y, x)} of scored pixels with a scored 4-neighbour of another label
    return {
      (y, x)
      for y in range(h)
      for x in range(w)
      if gt[y, x] != 255
      for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1))
      if 0 <= ny < h and 0 <= nx < w and gt[ny, nx] != 255 and seg[ny, nx] != seg[y, x]
    }

  def share_matched(a, b):
    return np.mean([min(np.hypot(y - v, x - u) for v, u in b) <= tol for y, x in a])

  gt_edges, pred_edges, f1 = edges(gt), edges(pred), []
  for c in np.unique(gt[gt != 255]):
    g = {e for e in gt_edges if gt[e] == c}
    p = {e for e in pred_edges if pred[e] == c}
    if g and p:
      prec, rec = share_matched(p, g), share_matched(g, p)
      f1.append(0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec))
    elif g or p:
      f1.append(0.0)
  return np.mean(f1) if f1 else np.nan


def test_boundary_f1_matches_brute_force_on_random_maps():
  rng = np.random.default_rng(2)
  labels = ndimage.zoom(rng.integers(0, 3, (6, 4, 4)), (1, 4, 4), order=0)  # [6, 16, 16] blocks
  labels[rng.random(labels.shape) < 0.05] = 255
  shifted = np.roll(np.where(labels == 255, 0, labels), 1, axis=2)  # boundaries 1 px off
  preds = np.where(rng.random(labels.shape) < 0.15, rng.integers(0, 3, labels.shape), shifted)
  expected = [_brute_force_bf(gt, pred, 1.0) for gt, pred in zip(labels, preds)]
  np.testing.assert_allclose(boundary_f1(labels, preds, 3), expected)


def test_boundary_f1_rejects_bad_input_but_not_in_invalid_images():
  labels = _square(20, 5, 5)[None]
  with pytest.raises(ValueError, match='ignore_label'):
    boundary_f1(labels + 1, labels, 2)  # label 2 is neither a class nor ignored
  with pytest.raises(ValueError, match='valid'):
    boundary_f1(labels, labels, 2, valid=np.ones(2, bool))
  with pytest.raises(ValueError, match='num_classes'):
    boundary_f1(labels, labels, 0)
  assert np.isnan(boundary_f1(labels + 5, labels, 2, valid=np.array([False]))).all()


# --- checkerboard score -----------------------------------------------------------------------

Y, X = np.mgrid[:64, :64]
DISK = ((X - 31.3) ** 2 + (Y - 29.7) ** 2 < 12**2).astype(np.float32)


def test_checkerboard_score_is_one_for_pure_period_two_patterns():
  for pattern in ((-1.0) ** (X + Y), (-1.0) ** X, (-1.0) ** Y):
    assert _score(0.5 + 0.5 * pattern) == pytest.approx(1.0, abs=1e-5)


def test_checkerboard_score_hand_value_on_a_mixture():
  # p = 0.5 + a cos(2 pi 2x / 32) + b (-1)^(x+y): AC energy per pixel a^2/2 + b^2, artifact b^2.
  y, x = np.mgrid[:32, :32]
  p = 0.5 + 0.2 * np.cos(2 * np.pi * 2 * x / 32) + 0.1 * (-1.0) ** (x + y)
  assert _score(p) == pytest.approx(0.01 / (0.02 + 0.01), rel=1e-4)


def test_checkerboard_score_near_zero_for_clean_maps():
  low_res = jax.nn.softmax(3 * jax.random.normal(jax.random.key(0), (1, 8, 8, 4)), axis=-1)
  clean = {
    'smooth': _two_class(0.5 + 0.3 * np.sin(0.13 * X + 0.4) * np.cos(0.07 * Y)),
    'one-hot disk': _two_class(DISK),
    'step edge': _two_class((X >= 33).astype(np.float32)),
    'diagonal step': _two_class((X + Y >= 61).astype(np.float32)),
    'bilinear upsampled': jax.image.resize(low_res, (1, 64, 64, 4), 'bilinear'),
    'flat': np.full((1, 64, 64, 3), 1 / 3, np.float32),
  }
  for name, probs in clean.items():
    assert float(jit_checkerboard(probs)[0]) < 1e-4, name


def test_checkerboard_score_rises_with_a_faint_ripple():
  ripple = 0.02 * (-1.0) ** (X + Y)
  assert _score(0.9 * DISK + 0.05 + ripple) > _score(0.9 * DISK + 0.05) + 1e-3


def test_checkerboard_score_flags_uneven_transposed_convolution_overlap():
  low_res = 0.5 + 0.3 * np.sin(0.4 * np.mgrid[:32, :32].sum(0))  # [32, 32]

  def transposed_conv(side_tap):  # stride 2, 3x3 kernel; side_tap 0.5 is even overlap
    zero_filled = np.zeros((64, 64))
    zero_filled[::2, ::2] = low_res
    taps = np.array([side_tap, 1.0, side_tap])
    return ndimage.convolve(zero_filled, np.outer(taps, taps), mode='wrap')

  assert _score(transposed_conv(0.5)) < 1e-3  # linear interpolation: only a faint spectral image
  assert _score(transposed_conv(0.75)) > 0.05


def test_checkerboard_score_batched_jit_and_valid():
  probs = np.concatenate(
    [_two_class(0.5 + 0.5 * (-1.0) ** X), _two_class(DISK)] * 2
  )  # [4, 64, 64, 2]
  scores = jit_checkerboard(probs, jnp.array([True, True, False, True]))
  assert scores.shape == (4,)
  np.testing.assert_allclose(scores, [1, 0, np.nan, 0], atol=1e-5)


def test_checkerboard_score_rejects_bad_input():
  with pytest.raises(ValueError, match=r'\[B, H, W, K\]'):
    checkerboard_score(np.zeros((64, 64, 2)))
  with pytest.raises(ValueError, match='H, W >= 8'):
    checkerboard_score(np.zeros((1, 4, 64, 2)))
  with pytest.raises(ValueError, match='valid'):
    checkerboard_score(_two_class(DISK), np.ones(2, bool))
