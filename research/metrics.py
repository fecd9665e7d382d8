"""Evaluation metrics: region scores (mIoU & co.), boundary F1 and a checkerboard-artifact score.

Region scores come from one confusion matrix summed over the whole split, so every pixel weighs
the same whatever batch it came in. Boundary F1 is per image on the host (scipy distance
transforms). The checkerboard score measures the 2x2-periodic pattern that uneven overlap in
stride-2 transposed convolutions leaves in the output (Odena et al. 2016).
"""

import jax.numpy as jnp
import numpy as np
from scipy import ndimage

_FLAT_ENERGY = (
  1e-6  # per pixel and class: maps with less AC energy count as flat in checkerboard_score
)


def _check_num_classes(num_classes):
  if num_classes < 1:
    raise ValueError(f'num_classes must be >= 1, got {num_classes}')


def confusion_matrix(labels, preds, num_classes: int, valid=None) -> jnp.ndarray:
  """Counts (ground truth, prediction) pairs of the scored pixels of a batch; jit-able.

  labels, preds: int [B, H, W]. valid: bool [B] (per example) or broadcastable to [B, H, W]
  (e.g. [B, 1, 1]), or None. A pixel is scored when valid, its label lies in [0, num_classes)
  (so the ignore label 255 and padding are excluded) and its prediction does too (an argmax
  always does; an out-of-range prediction is dropped rather than counted in a wrong cell).
  Returns int32 [K, K], rows = ground truth, cols = prediction. int32 holds any single batch;
  accumulate over a split on the host in int64 (np.int64 sum) so large splits cannot overflow.
  """
  _check_num_classes(num_classes)
  labels = jnp.asarray(labels).astype(jnp.int32)  # [B, H, W]; uint8 would overflow labels * K
  preds = jnp.asarray(preds).astype(jnp.int32)  # [B, H, W]
  if labels.ndim != 3 or labels.shape != preds.shape:
    raise ValueError(
      f'labels and preds must both be [B, H, W], got {labels.shape} and {preds.shape}'
    )
  scored = (
    (labels >= 0) & (labels < num_classes) & (preds >= 0) & (preds < num_classes)
  )  # [B, H, W]
  if valid is not None:
    valid = jnp.asarray(valid, bool)
    try:
      scored = scored & jnp.broadcast_to(
        valid[:, None, None] if valid.ndim == 1 else valid, labels.shape
      )  # [B, H, W]
    except ValueError:
      raise ValueError(
        f'valid must be [B]={labels.shape[:1]} or broadcastable to '
        f'[B, H, W]={labels.shape}, got {valid.shape}'
      ) from None
  cell = jnp.where(scored, labels * num_classes + preds, 0)  # [B, H, W]
  counts = jnp.bincount(
    cell.ravel(), weights=scored.ravel().astype(jnp.int32), length=num_classes * num_classes
  )  # [K * K]
  return counts.reshape(num_classes, num_classes)


def segmentation_scores(confusion: np.ndarray, class_names=None) -> dict:
  """Region scores of a split from its summed confusion matrix [K, K] (rows = ground truth).

  iou_per_class[c] = TP / (TP + FP + FN); NaN for a class absent from both ground truth and
  prediction, and such classes are left out of 'miou' (a class only predicted scores 0 and
  counts). accuracy_per_class[c] = TP / ground-truth pixels of c (recall); NaN and left out of
  'mean_class_accuracy' for classes absent from the ground truth. 'pixel_accuracy' = trace / sum.
  """
  confusion = np.asarray(confusion, np.float64)  # [K, K]
  if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1] or confusion.shape[0] < 1:
    raise ValueError(f'confusion must be a square [K, K] matrix with K >= 1, got {confusion.shape}')
  if (confusion < 0).any():
    raise ValueError('confusion must hold non-negative counts')
  total = confusion.sum()
  if total == 0:
    raise ValueError('confusion matrix is empty: no pixel was scored')
  num_classes = confusion.shape[0]
  if class_names is None:
    class_names = [str(c) for c in range(num_classes)]
  elif len(class_names) != num_classes:
    raise ValueError(f'class_names must have K={num_classes} entries, got {len(class_names)}')
  tp = np.diag(confusion)  # [K]
  gt = confusion.sum(axis=1)  # [K]
  union = gt + confusion.sum(axis=0) - tp  # [K]
  iou = np.divide(tp, union, out=np.full(num_classes, np.nan), where=union > 0)  # [K]
  acc = np.divide(tp, gt, out=np.full(num_classes, np.nan), where=gt > 0)  # [K]
  return {
    'miou': float(np.nanmean(iou)),
    'pixel_accuracy': float(tp.sum() / total),
    'mean_class_accuracy': float(np.nanmean(acc)),
    'iou_per_class': iou.tolist(),
    'accuracy_per_class': acc.tolist(),
    'class_names': list(class_names),
    'num_pixels': int(total),
  }


