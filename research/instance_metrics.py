"""Instance-mask metrics (issue 20), on the host in numpy: mask IoU, boundary F1 of pasted
masks, and COCO-style mask AP (Lin et al. 2014; pycocotools' COCOeval, iouType='segm').

* `mask_iou` -> float64 [P, G]: IoU of every predicted mask with every ground-truth mask.
* `boundary_f1` -> float64 [N]: research.metrics.boundary_f1 of paired binary masks.
* `match_image` -> one image's detections marked matched or not at each IoU threshold, and
  its ground-truth classes; `mask_ap` accumulates those over a dataset into AP.
* `stack_matches` -> those of a split as padded arrays; `weighted_mask_ap` -> the AP of the
  split with each image counted a given number of times (research.stats' bootstrap of AP).
* `instance_boxes` -> the tight box of each ground-truth instance, for a mask head on
  ground-truth boxes (research.roi_align's (y0, x0, y1, x1) convention).

AP as COCOeval computes it, without its area ranges, crowd regions and 100-detection cap:
per image and class, detections in decreasing score order each take the still unmatched
ground truth of that class with the highest IoU, if that IoU is >= the threshold (so each
ground truth is matched once); over the dataset, a class's detections in decreasing score
order give precision and recall, precision is made non-increasing from the right, and AP is
its mean at the 101 recall points 0, 0.01, ..., 1 (0 past the highest recall reached).
Classes without ground truth are left out; mask AP is the mean over classes and the ten
thresholds 0.50:0.05:0.95.
"""

import numpy as np

from research import metrics

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # as COCOeval: np.linspace(.5, .95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
CHUNK = 256  # weighted_mask_ap's versions at a time: arrays of [CHUNK, D, T]


def _masks(masks, name):
  """bool [N, H, W] from an array-like; raises naming `name` otherwise."""
  masks = np.asarray(masks)
  if masks.ndim != 3:
    raise ValueError(f'{name} must be [N, H, W] masks, got shape {masks.shape}')
  return masks.astype(bool)


def mask_iou(pred_masks, gt_masks) -> np.ndarray:
  """IoU of each predicted mask with each ground-truth mask: float64 [P, G].

  pred_masks: bool [P, H, W]; gt_masks: bool [G, H, W]. 0 where both masks are empty.
  """
  pred, gt = _masks(pred_masks, 'pred_masks'), _masks(gt_masks, 'gt_masks')
  if pred.shape[1:] != gt.shape[1:]:
    raise ValueError(f'pred_masks and gt_masks must share H, W, got {pred.shape} and {gt.shape}')
  pixels = int(np.prod(pred.shape[1:]))
  p = pred.reshape(len(pred), pixels).astype(np.float64)  # [P, H * W]
  g = gt.reshape(len(gt), pixels).astype(np.float64)  # [G, H * W]
  inter = p @ g.T  # [P, G]
  union = p.sum(1)[:, None] + g.sum(1)[None, :] - inter
  return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def boundary_f1(pred_masks, gt_masks) -> np.ndarray:
  """Boundary F1 of each predicted mask against its ground truth (pairs, same order).

  The masks as two-class label maps (research.metrics.boundary_f1: both sides of the mask's
  outline, matched within 0.75% of the image diagonal). pred_masks, gt_masks: bool
  [N, H, W]. Returns float64 [N].
  """
  pred, gt = _masks(pred_masks, 'pred_masks'), _masks(gt_masks, 'gt_masks')
  if pred.shape != gt.shape:
    raise ValueError(f'pred_masks and gt_masks must pair up, got {pred.shape} and {gt.shape}')
  return metrics.boundary_f1(gt.astype(np.int64), pred.astype(np.int64), num_classes=2)


def instance_boxes(instances) -> tuple[np.ndarray, np.ndarray]:
  """The tight box of each instance of an id map: `(ids int [N], boxes float32 [N, 4])`.

  instances: int [H, W], 0 = none. Boxes are (y0, x0, y1, x1) pixel edges: an instance on
  rows 3..5 spans y0 = 3, y1 = 6.
  """
  instances = np.asarray(instances)
  if instances.ndim != 2:
    raise ValueError(f'instances must be an [H, W] id map, got shape {instances.shape}')
  ids = np.unique(instances[instances > 0])
  boxes = np.zeros((len(ids), 4), np.float32)
  for n, i in enumerate(ids):
    ys, xs = np.nonzero(instances == i)
    boxes[n] = ys.min(), xs.min(), ys.max() + 1, xs.max() + 1
  return ids, boxes


