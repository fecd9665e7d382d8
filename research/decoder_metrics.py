"""Per-image metrics that tell decoders apart (issue 18), on the host in numpy.

Every function takes one eval batch and returns one value (or one sufficient statistic) per
image, so the evaluator can store them per run and `research.stats` can resample images:

* `per_image_confusion` -> int64 [B, K, K]: split mIoU, per-class IoU and thin IoU all come
  from their sum over the split (`class_iou`, `mean_iou`, `thin_iou`), as in region_scores.
* `trimap_confusion` -> int64 [B, len(widths), K, K]: the same, restricted to the band of
  pixels near a ground-truth boundary (Kohli et al. 2009; Chen et al. 2017, DeepLab, Fig. 5).
* `small_object_counts` -> (hits, totals), int64 [B, K] each: small-object recall.
* `shift_consistency` -> float64 [B, len(shifts)]: agreement of predictions under translation.
* `checkerboard_scores` -> float32 [B] per map: metrics.checkerboard_score on probabilities,
  logits and the last decoder feature map.

`batch_metrics` bundles the label-only ones for one eval batch (padding dropped) and
`split_summary` turns their concatenation over a split into the numbers of final.json.

Conventions as in research.metrics: labels int [B, H, W] with an ignore label (255 by default),
valid bool [B] for padded examples, predictions int [B, H, W]. A pixel is scored when its image
is valid and its label lies in [0, K); invalid images contribute zero counts (or NaN scores).
"""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from research import metrics

TRIMAP_WIDTHS = (1, 2, 4, 8, 16)  # band half-widths in px, as in the issue
SHIFTS = tuple(range(1, 8))  # translations in px along both axes
SMALL_OBJECT_FRACTION = 0.01  # components under 1% of the image count as small
HIT_IOU = 0.5  # a small component is found when a predicted segment reaches this IoU
_EIGHT_CONNECTED = np.ones((3, 3), bool)


def _check_batch(labels, preds, num_classes, valid):
  """labels, preds as int arrays [B, H, W] and valid as bool [B]; raises on bad shapes."""
  if num_classes < 1:
    raise ValueError(f'num_classes must be >= 1, got {num_classes}')
  labels, preds = np.asarray(labels), np.asarray(preds)
  if labels.ndim != 3 or labels.shape != preds.shape:
    raise ValueError(
      f'labels and preds must both be [B, H, W], got {labels.shape} and {preds.shape}'
    )
  valid = np.ones(labels.shape[0], bool) if valid is None else np.asarray(valid, bool)
  if valid.shape != labels.shape[:1]:
    raise ValueError(f'valid must be [B]={labels.shape[:1]}, got {valid.shape}')
  return labels.astype(np.int64), preds.astype(np.int64), valid


def _scored(labels, num_classes, valid):
  """bool [B, H, W]: pixels of valid images whose label is a class (not the ignore label)."""
  return (labels >= 0) & (labels < num_classes) & valid[:, None, None]


def _confusions(labels, preds, num_classes, scored):
  """int64 [*G, K, K] from labels, preds int [H, W]-trailing arrays and scored bool [*G, H, W].

  labels and preds broadcast against scored; G are the leading group axes (images, bands).
  Pixels whose prediction is outside [0, K) are dropped, as in metrics.confusion_matrix.
  """
  scored = scored & (preds >= 0) & (preds < num_classes)  # [*G, H, W]
  groups = scored.shape[:-2]
  cell = labels * num_classes + preds  # [..., H, W]
  group = np.arange(int(np.prod(groups))).reshape(*groups, 1, 1)  # [*G, 1, 1]
  index = np.broadcast_to(group * num_classes**2 + cell, scored.shape)[scored]
  counts = np.bincount(index, minlength=group.size * num_classes**2)
  return counts.reshape(*groups, num_classes, num_classes)


def per_image_confusion(labels, preds, num_classes: int, valid=None) -> np.ndarray:
  """Confusion matrix of each image, so a split's (or a resample's) is their sum.

  labels, preds: int [B, H, W]; valid: bool [B] or None. Counts the pixels that
  metrics.confusion_matrix counts: label and prediction in [0, K), image valid.
  Returns int64 [B, K, K], rows = ground truth; all zero for invalid images.
  """
  labels, preds, valid = _check_batch(labels, preds, num_classes, valid)
  return _confusions(labels, preds, num_classes, _scored(labels, num_classes, valid))


