"""Segmentation as clustering: k-means on pixel features, the unsupervised baseline.

No learning and no labels: pixels are grouped by grey level, colour, or colour and position
(SLIC-like superpixels, Achanta et al. 2012). Scoring the clusters with the networks' metrics
shows how much of a segmentation colour alone already gives; the superpixel metrics (boundary
recall, under-segmentation error) show whether clusters respect object boundaries at all.

The clustering (`features`, `kmeans`, `segment`) is jit-able JAX over a batch of images; the
scoring (`match_clusters_to_classes`, `boundary_recall`, `undersegmentation_error`) runs per
image on the host, as `research.metrics.boundary_f1` does.
"""

import functools

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage
from scipy import optimize

from research import metrics

SPACES = ('intensity', 'colour', 'colour_position')
_LUMA = (0.299, 0.587, 0.114)  # Rec. 601 grey level of RGB
_COLOUR_RANGE = 100.0  # RGB in [0, 1] measured on Achanta's CIELAB-like 0-100 scale


def features(images, space: str, compactness: float = 10.0, num_segments: int | None = None):
  """Per-pixel features `[B, H·W, D]` of images `[B, H, W, 3]` (RGB in [0, 1]), row-major.

  'intensity': grey level (Rec. 601 luma), D = 1. 'colour': RGB, D = 3.
  'colour_position': RGB, y, x (D = 5), position scaled so that the squared feature distance
  is SLIC's (Achanta et al. 2012) D² = d_c² + (d_s / S)² m², divided by 100²: d_c is
  the RGB distance on a 0-100 scale (the range of CIELAB's L in SLIC, so the compactness
  m = `compactness` keeps its usual range, ~1 to 40), d_s the distance in pixels and
  S = sqrt(H·W / num_segments) the grid interval, i.e. y, x are multiplied by m / (100 S).
  Larger m gives more compact, grid-like clusters; m -> 0 clusters by colour alone.
  `num_segments` (the number of clusters) is needed for 'colour_position' only.
  """
  images = jnp.asarray(images, jnp.float32)  # [B, H, W, 3]
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f'images must be [B, H, W, 3] RGB, got {images.shape}')
  if space not in SPACES:
    raise ValueError(f'Unknown feature space {space!r}; valid spaces: {", ".join(SPACES)}')
  batch, height, width, _ = images.shape
  colour = images.reshape(batch, height * width, 3)  # [B, N, 3]
  if space == 'intensity':
    return jnp.sum(colour * jnp.array(_LUMA), axis=-1, keepdims=True)  # [B, N, 1]
  if space == 'colour':
    return colour
  if num_segments is None or not 1 <= num_segments <= height * width:
    raise ValueError(
      f"'colour_position' needs num_segments in [1, H·W={height * width}], got {num_segments}"
    )
  grid_interval = np.sqrt(height * width / num_segments)  # S
  y, x = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing='ij')  # [H, W] each
  position = jnp.stack([y, x], -1).reshape(1, height * width, 2)  # [1, N, 2]
  position = position * (compactness / (_COLOUR_RANGE * grid_interval))
  return jnp.concatenate([colour, jnp.broadcast_to(position, (batch, height * width, 2))], -1)


def _nearest(x, centres):
  """Index `[N]` of the nearest centre `[k, D]` to each point `[N, D]`; ties to the lowest."""
  # |x - c|² without |x|², which is the same for every centre; full precision also on TPU/GPU.
  cross = jnp.dot(x, centres.T, precision=lax.Precision.HIGHEST)  # [N, k]
  return jnp.argmin(jnp.sum(centres**2, -1) - 2 * cross, axis=-1)


def _cluster_means(x, assignments, k, fallback):
  """Mean `[k, D]` of the points `[N, D]` of each cluster; `fallback [k, D]` for empty ones."""
  sums = jax.ops.segment_sum(x, assignments, num_segments=k)  # [k, D]
  counts = jax.ops.segment_sum(jnp.ones_like(assignments), assignments, num_segments=k)  # [k]
  return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1)[:, None], fallback)