def match_image(
  pred_masks, scores, pred_classes, gt_masks, gt_classes, thresholds=IOU_THRESHOLDS
) -> dict:
  """One image's detections, matched to its ground truth at each IoU threshold.

  pred_masks: bool [P, H, W] (pasted); scores: float [P]; pred_classes: int [P];
  gt_masks: bool [G, H, W]; gt_classes: int [G]. Returns {'scores' [P], 'classes' [P],
  'matched' bool [P, T], 'gt_classes' [G]}: what `mask_ap` needs from the image.
  """
  scores, pred_classes = np.asarray(scores, np.float64), np.asarray(pred_classes, np.int64)
  gt_classes, thresholds = np.asarray(gt_classes, np.int64), np.asarray(thresholds, np.float64)
  iou = mask_iou(pred_masks, gt_masks)  # [P, G]
  if scores.shape != pred_classes.shape or scores.shape != iou.shape[:1]:
    raise ValueError(
      f'scores and pred_classes must be [P]=({iou.shape[0]},), got {scores.shape} and '
      f'{pred_classes.shape}'
    )
  if gt_classes.shape != iou.shape[1:]:
    raise ValueError(f'gt_classes must be [G]=({iou.shape[1]},), got {gt_classes.shape}')
  matched = np.zeros((len(scores), len(thresholds)), bool)
  for t, threshold in enumerate(thresholds):
    taken = np.zeros(len(gt_classes), bool)
    for d in np.argsort(-scores, kind='mergesort'):
      best, match = min(threshold, 1 - 1e-10), -1  # COCOeval's evaluateImg
      for g in np.flatnonzero((gt_classes == pred_classes[d]) & ~taken):
        if iou[d, g] >= best:
          best, match = iou[d, g], g
      if match >= 0:
        taken[match] = matched[d, t] = True
  return {'scores': scores, 'classes': pred_classes, 'matched': matched, 'gt_classes': gt_classes}


def _class_ap(scores, matched, num_gt, weights=None):
  """AP [M, T] of one class from its detections' scores [D] and matches [D, T] over a dataset.

  weights [M, D]: how often each detection counts in each of M versions of the dataset (its
  image's multiplicity in a bootstrap resample, as if the image were repeated; 0 drops it),
  num_gt [M] the class's ground truth counted the same way; None: one version, once each.
  AP at threshold t is the mean over the recall points r of the non-increasing precision at
  the first detection whose recall reaches r, i.e. the sum over detections d of its precision
  times the number of recall points in (recall[d - 1], recall[d]] (recall[-1] below 0), over
  101. A detection's copies rank next to each other: the AP of the dataset with its images
  repeated wherever scores within an image differ (between tied detections of one image,
  whose order COCO leaves to the sort, a true repeat would interleave the copies).
  """
  weights = np.ones((1, len(scores))) if weights is None else np.asarray(weights, np.float64)
  num_gt = np.broadcast_to(np.asarray(num_gt, np.float64), weights.shape[:1])
  if not len(scores):
    return np.zeros((len(weights), matched.shape[1]))  # ground truth, no detection: recall 0
  order = np.argsort(-scores, kind='mergesort')
  w = weights[:, order]  # [M, D]
  tp = np.cumsum(w[:, :, None] * matched[order], axis=1)  # [M, D, T]
  counted = np.cumsum(w, axis=1)[:, :, None]  # tp + fp
  recall = tp / num_gt[:, None, None]
  precision = tp / np.maximum(counted, np.spacing(1))
  precision = np.flip(np.maximum.accumulate(np.flip(precision, 1), axis=1), 1)  # non-increasing
  covered = np.diff(_points_reached(recall), axis=1, prepend=0)  # first reached at detection d
  return (precision * covered).sum(1) / len(RECALL_POINTS)


def _points_reached(recall):
  """How many RECALL_POINTS are <= each recall in [0, 1] (searchsorted side='right', without
  its per-query binary search): the guess from the even spacing, corrected by comparison.
  Recall without ground truth (NaN, inf: the class is left out) counts as 0 and 1."""
  last = len(RECALL_POINTS) - 1
  recall = np.clip(np.nan_to_num(recall, nan=0.0, posinf=1.0), 0, 1)
  guess = np.floor(recall * last).astype(np.int64)
  guess -= RECALL_POINTS[guess] > recall  # at most one step off either way
  up = np.minimum(guess + 1, last)
  guess += (RECALL_POINTS[up] <= recall) & (guess < last)
  return guess + 1