def class_iou(confusion) -> np.ndarray:
  """IoU per class, TP / (TP + FP + FN), of confusions [..., K, K] (rows = ground truth).

  NaN for a class absent from both ground truth and prediction (as segmentation_scores).
  Returns float64 [..., K].
  """
  confusion = np.asarray(confusion, np.float64)
  if confusion.ndim < 2 or confusion.shape[-1] != confusion.shape[-2]:
    raise ValueError(f'confusion must be [..., K, K], got {confusion.shape}')
  tp = np.diagonal(confusion, axis1=-2, axis2=-1)  # [..., K]
  union = confusion.sum(-1) + confusion.sum(-2) - tp  # [..., K]
  return np.divide(tp, union, out=np.full(tp.shape, np.nan), where=union > 0)


def mean_iou(confusion, classes=None) -> np.ndarray:
  """Mean IoU over `classes` (None: all) of confusions [..., K, K], skipping absent classes.

  Equals segmentation_scores(confusion)['miou'] for classes=None. NaN where every chosen class
  is absent. Returns float64 [...].
  """
  iou = class_iou(confusion)  # [..., K]
  if classes is not None:
    classes = np.asarray(classes, np.int64)
    if (
      classes.ndim != 1
      or classes.size == 0
      or (classes < 0).any()
      or (classes >= iou.shape[-1]).any()
    ):
      raise ValueError(
        f'classes must be a non-empty list of class ids in [0, {iou.shape[-1]}), got {classes}'
      )
    iou = iou[..., classes]
  present = ~np.isnan(iou)
  count = present.sum(-1)
  return np.divide(
    np.where(present, iou, 0).sum(-1), count, out=np.full(count.shape, np.nan), where=count > 0
  )


def thin_iou(confusion, thin_classes) -> np.ndarray:
  """Mean IoU over the classes a dataset declares thin (DatasetInfo.thin_classes): float64 [...]."""
  if len(thin_classes) == 0:
    raise ValueError('thin_iou needs the dataset to declare thin classes; it declares none')
  return mean_iou(confusion, thin_classes)


def boundary_distance(labels, num_classes: int, valid=None) -> np.ndarray:
  """Euclidean distance (px, between pixel centres) to the nearest ground-truth boundary pixel.

  A boundary pixel is a scored pixel with a scored 4-neighbour of another label
  (metrics.boundary_map: ignore-label pixels are transparent, the image frame is no boundary),
  so both sides of an edge are boundary pixels at distance 0. labels: int [B, H, W].
  Returns float64 [B, H, W]; inf in images without a boundary and in invalid images.
  """
  labels, _, valid = _check_batch(labels, labels, num_classes, valid)
  boundary = metrics.boundary_map(labels, _scored(labels, num_classes, valid))  # [B, H, W]
  distance = np.full(labels.shape, np.inf)
  for b in np.flatnonzero(boundary.any(axis=(1, 2))):
    distance[b] = ndimage.distance_transform_edt(~boundary[b])
  return distance


def trimap_confusion(
  labels, preds, num_classes: int, valid=None, widths=TRIMAP_WIDTHS
) -> np.ndarray:
  """Confusion of each image within w px of a ground-truth boundary, for each w in widths.

  The band of width w holds the scored pixels whose boundary_distance is < w: a straight edge
  gets w pixel columns on each side (2w in all; the boundary pixels themselves for w = 1).
  Equivalently, the pixel centres within w - 1/2 px of the edge line between two labels.
  Ignore-label pixels are never in a band. labels, preds: int [B, H, W]; valid: bool [B].
  Returns int64 [B, len(widths), K, K]; trimap IoU at widths[i] is mean_iou of the split's
  sum [:, i]. Zero in invalid images and images without a boundary.
  """
  labels, preds, valid = _check_batch(labels, preds, num_classes, valid)
  widths = np.asarray(widths, np.float64)
  if widths.ndim != 1 or widths.size == 0 or (widths <= 0).any():
    raise ValueError(f'widths must be a non-empty list of positive pixel widths, got {widths}')
  scored = _scored(labels, num_classes, valid)  # [B, H, W]
  distance = boundary_distance(labels, num_classes, valid)  # [B, H, W]
  band = scored[:, None] & (distance[:, None] < widths[None, :, None, None])  # [B, Wn, H, W]
  return _confusions(labels[:, None], preds[:, None], num_classes, band)