def _kmeans_plusplus_one(x, k, key):
  """k-means++ seeding (Arthur & Vassilvitskii 2007) of one image's points `[N, D]` -> `[k, D]`."""
  keys = jax.random.split(key, k)
  first = x[jax.random.randint(keys[0], (), 0, x.shape[0])]  # [D]
  centres = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(first)  # [k, D]
  dist2 = jnp.sum((x - first) ** 2, -1)  # [N]: squared distance to the nearest centre so far

  def add_centre(i, state):
    centres, dist2 = state
    # P(point) ∝ dist2, so a point already chosen is never drawn again; uniform once every
    # point coincides with a centre (fewer distinct points than k).
    logits = jnp.where(jnp.any(dist2 > 0), jnp.log(dist2), 0.0)  # [N]
    new = x[jax.random.categorical(keys[i], logits)]  # [D]
    return centres.at[i].set(new), jnp.minimum(dist2, jnp.sum((x - new) ** 2, -1))

  return lax.fori_loop(1, k, add_centre, (centres, dist2))[0]


def check_kmeans_args(features, k, num_iters=0):
  if features.ndim != 3:
    raise ValueError(f'features must be [B, N, D], got {features.shape}')
  if not 1 <= k <= features.shape[1]:
    raise ValueError(f'k must be in [1, N={features.shape[1]}], got {k}')
  if num_iters < 0:
    raise ValueError(f'num_iters must be >= 0, got {num_iters}')


def kmeans_plusplus(features, k: int, key):
  """k-means++ initial centres `[B, k, D]` of features `[B, N, D]`: k distinct points if there are.

  Every image uses the same key, so an image's centres do not depend on the batch it comes in.
  """
  features = jnp.asarray(features, jnp.float32)  # [B, N, D]
  check_kmeans_args(features, k)
  return jax.vmap(_kmeans_plusplus_one, in_axes=(0, None, None))(features, k, key)


def kmeans(features, k: int, key, num_iters: int = 20, tol: float = 0.0):
  """Lloyd's k-means per image from k-means++ centres; jit-able with k and num_iters static.

  features: `[B, N, D]`. Iterates until num_iters iterations are done or no centre moved more
  than tol (Euclidean) in the last one. tol = 0 stops only at a fixed point, where further
  iterations would change nothing, so it saves time without changing the result; tol < 0
  always runs num_iters. An empty cluster keeps its previous centre (deterministic, no NaN).
  Every image uses the same key, so its result does not depend on the batch it comes in.

  Returns `(centres [B, k, D], assignments int32 [B, N])`, each point assigned to its nearest
  returned centre (ties to the lowest index).
  """
  features = jnp.asarray(features, jnp.float32)  # [B, N, D]
  check_kmeans_args(features, k, num_iters)

  def one_image(x):  # [N, D]
    def not_done(state):
      step, _, shift = state
      return (step < num_iters) & (shift > tol)

    def lloyd_step(state):
      step, centres, _ = state
      new = _cluster_means(x, _nearest(x, centres), k, fallback=centres)  # [k, D]
      return step + 1, new, jnp.max(jnp.linalg.norm(new - centres, axis=-1))

    init = (0, _kmeans_plusplus_one(x, k, key), jnp.array(jnp.inf, jnp.float32))
    centres = lax.while_loop(not_done, lloyd_step, init)[1]  # [k, D]
    return centres, _nearest(x, centres).astype(jnp.int32)

  return jax.vmap(one_image)(features)


