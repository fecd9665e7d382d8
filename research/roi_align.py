"""RoIAlign and mask paste-back (Mask R-CNN, He et al. 2017), in JAX: jitted, differentiable.

Boxes are float [R, 4] as (y0, x0, y1, x1) in input-image pixel coordinates, where pixel
(i, j) covers [i, i + 1) × [j, j + 1) (its centre at i + 0.5; research.data.procedural's
pixel_grid), so a box around pixels 3..5 is (3, ., 6, .). That is torchvision's
`roi_align(..., aligned=True)` with boxes (x0, y0, x1, y1) reordered.

RoIAlign (`roi_align`): the box, scaled to the feature map by `spatial_scale` (1 / stride),
is cut into P × P bins; each bin averages bilinear samples of the feature map at
sampling_ratio × sampling_ratio regular points, the centres of a sub-grid of the bin.
Bilinear sampling follows torchvision's `bilinear_interpolate`: a point more than one
pixel outside the map samples 0; a point within one pixel of the map is clamped to its
edge. Both the sample grid and the bilinear weights factor into a y part and an x part,
so a box's output is `Ay @ F @ Ax^T` with Ay [P, H] and Ax [P, W] holding the bin-averaged
bilinear weights: one dense contraction, exact, differentiable in features and boxes.

Paste-back (`paste_probabilities`, `paste_masks`): detectron2's `paste_masks_in_image`,
the box's [M, M] mask probabilities resampled bilinearly (grid_sample, align_corners=False,
zeros outside) at each image pixel centre, thresholded at 0.5.
"""

import functools

import jax
import jax.numpy as jnp

ROI_SIZE = 14  # RoIAlign output of Mask R-CNN's mask head
MASK_SIZE = 28  # its mask logits per class
SAMPLING_RATIO = 2
MASK_THRESHOLD = 0.5


def _check_boxes(boxes, leading=None):
  """boxes float [R, 4]; raises naming the shape otherwise."""
  if boxes.ndim != 2 or boxes.shape[1] != 4 or (leading is not None and boxes.shape[0] != leading):
    want = f'[{leading}, 4]' if leading is not None else '[R, 4]'
    raise ValueError(f'boxes must be {want} as (y0, x0, y1, x1), got shape {boxes.shape}')


def _sample_weights(coords, size):
  """Bilinear weights of sample coordinates (float [...], in feature pixels with pixel i
  centred at i) over an axis of `size` pixels: float [..., size], as torchvision samples
  (0 beyond one pixel outside, clamped to the edge within it)."""
  inside = (coords >= -1.0) & (coords <= size)
  c = jnp.clip(coords, 0.0, size - 1.0)
  low = jnp.floor(c)
  frac = c - low
  low = low.astype(jnp.int32)
  high = jnp.minimum(low + 1, size - 1)
  taps = jnp.arange(size)
  weights = (1 - frac)[..., None] * (taps == low[..., None]) + frac[..., None] * (
    taps == high[..., None]
  )
  return jnp.where(inside[..., None], weights, 0.0)


def _bin_weights(start, end, size, output_size, sampling_ratio):
  """Bin-averaged bilinear weights along one axis: float [R, P, size] for boxes spanning
  [start, end] (float [R], feature pixel coordinates centred at integers)."""
  bin_size = (end - start) / output_size  # [R]
  offsets = (
    jnp.arange(output_size)[:, None] + (jnp.arange(sampling_ratio)[None, :] + 0.5) / sampling_ratio
  )  # [P, S] in bins
  coords = start[:, None, None] + offsets[None] * bin_size[:, None, None]  # [R, P, S]
  return _sample_weights(coords, size).mean(axis=2)  # [R, P, size]


@functools.partial(jax.jit, static_argnames=('output_size', 'sampling_ratio'))
def _roi_align(features, boxes, image_index, spatial_scale, output_size, sampling_ratio):
  _, height, width, _ = features.shape
  scaled = boxes * spatial_scale - 0.5  # aligned=True: pixel centres at integers
  ay = _bin_weights(scaled[:, 0], scaled[:, 2], height, output_size, sampling_ratio)
  ax = _bin_weights(scaled[:, 1], scaled[:, 3], width, output_size, sampling_ratio)
  rows = jnp.einsum('rph,rhwc->rpwc', ay.astype(features.dtype), features[image_index])
  return jnp.einsum('rpwc,rqw->rpqc', rows, ax.astype(features.dtype))


