"""Panoptic-DeepLab's targets and post-processing (Cheng et al. 2020), on the host in numpy.

The network predicts semantic logits, an instance-centre heatmap [H, W] and per-pixel
offsets [H, W, 2] (dy, dx) from the pixel to its instance's centre. Coordinates are pixel
indices: pixel (i, j) sits at (i, j), as in the reference implementation (detectron2's
projects/Panoptic-DeepLab).

* `targets`: from ground truth, a Gaussian (sigma 8 px) at each thing instance's rounded
  mass centre (the maximum where they overlap, each cut to the (6 sigma + 3)-px square
  around its centre) and, on thing pixels, offsets = that rounded centre - pixel (as the
  reference, so that a pixel's offset points at its heatmap peak).
* `find_centres`: keypoints of a heatmap: values <= threshold dropped, then a 7 × 7
  max-pool NMS keeps local maxima, then the top_k highest.
* `group`: each thing pixel (semantic argmax a thing class) joins the nearest centre after
  adding its offset; each instance takes the majority semantic class of its pixels; stuff
  pixels keep their semantic class (stuff regions under `stuff_area` px become void).
"""

import numpy as np
from scipy import ndimage

SIGMA = 8.0  # px, the centre Gaussian
THRESHOLD = 0.1
NMS_KERNEL = 7
TOP_K = 200


def _grid(height, width):
  """Pixel indices (y, x), each float64 [H, W]."""
  return np.meshgrid(
    np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing='ij'
  )


def targets(instances, labels, thing_classes, sigma: float = SIGMA):
  """Centre heatmap and offset targets of one ground-truth panoptic map.

  instances: int [H, W] ids (0: none); labels: int [H, W] classes; thing_classes: the
  classes whose ids count. Returns (heatmap float32 [H, W] in [0, 1], offsets float32
  [H, W, 2] (dy, dx), zero off thing instances, and the rounded mass centres float64
  [N, 2] (y, x) of the instances in increasing id order).
  """
  instances, labels = np.asarray(instances), np.asarray(labels)
  if instances.ndim != 2 or instances.shape != labels.shape:
    raise ValueError(
      f'instances and labels must both be [H, W], got {instances.shape} and {labels.shape}'
    )
  if sigma <= 0:
    raise ValueError(f'sigma must be > 0 px, got {sigma}')
  yy, xx = _grid(*labels.shape)
  heatmap = np.zeros(labels.shape)
  offsets = np.zeros((*labels.shape, 2))
  thing = np.isin(labels, np.asarray(thing_classes)) & (instances > 0)
  centres = []
  reach = 3 * sigma + 1  # detectron2's Gaussian is a (6 sigma + 3)-px square
  for i in np.unique(instances[thing]):
    mask = thing & (instances == i)
    cy, cx = yy[mask].mean(), xx[mask].mean()
    ry, rx = np.round(cy), np.round(cx)  # half to even, as Python round in the reference
    centres.append((ry, rx))
    near = (np.abs(yy - ry) <= reach) & (np.abs(xx - rx) <= reach)
    gauss = np.exp(-((yy - ry) ** 2 + (xx - rx) ** 2) / (2 * sigma**2))
    heatmap = np.maximum(heatmap, np.where(near, gauss, 0))
    offsets[mask] = np.stack([ry - yy[mask], rx - xx[mask]], axis=-1)  # to the heatmap's peak
  centres = np.array(centres, np.float64).reshape(-1, 2)
  return heatmap.astype(np.float32), offsets.astype(np.float32), centres


def find_centres(heatmap, threshold: float = THRESHOLD, nms_kernel: int = NMS_KERNEL, top_k=TOP_K):
  """Instance centres of a predicted heatmap [H, W]: int64 [N, 2] (y, x), in row-major
  order. A centre is a pixel above threshold equal to the maximum of the nms_kernel ×
  nms_kernel window around it; of more than top_k, those at least the top_k-th highest
  value are kept (top_k, more only on ties; the reference keeps those strictly above it,
  one fewer)."""
  heatmap = np.asarray(heatmap, np.float64)
  if heatmap.ndim != 2:
    raise ValueError(f'heatmap must be [H, W], got shape {heatmap.shape}')
  if nms_kernel < 1 or nms_kernel % 2 == 0:
    raise ValueError(f'nms_kernel must be an odd number >= 1, got {nms_kernel}')
  kept = np.where(heatmap > threshold, heatmap, -1.0)
  pooled = ndimage.maximum_filter(kept, size=nms_kernel, mode='constant', cval=-np.inf)
  kept = np.where(kept == pooled, kept, -1.0)
  if top_k is not None and (kept > 0).sum() > top_k:
    cut = np.sort(kept.ravel())[-top_k]
    kept = np.where(kept >= cut, kept, -1.0)
  return np.argwhere(kept > 0)


def group(
  semantic,
  heatmap,
  offsets,
  thing_classes,
  threshold: float = THRESHOLD,
  nms_kernel: int = NMS_KERNEL,
  top_k=TOP_K,
  stuff_area: int = 0,
  void_label: int = 255,
):
  """Panoptic prediction of one image: `(labels int64 [H, W], instances int64 [H, W])`.

  semantic: int [H, W] argmax of the semantic logits; heatmap: float [H, W]; offsets: float
  [H, W, 2] (dy, dx). A thing pixel goes to the centre (find_centres) nearest to pixel +
  offset (the first of equally near ones); instance k (1, 2, ... in centre order, empty ones
  skipped) takes the most frequent semantic class of its pixels (the smallest of ties), and
  its id. Stuff pixels keep their class, id 0, unless their class covers fewer than
  stuff_area px (then void_label); thing pixels without any centre are void_label too.
  """
  semantic, offsets = np.asarray(semantic), np.asarray(offsets, np.float64)
  if semantic.ndim != 2 or offsets.shape != (*semantic.shape, 2):
    raise ValueError(
      f'semantic must be [H, W] and offsets [H, W, 2], got {semantic.shape} and {offsets.shape}'
    )
  if np.shape(heatmap) != semantic.shape:
    raise ValueError(f'heatmap must be [H, W]={semantic.shape}, got {np.shape(heatmap)}')
  centres = find_centres(heatmap, threshold, nms_kernel, top_k)  # [N, 2]
  thing = np.isin(semantic, np.asarray(thing_classes))
  labels = np.full(semantic.shape, void_label, np.int64)
  instances = np.zeros(semantic.shape, np.int64)
  if len(centres):
    yy, xx = _grid(*semantic.shape)
    target = np.stack([yy + offsets[..., 0], xx + offsets[..., 1]], -1)[thing]  # [M, 2]
    distance = np.linalg.norm(target[:, None] - centres[None].astype(np.float64), axis=-1)
    nearest = np.zeros(semantic.shape, np.int64)
    nearest[thing] = distance.argmin(axis=1) + 1
    number = 0
    for k in range(1, len(centres) + 1):
      mask = nearest == k
      if not mask.any():
        continue
      number += 1
      labels[mask] = np.bincount(semantic[mask]).argmax()
      instances[mask] = number
  for c in np.unique(semantic[~thing]):
    mask = (semantic == c) & ~thing
    if mask.sum() >= stuff_area:
      labels[mask] = c
  return labels, instances