def segment(
  images,
  k: int,
  space: str,
  key,
  compactness: float = 10.0,
  num_iters: int = 20,
  tol: float = 0.0,
) -> dict:
  """Clusters the pixels of images `[B, H, W, 3]` (RGB in [0, 1]) by k-means in `space`.

  Returns 'cluster_ids' int32 `[B, H, W]` and 'quantised' `[B, H, W, 3]`: every pixel replaced
  by the mean RGB of its cluster (the classic quantisation picture, at most k colours per
  image, whatever the space). See `features` for the spaces and compactness, `kmeans` for the
  rest. Jit-able with k, space and num_iters static.
  """
  feats = features(images, space, compactness, num_segments=k)  # [B, N, D]
  assignments = kmeans(feats, k, key, num_iters, tol)[1]  # [B, N]
  batch, height, width, _ = jnp.shape(images)
  pixels = jnp.asarray(images, jnp.float32).reshape(batch, height * width, 3)  # [B, N, 3]
  cluster_means = functools.partial(_cluster_means, k=k, fallback=0.0)  # empty: never gathered
  means = jax.vmap(cluster_means)(pixels, assignments)  # [B, k, 3]
  quantised = jnp.take_along_axis(means, assignments[..., None], axis=1)  # [B, N, 3]
  return {
    'cluster_ids': assignments.reshape(batch, height, width),
    'quantised': quantised.reshape(batch, height, width, 3),
  }


def _check_partitions(cluster_ids, labels):
  """Host arrays of two `[B, H, W]` maps; cluster ids must be non-negative integers."""
  cluster_ids, labels = np.asarray(cluster_ids), np.asarray(labels)
  if cluster_ids.ndim != 3 or cluster_ids.shape != labels.shape:
    raise ValueError(
      f'cluster_ids and labels must both be [B, H, W], got {cluster_ids.shape} and {labels.shape}'
    )
  if not np.issubdtype(cluster_ids.dtype, np.integer) or (cluster_ids < 0).any():
    raise ValueError('cluster_ids must be non-negative integers')
  return cluster_ids.astype(np.int64), labels.astype(np.int64)


def _overlaps(cluster_ids, labels, scored, num_labels):
  """Scored-pixel counts `[B, K, L]` of each (cluster, label) pair; K = max cluster id + 1."""
  batch = cluster_ids.shape[0]
  num_clusters = int(cluster_ids.max(initial=0)) + 1
  cell = (np.arange(batch)[:, None, None] * num_clusters + cluster_ids) * num_labels + labels
  counts = np.bincount(cell[scored], minlength=batch * num_clusters * num_labels)
  return counts.reshape(batch, num_clusters, num_labels)


def match_clusters_to_classes(cluster_ids, labels, num_classes: int, ignore_label: int = 255):
  """Class map `int32 [B, H, W]` naming each image's clusters after ground-truth classes.

  Per image, on the overlap counts O[cluster, class] of the pixels whose label is not
  ignore_label: the Hungarian algorithm (`scipy.optimize.linear_sum_assignment`, maximising
  the total overlap) gives min(K, C) clusters one class each, a different one per cluster,
  as in the evaluation of unsupervised segmentation (e.g. IIC, Ji et al. 2019). With more
  clusters than classes, each unmatched cluster takes its majority class (argmax of its
  row, the lowest class on ties, class 0 for a cluster with no scored pixel), so
  over-segmentation is not punished for splitting a class. The labels name the clusters, so
  the scores of this map are an oracle upper bound for the clustering as a segmenter. Feed
  it to `metrics.confusion_matrix` / `metrics.boundary_f1` as the predictions.

  cluster_ids: non-negative int `[B, H, W]` (K = max + 1 over the batch); labels: int
  `[B, H, W]` in [0, num_classes) or ignore_label.
  """
  cluster_ids, labels = _check_partitions(cluster_ids, labels)
  if num_classes < 1:
    raise ValueError(f'num_classes must be >= 1, got {num_classes}')
  scored = labels != ignore_label  # [B, H, W]
  bad = np.unique(labels[scored & ((labels < 0) | (labels >= num_classes))])
  if bad.size:
    raise ValueError(
      f'labels must lie in [0, {num_classes}) or equal ignore_label={ignore_label}, '
      f'got {bad.tolist()}'
    )
  overlap = _overlaps(cluster_ids, labels, scored, num_classes)  # [B, K, C]
  cluster_class = overlap.argmax(axis=2)  # [B, K]: majority class
  for image_overlap, image_class in zip(overlap, cluster_class):
    clusters, classes = optimize.linear_sum_assignment(image_overlap, maximize=True)
    image_class[clusters] = classes
  flat_ids = cluster_ids.reshape(len(cluster_ids), -1)  # [B, N]
  return np.take_along_axis(cluster_class, flat_ids, axis=1).reshape(labels.shape).astype(np.int32)