def region_scores(confusion: np.ndarray, class_names) -> dict:
  """What a run reports per split in final.json: `segmentation_scores`' mIoU, pixel and mean
  class accuracy, and the IoU of each class by name."""
  scores = segmentation_scores(confusion, class_names)
  return {
    'miou': scores['miou'],
    'pixel_accuracy': scores['pixel_accuracy'],
    'mean_class_accuracy': scores['mean_class_accuracy'],
    'iou_per_class': dict(zip(scores['class_names'], scores['iou_per_class'])),
  }


def boundary_map(seg, scored=None) -> np.ndarray:
  """Boundary pixels of a label map: scored pixels with a scored 4-neighbour of another label.

  seg: int [..., H, W]; scored: bool [..., H, W] or None (all scored). Unscored pixels are
  transparent: never boundary and never the neighbour that makes one, so a prediction is judged
  only where it is scored. The image frame is not a boundary. Returns bool [..., H, W].
  """
  seg = np.asarray(seg)
  scored = np.ones(seg.shape, bool) if scored is None else np.asarray(scored, bool)
  if seg.ndim < 2 or scored.shape != seg.shape:
    raise ValueError(
      f'seg must be [..., H, W] and scored the same shape, got {seg.shape} and {scored.shape}'
    )
  edge_y = (
    (seg[..., 1:, :] != seg[..., :-1, :]) & scored[..., 1:, :] & scored[..., :-1, :]
  )  # [..., H-1, W]
  edge_x = (
    (seg[..., :, 1:] != seg[..., :, :-1]) & scored[..., :, 1:] & scored[..., :, :-1]
  )  # [..., H, W-1]
  boundary = np.zeros(seg.shape, bool)  # [..., H, W]
  boundary[..., 1:, :] |= edge_y
  boundary[..., :-1, :] |= edge_y
  boundary[..., :, 1:] |= edge_x
  boundary[..., :, :-1] |= edge_x
  return boundary


def boundary_tolerance(height: int, width: int) -> float:
  """Matching distance in pixels: 0.75% of the image diagonal, at least 1 px (Csurka et al.
  2013)."""
  return max(1.0, 0.0075 * float(np.hypot(height, width)))