def stack_matches(matches, num_classes: int, width: int | None = None) -> dict:
  """`match_image` of every image of a split as arrays, for paired bootstrap statistics.

  Returns {'det_scores' float64 [N, R], 'det_classes' int64 [N, R], 'det_matched' bool
  [N, R, T], 'det_valid' bool [N, R] (detections padded to R = width or the most in an
  image), 'gt_counts' int64 [N, K] (ground truth per class)}.
  """
  if not matches:
    raise ValueError('matches must hold at least one image')
  most = max(len(m['scores']) for m in matches)
  width = most if width is None else width
  if width < most:
    raise ValueError(f'width must be >= the most detections in an image ({most}), got {width}')
  num_thresholds = matches[0]['matched'].shape[1]
  out = {
    'det_scores': np.zeros((len(matches), width)),
    'det_classes': np.zeros((len(matches), width), np.int64),
    'det_matched': np.zeros((len(matches), width, num_thresholds), bool),
    'det_valid': np.zeros((len(matches), width), bool),
    'gt_counts': np.zeros((len(matches), num_classes), np.int64),
  }
  for n, m in enumerate(matches):
    p = len(m['scores'])
    out['det_scores'][n, :p], out['det_classes'][n, :p] = m['scores'], m['classes']
    out['det_matched'][n, :p], out['det_valid'][n, :p] = m['matched'], True
    out['gt_counts'][n] = np.bincount(m['gt_classes'], minlength=num_classes)
  return out


def weighted_mask_ap(stacked: dict, weights) -> np.ndarray:
  """Mask AP [M] of a split whose image n counts weights[m, n] times (a bootstrap resample's
  multiplicities; all ones: `mask_ap` of the split), from `stack_matches` arrays. A class
  counts where its weighted ground truth is > 0; NaN where no class has any."""
  weights = np.asarray(weights, np.float64)  # [M, N]
  valid = np.asarray(stacked['det_valid'], bool)
  if weights.ndim != 2 or weights.shape[1] != valid.shape[0]:
    raise ValueError(f'weights must be [M, N={valid.shape[0]}], got {weights.shape}')
  image = np.nonzero(valid)[0]  # [D]: the image of each detection
  scores, classes = stacked['det_scores'][valid], stacked['det_classes'][valid]
  matched = np.asarray(stacked['det_matched'], bool)[valid]  # [D, T]
  num_gt = weights @ stacked['gt_counts']  # [M, K]
  ap = np.zeros((len(weights), num_gt.shape[1]))  # [M, K], mean over thresholds
  for c in np.flatnonzero(np.asarray(stacked['gt_counts']).sum(0)):
    mine = classes == c
    for chunk in np.array_split(np.arange(len(weights)), -(-len(weights) // CHUNK)):
      w = weights[chunk][:, image[mine]]  # [chunk, D of class c]
      with np.errstate(divide='ignore', invalid='ignore'):  # no ground truth: not scored
        ap[chunk, c] = _class_ap(scores[mine], matched[mine], num_gt[chunk, c], w).mean(1)
  scored = num_gt > 0
  total = np.where(scored, ap, 0).sum(1)
  return np.divide(total, scored.sum(1), out=np.full(len(weights), np.nan), where=scored.any(1))


def mask_ap(matches, num_classes: int, thresholds=IOU_THRESHOLDS) -> dict:
  """COCO mask AP from `match_image` of every image of a dataset (same thresholds).

  Returns {'ap': mean over classes with ground truth and thresholds, 'ap50', 'ap75' (when
  0.5 and 0.75 are thresholds), 'per_class' float64 [K] (NaN: no ground truth),
  'per_threshold' float64 [T]}. No class with ground truth: NaN everywhere.
  """
  thresholds = np.asarray(thresholds, np.float64)
  per = np.full((num_classes, len(thresholds)), np.nan)  # [K, T]
  scores = np.concatenate([m['scores'] for m in matches]) if matches else np.zeros(0)
  classes = np.concatenate([m['classes'] for m in matches]) if matches else np.zeros(0, int)
  matched = (
    np.concatenate([m['matched'] for m in matches]) if matches else np.zeros((0, len(thresholds)))
  )
  if matched.shape[1:] != thresholds.shape:
    raise ValueError(f'matches were made at {matched.shape[1]} thresholds, not {len(thresholds)}')
  gt = np.concatenate([m['gt_classes'] for m in matches]) if matches else np.zeros(0, int)
  both = np.concatenate([gt, classes]).astype(np.int64)
  if ((both < 0) | (both >= num_classes)).any():
    raise ValueError(f'classes must lie in [0, {num_classes}), got {np.unique(both).tolist()}')
  num_gt = np.bincount(gt.astype(np.int64), minlength=num_classes)
  for c in np.flatnonzero(num_gt):
    mine = classes == c
    per[c] = _class_ap(scores[mine], matched[mine].astype(bool), num_gt[c])[0]
  scored = per[num_gt > 0]  # [K with ground truth, T]
  per_threshold = scored.mean(0) if len(scored) else np.full(len(thresholds), np.nan)
  summary = {
    'ap': float(per_threshold.mean()),
    'per_class': per.mean(1),
    'per_threshold': per_threshold,
  }
  for name, value in (('ap50', 0.5), ('ap75', 0.75)):
    hit = np.flatnonzero(np.isclose(thresholds, value))
    if hit.size:
      summary[name] = float(per_threshold[hit[0]])
  return summary