def boundary_recall(cluster_ids, labels, ignore_label: int = 255, tolerance=None) -> np.ndarray:
  """Share of ground-truth boundary pixels within `tolerance` px of a cluster boundary.

  The superpixel boundary recall of Achanta et al. 2012 (who allow 2 px on BSDS images).
  Boundaries are `metrics.boundary_map` of labels and of cluster ids, both with the
  ignore_label pixels transparent as in `metrics.boundary_f1`; distances are Euclidean and the
  default tolerance is `metrics.boundary_tolerance(H, W)` (0.75% of the diagonal, >= 1 px), as
  for boundary F1. Recall ignores how many cluster boundaries there are: pair it with the
  number of clusters or with `undersegmentation_error`.

  cluster_ids, labels: int `[B, H, W]`. Returns float64 `[B]`: NaN for an image without a
  ground-truth boundary, 0 for one without a cluster boundary.
  """
  cluster_ids, labels = _check_partitions(cluster_ids, labels)
  if tolerance is None:
    tolerance = metrics.boundary_tolerance(*labels.shape[1:])
  scored = labels != ignore_label  # [B, H, W]
  gt_edges = metrics.boundary_map(labels, scored)  # [B, H, W]
  cluster_edges = metrics.boundary_map(cluster_ids, scored)  # [B, H, W]
  recall = np.full(len(labels), np.nan)  # [B]
  for b, (gt_edge, cluster_edge) in enumerate(zip(gt_edges, cluster_edges)):
    if gt_edge.any() and cluster_edge.any():
      distance = ndimage.distance_transform_edt(~cluster_edge)  # [H, W]
      recall[b] = np.mean(distance[gt_edge] <= tolerance)
    elif gt_edge.any():  # no cluster boundary (and nothing for the distance transform)
      recall[b] = 0.0
  return recall


def undersegmentation_error(cluster_ids, labels, ignore_label: int = 255) -> np.ndarray:
  """Neubert & Protzel's (2012) under-segmentation error of the clusters of each image.

  UE = 1/N · Σ_segments S Σ_clusters P min(|P ∩ S|, |P \\ S|) over the N pixels whose label is
  not ignore_label (as written in Stutz et al. 2018, "Superpixels: an evaluation of the
  state-of-the-art"): each cluster leaking out of a segment is charged the smaller of its
  part inside and its part outside, so unlike Achanta et al.'s version there is no overlap
  threshold. 0 iff every cluster lies within one segment; at most 1. Segments are the label
  values as given (classes, or instances if labels hold instance ids); clusters need not be
  connected.

  cluster_ids, labels: non-negative int `[B, H, W]` (labels may also equal ignore_label).
  Returns float64 `[B]`, NaN for an image with no scored pixel.
  """
  cluster_ids, labels = _check_partitions(cluster_ids, labels)
  scored = labels != ignore_label  # [B, H, W]
  if (labels[scored] < 0).any():
    raise ValueError(f'labels must be non-negative or equal ignore_label={ignore_label}')
  num_labels = int(labels[scored].max(initial=0)) + 1
  overlap = _overlaps(cluster_ids, labels, scored, num_labels)  # [B, K, L]
  outside = overlap.sum(axis=2, keepdims=True) - overlap  # [B, K, L]: |P \ S|
  leak = np.minimum(overlap, outside).sum(axis=(1, 2))  # [B]
  num_pixels = scored.sum(axis=(1, 2))  # [B]
  return np.divide(leak, num_pixels, out=np.full(len(labels), np.nan), where=num_pixels > 0)
