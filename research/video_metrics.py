"""Per-clip metrics of video segmentation (issue 20), on the host in numpy.

* `per_frame_confusion` -> int64 [B, T, K, K]: research.decoder_metrics.per_image_confusion
  of each frame, so per-frame mIoU is mean_iou of the split's sum over clips [T, K, K].
* `flicker_counts` -> (changed, stable) int64 [B]: temporal flicker, the share of pixels
  whose predicted label changes between consecutive frames where the ground-truth label does
  not, is changed / stable summed over a split (`flicker` gives it per clip).

Conventions as research.decoder_metrics: labels int [B, T, H, W] with an ignore label,
predictions int [B, T, H, W]. Clips are read as they are: no motion compensation, so the
flicker of a perfect prediction is 0 and that of a moving object's exact labels too.
"""

import numpy as np

from research import decoder_metrics


def _check_clips(labels, preds):
  """labels, preds as int64 [B, T, H, W] with T >= 2; raises on bad shapes."""
  labels, preds = np.asarray(labels), np.asarray(preds)
  if labels.ndim != 4 or labels.shape != preds.shape or labels.shape[1] < 2:
    raise ValueError(
      f'labels and preds must both be clips [B, T, H, W] with T >= 2, got {labels.shape} '
      f'and {preds.shape}'
    )
  return labels.astype(np.int64), preds.astype(np.int64)


def per_frame_confusion(labels, preds, num_classes: int) -> np.ndarray:
  """Confusion matrix of every frame of every clip: int64 [B, T, K, K], rows = ground truth
  (the pixels decoder_metrics.per_image_confusion counts). labels, preds: int [B, T, H, W]."""
  labels, preds = _check_clips(labels, preds)
  b, t = labels.shape[:2]
  flat = decoder_metrics.per_image_confusion(
    labels.reshape(b * t, *labels.shape[2:]), preds.reshape(b * t, *preds.shape[2:]), num_classes
  )
  return flat.reshape(b, t, num_classes, num_classes)


def flicker_counts(labels, preds, ignore_label: int = 255) -> tuple[np.ndarray, np.ndarray]:
  """Pixel pairs (t, t + 1) of each clip where the ground truth stays the same class:
  `(changed, stable)`, int64 [B] each; changed counts those whose prediction changes.

  A pair is stable when the label is equal in both frames and neither is ignore_label.
  labels, preds: int [B, T, H, W]; T - 1 pairs of frames per pixel.
  """
  labels, preds = _check_clips(labels, preds)
  stable = (labels[:, 1:] == labels[:, :-1]) & (labels[:, 1:] != ignore_label)  # [B, T-1, H, W]
  changed = stable & (preds[:, 1:] != preds[:, :-1])
  return changed.sum((1, 2, 3)), stable.sum((1, 2, 3))


def flicker(labels, preds, ignore_label: int = 255) -> np.ndarray:
  """Flicker of each clip, changed / stable of flicker_counts: float64 [B], NaN for a clip
  without a stable pixel pair. Over a split, divide the summed counts instead."""
  changed, stable = flicker_counts(labels, preds, ignore_label)
  return np.divide(changed, stable, out=np.full(changed.shape, np.nan), where=stable > 0)