def small_object_counts(
  labels,
  preds,
  num_classes: int,
  classes,
  valid=None,
  max_fraction: float = SMALL_OBJECT_FRACTION,
) -> tuple[np.ndarray, np.ndarray]:
  """Small ground-truth objects per image and class, and how many the prediction finds.

  Objects are the 8-connected components of each class in `classes` (lab_shapes keeps thin
  objects of one class 8-separated, and a 1-px diagonal line stays one component); background
  and other stuff classes are left out by the caller. Small: area < max_fraction * H * W
  pixels; the default 1% is 41 px at 64 px, which takes in lab_shapes' specks (<= 16 px) and
  short line or ring pieces but no whole blob (>= 78 px). Predicted segments are the
  8-connected components of the prediction of the same class (as a semantic prediction is
  split into segments for panoptic quality, Kirillov et al. 2019). A small object is a hit
  when some predicted segment reaches IoU >= 0.5 with it, counting scored pixels only (PQ
  leaves void pixels out of the IoU the same way). Recall = sum of hits / sum of totals.

  labels, preds: int [B, H, W]; classes: class ids to score; valid: bool [B].
  Returns (hits, totals), int64 [B, K] each; zero for unscored classes and invalid images.
  """
  labels, preds, valid = _check_batch(labels, preds, num_classes, valid)
  classes = np.asarray(classes, np.int64)
  if classes.ndim != 1 or (classes < 0).any() or (classes >= num_classes).any():
    raise ValueError(f'classes must be a list of class ids in [0, {num_classes}), got {classes}')
  if not 0 < max_fraction <= 1:
    raise ValueError(f'max_fraction must be in (0, 1], got {max_fraction}')
  scored = _scored(labels, num_classes, valid)  # [B, H, W]
  max_area = max_fraction * labels.shape[1] * labels.shape[2]
  hits = np.zeros((labels.shape[0], num_classes), np.int64)
  totals = np.zeros_like(hits)
  for b in np.flatnonzero(valid):
    for c in classes:
      truth, num_truth = ndimage.label(labels[b] == c, _EIGHT_CONNECTED)  # [H, W]
      if num_truth == 0:
        continue
      found, num_found = ndimage.label(preds[b] == c, _EIGHT_CONNECTED)  # [H, W]
      truth_area = np.bincount(truth.ravel(), minlength=num_truth + 1)  # [T + 1]
      found_area = np.bincount(found[scored[b]], minlength=num_found + 1)  # [P + 1]
      pair = (truth * (num_found + 1) + found)[(truth > 0) & (found > 0)]
      overlap = np.bincount(pair, minlength=(num_truth + 1) * (num_found + 1)).reshape(
        num_truth + 1, num_found + 1
      )  # [T + 1, P + 1]
      union = truth_area[:, None] + found_area[None, :] - overlap
      hit = (overlap >= HIT_IOU * union)[1:, 1:].any(axis=1)  # [T]; no segment: none hit
      small = truth_area[1:] < max_area  # [T]
      hits[b, c], totals[b, c] = (hit & small).sum(), small.sum()
  return hits, totals


def translate(images, shift: int) -> np.ndarray:
  """images [B, H, W, C] moved down and right by `shift` px, same size.

  out[:, y, x] = images[:, y - shift, x - shift]; the top rows and left columns it uncovers are
  the image mirrored at its edge (numpy 'reflect'), the bottom-right content leaves the frame.
  """
  images = np.asarray(images)
  if images.ndim != 4 or not 0 <= shift < min(images.shape[1:3]):
    raise ValueError(
      f'images must be [B, H, W, C] and shift in [0, min(H, W)), got {images.shape} and {shift}'
    )
  height, width = images.shape[1:3]
  padded = np.pad(images, ((0, 0), (shift, 0), (shift, 0), (0, 0)), mode='reflect')
  return padded[:, :height, :width]


def shift_agreement(preds, shifted_preds, shift: int) -> np.ndarray:
  """Share of the overlap where the prediction on the translated image agrees with the original.

  preds: int [B, H, W] on the images; shifted_preds: int [B, H, W] on translate(images, shift).
  Pixel (y, x) of the image is (y + shift, x + shift) of the translated one; the overlap is the
  (H - shift) x (W - shift) pixels both see. Returns float64 [B].
  """
  preds, shifted_preds = np.asarray(preds), np.asarray(shifted_preds)
  if preds.ndim != 3 or preds.shape != shifted_preds.shape:
    raise ValueError(
      f'preds and shifted_preds must both be [B, H, W], got {preds.shape} and {shifted_preds.shape}'
    )
  height, width = preds.shape[1:]
  if not 0 <= shift < min(height, width):
    raise ValueError(f'shift must be in [0, min(H, W)) = [0, {min(height, width)}), got {shift}')
  same = shifted_preds[:, shift:, shift:] == preds[:, : height - shift, : width - shift]
  return same.mean(axis=(1, 2))