def roi_align(
  features,
  boxes,
  image_index=None,
  output_size: int = ROI_SIZE,
  sampling_ratio: int = SAMPLING_RATIO,
  spatial_scale: float = 1.0,
):
  """Features of each box on a regular P × P grid: what Mask R-CNN's mask head sees.

  features: float [B, H, W, C] (a backbone map at 1 / stride of the input); boxes: float
  [R, 4] (y0, x0, y1, x1) in input pixels; image_index: int [R], the image of each box
  (None: all in image 0); spatial_scale: feature pixels per input pixel (1 / stride).
  Returns float [R, P, P, C], as torchvision.ops.roi_align(aligned=True).
  """
  features, boxes = jnp.asarray(features), jnp.asarray(boxes, jnp.float32)
  if features.ndim != 4:
    raise ValueError(f'features must be [B, H, W, C], got shape {features.shape}')
  _check_boxes(boxes)
  if output_size < 1 or sampling_ratio < 1:
    raise ValueError(
      f'output_size and sampling_ratio must be >= 1, got {output_size} and {sampling_ratio}'
    )
  if image_index is None:
    image_index = jnp.zeros(boxes.shape[0], jnp.int32)
  image_index = jnp.asarray(image_index, jnp.int32)
  if image_index.shape != boxes.shape[:1]:
    raise ValueError(f'image_index must be [R]={boxes.shape[:1]}, got {image_index.shape}')
  return _roi_align(features, boxes, image_index, spatial_scale, output_size, sampling_ratio)


def _paste_weights(start, end, size, mask_size):
  """Weights [R, size, M] of mask pixels at image pixel centres along one axis
  (grid_sample with align_corners=False and zero padding) for boxes [start, end] (float [R])."""
  centres = jnp.arange(size) + 0.5  # [size]
  u = (centres[None] - start[:, None]) / (end - start)[:, None] * mask_size - 0.5  # [R, size]
  low = jnp.floor(u)
  frac = u - low
  low = low.astype(jnp.int32)
  taps = jnp.arange(mask_size)  # a tap outside [0, M) is the zero padding: no column matches
  return (1 - frac)[..., None] * (taps == low[..., None]) + frac[..., None] * (
    taps == low[..., None] + 1
  )


@functools.partial(jax.jit, static_argnames=('height', 'width'))
def _paste(probs, boxes, height, width):
  mask_size = probs.shape[1]
  wy = _paste_weights(boxes[:, 0], boxes[:, 2], height, mask_size)  # [R, H, M]
  wx = _paste_weights(boxes[:, 1], boxes[:, 3], width, mask_size)  # [R, W, M]
  return jnp.einsum('rhm,rmn,rwn->rhw', wy, probs, wx)


def paste_probabilities(probs, boxes, height: int, width: int):
  """Mask probabilities of each box resampled into the whole image (0 outside the box).

  probs: float [R, M, M] (sigmoid of the mask head's logits of each box's class); boxes:
  float [R, 4] (y0, x0, y1, x1) in image pixels; height, width: the image's size.
  Returns float [R, H, W].
  """
  probs, boxes = jnp.asarray(probs, jnp.float32), jnp.asarray(boxes, jnp.float32)
  if probs.ndim != 3 or probs.shape[1] != probs.shape[2]:
    raise ValueError(f'probs must be [R, M, M], got shape {probs.shape}')
  _check_boxes(boxes, probs.shape[0])
  if height < 1 or width < 1:
    raise ValueError(f'height and width must be >= 1, got {height} and {width}')
  return _paste(probs, boxes, height, width)


def paste_masks(probs, boxes, height: int, width: int, threshold: float = MASK_THRESHOLD):
  """Binary full-resolution masks of the boxes, as Mask R-CNN outputs them: bool [R, H, W],
  paste_probabilities(...) >= threshold."""
  return paste_probabilities(probs, boxes, height, width) >= threshold