def _class_f1(gt_edge, pred_edge, tol):
  """F1 of two boundary masks [H, W] matched within tol px; 0 if one is empty, NaN if both are."""
  if not (gt_edge.any() and pred_edge.any()):
    return np.nan if not (gt_edge.any() or pred_edge.any()) else 0.0
  box = ndimage.find_objects((gt_edge | pred_edge).astype(np.int8))[0]  # holds every pixel of both
  gt_edge, pred_edge = gt_edge[box], pred_edge[box]
  precision = np.mean(ndimage.distance_transform_edt(~gt_edge)[pred_edge] <= tol)
  recall = np.mean(ndimage.distance_transform_edt(~pred_edge)[gt_edge] <= tol)
  return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def boundary_f1(labels, preds, num_classes: int, valid=None, ignore_label: int = 255) -> np.ndarray:
  """Per-image boundary F1 (BF) as in SegNet (Badrinarayanan et al. 2017) after Csurka et al. 2013.

  Per image: pixels labelled ignore_label are removed (never boundary, never a neighbour that
  makes one, never matched; see boundary_map). For each class c present in the ground truth
  among the scored pixels, G_c / P_c are the ground-truth / predicted boundary pixels of c;
  precision = share of P_c within tol of G_c, recall = share of G_c within tol of P_c (Euclidean
  distance, tol = boundary_tolerance(H, W)), F1_c = 2PR / (P + R) (0 when P + R = 0, and 0 when
  exactly one of G_c, P_c is empty). A class with neither boundary is skipped. Classes only
  predicted are not scored on their own, following Csurka: their false contours still lower the
  precision of the ground-truth classes they cut into. BF = mean of F1_c over the scored classes.

  labels, preds: int [B, H, W]; valid: bool [B] or None. Returns float64 [B]: NaN for invalid
  images and for images with no scored class, so average over a split with np.nanmean.
  """
  _check_num_classes(num_classes)
  labels, preds = np.asarray(labels), np.asarray(preds)  # [B, H, W]
  if labels.ndim != 3 or labels.shape != preds.shape:
    raise ValueError(
      f'labels and preds must both be [B, H, W], got {labels.shape} and {preds.shape}'
    )
  valid = np.ones(labels.shape[0], bool) if valid is None else np.asarray(valid, bool)  # [B]
  if valid.shape != labels.shape[:1]:
    raise ValueError(f'valid must be [B]={labels.shape[:1]}, got {valid.shape}')
  labels, preds = labels[valid], preds[valid]  # [V, H, W]
  scored = labels != ignore_label  # [V, H, W]
  bad_labels = np.unique(labels[scored & ((labels < 0) | (labels >= num_classes))])
  bad_preds = np.unique(preds[(preds < 0) | (preds >= num_classes)])
  if bad_labels.size or bad_preds.size:
    raise ValueError(
      f'labels must lie in [0, {num_classes}) or equal ignore_label={ignore_label} '
      f'and preds in [0, {num_classes}); got labels {bad_labels.tolist()}, '
      f'preds {bad_preds.tolist()}'
    )
  tol = boundary_tolerance(*labels.shape[1:])
  gt_edges, pred_edges = boundary_map(labels, scored), boundary_map(preds, scored)  # [V, H, W]
  scores = np.full(valid.shape, np.nan)  # [B]
  for v, b in enumerate(np.flatnonzero(valid)):
    f1 = np.array(
      [
        _class_f1(gt_edges[v] & (labels[v] == c), pred_edges[v] & (preds[v] == c), tol)
        for c in np.unique(labels[v][scored[v]])
      ]
    )  # [classes in the ground truth]
    if (~np.isnan(f1)).any():
      scores[b] = np.nanmean(f1)
  return scores


def _band_weights(height: int, width: int) -> np.ndarray:
  """Spectral weights [4, H, W]: +1 on a Nyquist band N, -|N|/|R| on one of its reference bands R.

  Bands per FFT axis of length n, with |k| the circular frequency in [0, pi]: low |k| < pi/8,
  nyq pi - |k| < pi/8, ref pi/8 <= pi - |k| < 3pi/8 (integer bin arithmetic, so no rounding).
  Rows: (-1)^x, (-1)^y, then (-1)^(x+y) against its diagonal and its anti-diagonal reference.
  """

  def bands(n):  # bool [n] each
    j = np.minimum(np.arange(n), n - np.arange(n))  # |k| = 2 pi j / n
    to_nyquist = n - 2 * j  # (pi - |k|) * n / pi
    ref = (n <= 8 * to_nyquist) & (8 * to_nyquist < 3 * n)
    positive = np.arange(n) < n / 2  # sign of k
    return 16 * j < n, 8 * to_nyquist < n, ref & positive, ref & ~positive

  low_y, nyq_y, pos_y, neg_y = bands(height)
  low_x, nyq_x, pos_x, neg_x = bands(width)
  ref_y, ref_x = pos_y | neg_y, pos_x | neg_x
  pairs = [
    (np.outer(low_y, nyq_x), np.outer(low_y, ref_x)),
    (np.outer(nyq_y, low_x), np.outer(ref_y, low_x)),
    (np.outer(nyq_y, nyq_x), np.outer(pos_y, pos_x) | np.outer(neg_y, neg_x)),
    (np.outer(nyq_y, nyq_x), np.outer(pos_y, neg_x) | np.outer(neg_y, pos_x)),
  ]  # [H, W] each
  return np.stack([nyq - ref * (nyq.sum() / ref.sum()) for nyq, ref in pairs]).astype(np.float32)