def shift_consistency(predict_fn, images, valid=None, shifts=SHIFTS) -> np.ndarray:
  """Agreement of predictions on each image and on it translated by s px (Zhang, ICML 2019).

  Deterministic version of Zhang's consistency for segmentation: for each s in shifts, the
  image moves s px down and s px right (translate: both pixel phases change at odd s, where a
  stride-2 decoder is not shift-equivariant), and the share of the overlap whose predicted label
  agrees is shift_agreement. predict_fn: images float [B, H, W, 3] -> labels int [B, H, W]
  (called once on the images and once per shift, always on a batch of the same shape).
  valid: bool [B]. Returns float64 [B, len(shifts)]; NaN rows for invalid images.
  """
  images = np.asarray(images)
  valid = np.ones(images.shape[:1], bool) if valid is None else np.asarray(valid, bool)
  if valid.shape != images.shape[:1]:
    raise ValueError(f'valid must be [B]={images.shape[:1]}, got {valid.shape}')
  preds = np.asarray(predict_fn(images))  # [B, H, W]
  agreement = np.stack(
    [shift_agreement(preds, np.asarray(predict_fn(translate(images, s))), s) for s in shifts],
    axis=1,
  )  # [B, len(shifts)]
  return np.where(valid[:, None], agreement, np.nan)


def checkerboard_scores(logits, features=None, valid=None) -> dict:
  """metrics.checkerboard_score of the probabilities, the logits and the decoder features.

  'probs': softmax(logits), the score as it always was. 'logits': the logits minus their mean
  over classes at each pixel, the part softmax sees (a pattern common to all classes changes no
  probability); for probabilities that mean is the constant 1/K, so nothing changes there.
  'features': the last decoder feature map as it is (channels weighted by their energy).
  logits: float [B, H, W, K]; features: float [B, h, w, C] with h, w >= 8, or None;
  valid: bool [B]. Returns {name: float32 [B]} (NaN for invalid images); jit-able.
  """
  logits = jnp.asarray(logits, jnp.float32)  # [B, H, W, K]
  scores = {
    'probs': metrics.checkerboard_score(jax.nn.softmax(logits), valid),
    'logits': metrics.checkerboard_score(logits - logits.mean(-1, keepdims=True), valid),
  }
  if features is not None:
    scores['features'] = metrics.checkerboard_score(features, valid)
  return scores


def batch_metrics(
  labels, preds, num_classes: int, object_classes, valid=None, ignore_label: int = 255
) -> dict:
  """The host-side per-image values of one eval batch, padded examples dropped.

  labels, preds: int [B, H, W]; object_classes: the class ids small-object recall scores
  (things: e.g. every class but background); valid: bool [B]. Returns, with V valid images
  in batch order: 'confusion' int64 [V, K, K], 'trimap' int64 [V, len(TRIMAP_WIDTHS), K, K],
  'small_hits' and 'small_totals' int64 [V, K], 'boundary_f1' float64 [V] (NaN: no scored
  class). Concatenated over a split's batches they are what a run stores per image.
  """
  labels, preds, valid = _check_batch(labels, preds, num_classes, valid)
  hits, totals = small_object_counts(labels, preds, num_classes, object_classes, valid)
  values = {
    'confusion': per_image_confusion(labels, preds, num_classes, valid),
    'trimap': trimap_confusion(labels, preds, num_classes, valid),
    'small_hits': hits,
    'small_totals': totals,
    'boundary_f1': metrics.boundary_f1(labels, preds, num_classes, valid, ignore_label),
  }
  return {name: value[valid] for name, value in values.items()}


def split_summary(per_image: dict, thin_classes=()) -> dict:
  """A split's numbers for final.json and the tables, from its per-image values.

  per_image: batch_metrics' arrays concatenated over the split, optionally with
  'shift_consistency' float [N, len(SHIFTS)] and 'checkerboard' / 'checkerboard_logits' /
  'checkerboard_features' float [N]. IoUs come from summed confusions; recall is the sum
  of hits over the sum of totals; the scores are NaN-skipping means over images. Fractions,
  not %.
  """
  confusion = per_image['confusion'].sum(0)  # [K, K]
  summary = {'miou': float(mean_iou(confusion)), 'iou_per_class': class_iou(confusion).tolist()}
  if len(thin_classes):
    summary['thin_iou'] = float(thin_iou(confusion, thin_classes))
  if 'trimap' in per_image:
    summary['trimap_miou'] = mean_iou(per_image['trimap'].sum(0)).tolist()  # per width
  if 'small_hits' in per_image:
    total = per_image['small_totals'].sum()
    summary['small_object_recall'] = (
      float(per_image['small_hits'].sum() / total) if total else (float('nan'))
    )
  if 'shift_consistency' in per_image:
    per_shift = np.nanmean(per_image['shift_consistency'], axis=0)  # [len(SHIFTS)]
    summary['shift_consistency'] = float(per_shift.mean())
    summary['shift_consistency_per_shift'] = per_shift.tolist()
  for name in ('boundary_f1', 'checkerboard', 'checkerboard_logits', 'checkerboard_features'):
    if name in per_image:
      summary[name] = float(np.nanmean(per_image[name]))
  return summary
