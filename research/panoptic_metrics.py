"""Panoptic quality PQ = SQ × RQ (Kirillov et al. 2019, "Panoptic Segmentation"), on the host.

A panoptic map is two int maps [H, W]: the class of each pixel and an instance id (used for
thing classes only). A segment is the set of pixels of one (class, id) for a thing class and
all pixels of one class for a stuff class. Ground-truth pixels whose class is the ignore
label (or outside [0, K)), and thing pixels with id 0, are void; predicted pixels likewise
belong to no segment.

Per image and class, a predicted and a ground-truth segment match when their IoU > 0.5 (so
a segment matches at most one other: Kirillov et al., Theorem 1). The IoU leaves out the
predicted segment's void pixels: |p ∩ g| / (|p| - |p ∩ void| + |g| - |p ∩ g|). Matches are
TP, unmatched ground truth FN, unmatched predictions FP, except a prediction more than half
of whose pixels are void, which is not counted (as panopticapi's pq_compute).

Over a dataset: TP, FP, FN and the sum of matched IoUs are summed per class (`pq_stats` per
image, then their sum), never averaged per image; then per class PQ = ΣIoU / (TP + FP/2 +
FN/2), SQ = ΣIoU / TP (0 without TP), RQ = TP / (TP + FP/2 + FN/2), and PQ, SQ, RQ are
means over the classes with TP + FP + FN > 0, overall and over things and stuff separately
(`pq_summary`).
"""

import numpy as np

MATCH_IOU = 0.5
VOID_FRACTION = 0.5  # unmatched predictions more void than this are not false positives


def _check(maps, num_classes, thing_classes):
  """The four maps as int64 [B, H, W]; raises naming what is wrong."""
  if num_classes < 1:
    raise ValueError(f'num_classes must be >= 1, got {num_classes}')
  maps = [np.asarray(m) for m in maps]
  if maps[0].ndim != 3 or any(m.shape != maps[0].shape for m in maps):
    shapes = ', '.join(str(m.shape) for m in maps)
    raise ValueError(
      f'labels, instances, pred_labels, pred_instances must all be [B, H, W], got {shapes}'
    )
  things = np.asarray(thing_classes, np.int64)
  if things.ndim != 1 or ((things < 0) | (things >= num_classes)).any():
    raise ValueError(f'thing_classes must be class ids in [0, {num_classes}), got {thing_classes}')
  return [m.astype(np.int64) for m in maps], things


def _segments(labels, instances, num_classes, is_thing):
  """Segment index per pixel (-1: void) and the class of each segment, for one image."""
  known = (labels >= 0) & (labels < num_classes)
  thing = known & is_thing[np.clip(labels, 0, num_classes - 1)]
  valid = known & ~(thing & (instances <= 0))
  key = np.where(thing, instances, 0)
  pairs = np.stack([labels[valid], key[valid]], axis=1)  # [N, 2] (class, id)
  if not len(pairs):
    return np.full(labels.shape, -1), np.zeros(0, np.int64)
  unique, index = np.unique(pairs, axis=0, return_inverse=True)
  segment = np.full(labels.shape, -1)
  segment[valid] = index.ravel()
  return segment, unique[:, 0]


def _image_stats(labels, instances, pred_labels, pred_instances, num_classes, is_thing):
  """TP, FP, FN int64 [K] and matched IoU sum float64 [K] of one image."""
  gt, gt_class = _segments(labels, instances, num_classes, is_thing)
  pred, pred_class = _segments(pred_labels, pred_instances, num_classes, is_thing)
  void = gt < 0  # [H, W]: ignore label, unknown class, thing without id
  num_gt, num_pred = len(gt_class), len(pred_class)
  pred_area = np.bincount(pred[pred >= 0], minlength=num_pred)
  pred_void = np.bincount(pred[(pred >= 0) & void], minlength=num_pred)
  gt_area = np.bincount(gt[gt >= 0], minlength=num_gt)
  both = (gt >= 0) & (pred >= 0)
  overlap = np.bincount(gt[both] * num_pred + pred[both], minlength=num_gt * num_pred).reshape(
    num_gt, num_pred
  )  # [G, P]
  union = gt_area[:, None] + (pred_area - pred_void)[None, :] - overlap
  iou = np.divide(overlap, union, out=np.zeros(overlap.shape), where=union > 0)
  match = (iou > MATCH_IOU) & (gt_class[:, None] == pred_class[None, :])  # [G, P]
  stats = {name: np.zeros(num_classes, np.int64) for name in ('tp', 'fp', 'fn')}
  stats['iou_sum'] = np.zeros(num_classes)
  g, p = np.nonzero(match)
  np.add.at(stats['tp'], gt_class[g], 1)
  np.add.at(stats['iou_sum'], gt_class[g], iou[g, p])
  np.add.at(stats['fn'], gt_class[~match.any(1)], 1)
  counted = ~match.any(0) & (pred_void <= VOID_FRACTION * pred_area)
  np.add.at(stats['fp'], pred_class[counted], 1)
  return stats


