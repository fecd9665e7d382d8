"""research.video_metrics on constructed clips with hand-counted answers."""

import numpy as np
import pytest

from research import decoder_metrics
from research import video_metrics as vm
from research.data import lab_shapes

V = 255


def test_flicker_counts_changes_where_the_ground_truth_stays():
  labels = np.array([[[[0, 0, 1, V]], [[0, 1, 1, V]], [[0, 1, 1, 0]]]])  # [1, 3, 1, 4]
  preds = np.array([[[[0, 1, 1, 0]], [[0, 0, 1, 1]], [[1, 0, 0, 1]]]])
  # Pairs (0, 1): stable pixels 0 and 2 (pixel 1 changes label, pixel 3 is void), whose
  # predictions stay (0 -> 0, 1 -> 1): 0 of 2; pixel 1's change does not count. Pairs (1, 2):
  # stable pixels 0, 1, 2 (pixel 3 void in frame 1); predictions change at 0 (0 -> 1) and 2
  # (1 -> 0), not at 1 (0 -> 0): 2 of 3. In all: 2 of 5.
  changed, stable = vm.flicker_counts(labels, preds)
  assert changed.tolist() == [2] and stable.tolist() == [5]
  assert vm.flicker(labels, preds)[0] == pytest.approx(0.4)


def test_exact_labels_of_a_moving_clip_do_not_flicker_and_noise_does():
  _, labels, _ = lab_shapes.generate_clip(64, 0, 'validation', 0)
  labels = labels[None].astype(np.int64)  # [1, 8, 64, 64]
  assert vm.flicker(labels, labels)[0] == 0
  noisy = np.where(
    np.random.default_rng(0).random(labels.shape) < 0.1, 1 - labels.clip(0, 1), labels
  )
  assert 0.1 < vm.flicker(labels, noisy)[0] < 0.2  # one of two frames flipped: 2 · 0.1 · 0.9


def test_flicker_of_a_clip_without_stable_pixels_is_nan():
  labels = np.full((2, 3, 2, 2), V)
  assert np.isnan(vm.flicker(labels, labels)).all()


def test_per_frame_confusion_is_each_frames_confusion():
  rng = np.random.default_rng(1)
  labels, preds = rng.integers(0, 3, (2, 4, 5, 5)), rng.integers(0, 3, (2, 4, 5, 5))
  got = vm.per_frame_confusion(labels, preds, 3)
  assert got.shape == (2, 4, 3, 3)
  np.testing.assert_array_equal(
    got[1, 2], decoder_metrics.per_image_confusion(labels[1, 2][None], preds[1, 2][None], 3)[0]
  )
  per_frame_miou = decoder_metrics.mean_iou(got.sum(0))  # [T]
  assert per_frame_miou.shape == (4,)


def test_bad_shapes_say_what_is_valid():
  with pytest.raises(ValueError, match=r'clips \[B, T, H, W\] with T >= 2'):
    vm.flicker(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2)))