def checkerboard_score(probs, valid=None) -> jnp.ndarray:
  """Share of a map's AC energy in 2x2-periodic patterns beyond an artifact-free baseline.

  Uneven overlap of a stride-2 transposed convolution gives the 4 pixel phases (y mod 2, x mod 2)
  different gains, i.e. adds slowly varying multiples of (-1)^x, (-1)^y, (-1)^(x+y): narrow
  spectral lines at the Nyquist points nu in {(pi, 0), (0, pi), (pi, pi)}. Edges, staircases,
  smooth ramps and interpolating upsamplers (whose kernels vanish at Nyquist) instead have a
  spectrum that is flat or rising when moving from nu towards DC, so the energy just beside nu
  is the artifact-free reference. With F the 2-D DFT over (H, W), per image:

      S(k)   = sum_c |F[p_c](k)|^2 / (H W)     (Parseval: sum_k S(k) = sum_{c,pixels} p^2)
      N_nu   = {k : |k_a - nu_a| < pi/8 on both axes a}   (artifact band; circular distance)
      R_nu   = {k : pi/8 <= pi - |k_a| < 3pi/8 on the axes where nu_a = pi,
                    |k_a| < pi/8 on the other}             (reference band beside N_nu, towards DC)
      E_nu   = sum_{N_nu} S - |N_nu| * mean_{R_nu} S
               (for nu = (pi, pi), R_nu splits into a diagonal and an anti-diagonal pair of
               boxes, one per edge direction whose spectral line crosses N_nu; the larger
               mean is used)
      score  = sum_nu max(E_nu, 0) / max(sum_{c,pixels} (p_c - mean p_c)^2, 1e-6 H W K)

  In [0, 1]: a pure checkerboard or stripe pattern (-1)^x scores 1, smooth or sharp clean maps
  ~0 (the floor treats maps with RMS deviation < 1e-3 as flat). Artifacts confined to thin bands
  are broadband across the line and only partly counted.

  probs: float [B, H, W, K] (any real maps work), H, W >= 8; valid: bool [B] or None.
  Returns float32 [B], NaN for invalid images. Jit-able (shapes are static).
  """
  probs = jnp.asarray(probs, jnp.float32)  # [B, H, W, K]
  if probs.ndim != 4 or min(probs.shape[1:3]) < 8:
    raise ValueError(f'probs must be [B, H, W, K] with H, W >= 8, got {probs.shape}')
  batch, height, width, num_classes = probs.shape
  if valid is not None:
    valid = jnp.asarray(valid, bool)
    if valid.shape != (batch,):
      raise ValueError(f'valid must be [B]=({batch},), got {valid.shape}')
  spectrum = jnp.fft.fft2(probs, axes=(1, 2))  # [B, H, W, K]
  energy = jnp.sum(jnp.abs(spectrum) ** 2, axis=-1) / (height * width)  # [B, H, W]
  excess = jnp.einsum('bhw,nhw->bn', energy, _band_weights(height, width))  # [B, 4]
  excess = jnp.concatenate(
    [excess[:, :2], excess[:, 2:].min(axis=1, keepdims=True)], axis=1
  )  # [B, 3]
  centred = probs - probs.mean(axis=(1, 2), keepdims=True)  # [B, H, W, K]
  ac_energy = jnp.sum(centred**2, axis=(1, 2, 3))  # [B]
  floor = _FLAT_ENERGY * height * width * num_classes
  score = jnp.maximum(excess, 0).sum(axis=-1) / jnp.maximum(ac_energy, floor)  # [B]
  return score if valid is None else jnp.where(valid, score, jnp.nan)