def pq_stats(
  labels, instances, pred_labels, pred_instances, num_classes: int, thing_classes
) -> dict:
  """Per image and class: 'tp', 'fp', 'fn' int64 [B, K] and 'iou_sum' float64 [B, K].

  labels, pred_labels: int [B, H, W] classes (ground-truth void: the ignore label, or any
  value outside [0, K)); instances, pred_instances: int [B, H, W] ids, read only on thing
  classes (0 there: void in the ground truth, no segment in the prediction). Sum over a
  dataset's images, then `pq_summary`.
  """
  maps, things = _check(
    (labels, instances, pred_labels, pred_instances), num_classes, thing_classes
  )
  is_thing = np.isin(np.arange(num_classes), things)
  per_image = [_image_stats(*image, num_classes, is_thing) for image in zip(*maps)]
  if not per_image:  # a process's share of a padded last batch can be empty
    return {
      name: np.zeros((0, num_classes), np.float64 if name == 'iou_sum' else np.int64)
      for name in ('tp', 'fp', 'fn', 'iou_sum')
    }
  return {name: np.stack([s[name] for s in per_image]) for name in ('tp', 'fp', 'fn', 'iou_sum')}


def pq_summary(stats: dict, thing_classes, stuff_classes) -> dict:
  """PQ, SQ, RQ from stats summed over a dataset ('tp', 'fp', 'fn', 'iou_sum', each [K]).

  Returns per class 'pq_per_class', 'sq_per_class', 'rq_per_class' float64 [K] (NaN for
  classes with no segment anywhere), their means over the classes that have one ('pq', 'sq',
  'rq') and over those of thing_classes and stuff_classes ('pq_things', ..., 'rq_stuff';
  NaN when none has one). Fractions, not %.
  """
  tp, fp, fn = (np.asarray(stats[n], np.float64) for n in ('tp', 'fp', 'fn'))
  iou_sum = np.asarray(stats['iou_sum'], np.float64)
  if tp.ndim != 1 or not tp.shape == fp.shape == fn.shape == iou_sum.shape:
    raise ValueError(
      f'stats must be summed over images to [K] each, got tp {tp.shape}, fp {fp.shape}, '
      f'fn {fn.shape}, iou_sum {iou_sum.shape}'
    )
  present = tp + fp + fn > 0
  denominator = np.where(present, tp + fp / 2 + fn / 2, 1)
  per_class = {
    'pq': np.where(present, iou_sum / denominator, np.nan),
    'sq': np.where(present, np.divide(iou_sum, tp, out=np.zeros_like(tp), where=tp > 0), np.nan),
    'rq': np.where(present, tp / denominator, np.nan),
  }
  summary = {f'{n}_per_class': v for n, v in per_class.items()}
  for part, classes in (('', None), ('_things', thing_classes), ('_stuff', stuff_classes)):
    chosen = present.copy()
    if classes is not None:
      chosen &= np.isin(np.arange(len(tp)), np.asarray(classes, np.int64))
    for n, v in per_class.items():
      summary[n + part] = float(v[chosen].mean()) if chosen.any() else float('nan')
  return summary


def panoptic_quality(stats, classes=None) -> np.ndarray:
  """PQ of summed stats, vectorised for resampling: stats float [..., 4, K] ('tp', 'fp',
  'fn', 'iou_sum' stacked on axis -2, each summed over images) -> [...]: the mean of the
  per-class PQ over the classes with a segment (and among `classes`, if given), as
  pq_summary's 'pq' (or 'pq_things' with classes = thing classes); NaN where none has one."""
  stats = np.asarray(stats, np.float64)
  tp, fp, fn, iou_sum = (stats[..., i, :] for i in range(4))
  present = tp + fp + fn > 0
  if classes is not None:
    present &= np.isin(np.arange(stats.shape[-1]), np.asarray(classes, np.int64))
  per_class = iou_sum / np.where(present, tp + fp / 2 + fn / 2, 1)
  count = present.sum(-1)
  total = np.where(present, per_class, 0).sum(-1)
  return np.divide(total, count, out=np.full(count.shape, np.nan), where=count > 0)
