"""research.roi_align against slow references written from the definitions: RoIAlign as
He et al. 2017 and torchvision's `roi_align(aligned=True)` define it (bilinear samples at
regular points of each bin, averaged), the paste-back as detectron2's `paste_masks_in_image`
(grid_sample, align_corners=False, zeros outside, threshold 0.5).

torchvision is not a dependency (CI installs torch alone), so the numpy loops are the
reference; its C++ `bilinear_interpolate` is transcribed in `_bilinear` below.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research import roi_align as ra


def _bilinear(image, y, x):
  """torchvision's roi_align bilinear_interpolate: image [H, W, C] at (y, x), pixel i at i."""
  height, width = image.shape[:2]
  if y < -1.0 or y > height or x < -1.0 or x > width:
    return np.zeros(image.shape[2])
  y, x = max(y, 0.0), max(x, 0.0)
  y_low, x_low = int(y), int(x)
  if y_low >= height - 1:
    y_high = y_low = height - 1
    y = float(y_low)
  else:
    y_high = y_low + 1
  if x_low >= width - 1:
    x_high = x_low = width - 1
    x = float(x_low)
  else:
    x_high = x_low + 1
  ly, lx = y - y_low, x - x_low
  hy, hx = 1 - ly, 1 - lx
  return (
    hy * hx * image[y_low, x_low]
    + hy * lx * image[y_low, x_high]
    + ly * hx * image[y_high, x_low]
    + ly * lx * image[y_high, x_high]
  )


def _roi_align_reference(features, boxes, image_index, output_size, sampling_ratio, scale):
  """Loops over boxes, bins and sample points: float64 [R, P, P, C]."""
  features = np.asarray(features, np.float64)
  out = np.zeros((len(boxes), output_size, output_size, features.shape[-1]))
  for r, (y0, x0, y1, x1) in enumerate(np.asarray(boxes, np.float64)):
    y0, x0, y1, x1 = (v * scale - 0.5 for v in (y0, x0, y1, x1))  # aligned=True
    bin_h, bin_w = (y1 - y0) / output_size, (x1 - x0) / output_size
    for ph in range(output_size):
      for pw in range(output_size):
        total = np.zeros(features.shape[-1])
        for iy in range(sampling_ratio):
          y = y0 + ph * bin_h + (iy + 0.5) * bin_h / sampling_ratio
          for ix in range(sampling_ratio):
            x = x0 + pw * bin_w + (ix + 0.5) * bin_w / sampling_ratio
            total += _bilinear(features[image_index[r]], y, x)
        out[r, ph, pw] = total / sampling_ratio**2
  return out


def _paste_reference(probs, boxes, height, width):
  """grid_sample(align_corners=False, padding zeros) of each mask at the pixel centres."""
  out = np.zeros((len(boxes), height, width))
  size = probs.shape[1]

  def tap(mask, i, j):
    return mask[i, j] if 0 <= i < size and 0 <= j < size else 0.0

  for r, (y0, x0, y1, x1) in enumerate(np.asarray(boxes, np.float64)):
    for i in range(height):
      v = (i + 0.5 - y0) / (y1 - y0) * size - 0.5
      for j in range(width):
        u = (j + 0.5 - x0) / (x1 - x0) * size - 0.5
        iv, iu = math.floor(v), math.floor(u)
        fv, fu = v - iv, u - iu
        out[r, i, j] = (
          (1 - fv) * (1 - fu) * tap(probs[r], iv, iu)
          + (1 - fv) * fu * tap(probs[r], iv, iu + 1)
          + fv * (1 - fu) * tap(probs[r], iv + 1, iu)
          + fv * fu * tap(probs[r], iv + 1, iu + 1)
        )
  return out


# (y0, x0, y1, x1) in input pixels: fractional, partly and wholly outside, tiny, degenerate.
BOXES = np.array(
  [
    [2.0, 3.0, 12.0, 9.0],
    [1.3, 0.7, 7.9, 13.2],
    [-3.5, -2.2, 5.1, 4.4],  # partly outside, top-left
    [10.2, 11.7, 19.4, 18.9],  # partly outside, bottom-right (image is 16 × 16)
    [6.4, 6.4, 6.9, 7.1],  # under a pixel
    [5.0, 5.0, 5.0, 5.0],  # zero size: every sample at one point
    [-9.0, -9.0, -3.0, -3.0],  # outside: zeros
  ],
  np.float32,
)


@pytest.mark.parametrize(
  'output_size, sampling_ratio, scale', [(7, 2, 1.0), (5, 3, 0.5), (4, 1, 0.25)]
)
def test_roi_align_matches_the_definition(output_size, sampling_ratio, scale):
  rng = np.random.default_rng(0)
  size = int(16 * scale)
  features = rng.normal(size=(2, size, size, 3)).astype(np.float32)
  index = np.array([0, 1, 0, 1, 1, 0, 1])
  got = ra.roi_align(features, BOXES, index, output_size, sampling_ratio, scale)
  want = _roi_align_reference(features, BOXES, index, output_size, sampling_ratio, scale)
  assert got.shape == (7, output_size, output_size, 3)
  np.testing.assert_allclose(got, want, atol=2e-5)
  assert not np.asarray(got[-1]).any()


def test_roi_align_of_a_constant_map_is_that_constant():
  features = np.full((1, 16, 16, 2), 3.25, np.float32)
  inside = BOXES[[0, 1, 4, 5]]  # boxes whose samples all fall on the map
  np.testing.assert_allclose(ra.roi_align(features, inside), 3.25, rtol=1e-6)


def test_a_whole_image_box_is_aligned_bilinear_resize():
  features = jax.random.normal(jax.random.key(1), (1, 12, 12, 2))
  whole = np.array([[0.0, 0.0, 12.0, 12.0]], np.float32)
  same = ra.roi_align(features, whole, output_size=12, sampling_ratio=1)
  np.testing.assert_allclose(same[0], features[0], atol=1e-6)  # samples at the pixel centres
  for size in (6, 24):  # half-pixel-centre resize without antialiasing
    got = ra.roi_align(features, whole, output_size=size, sampling_ratio=1)[0]
    want = jax.image.resize(features[0], (size, size, 2), 'linear', antialias=False)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_roi_align_is_differentiable_in_features_and_boxes():
  features = jax.random.normal(jax.random.key(2), (1, 10, 10, 2))
  boxes = jnp.array([[1.37, 2.21, 7.73, 8.13], [0.41, 0.63, 4.94, 5.32]])  # no sample on a kink
  cotangent = np.asarray(jax.random.normal(jax.random.key(3), (2, 4, 4, 2)))
  f = lambda feats, b: (ra.roi_align(feats, b, output_size=4) * cotangent).sum()
  grad_features, grad_boxes = jax.grad(f, argnums=(0, 1))(features, boxes)
  reference = lambda feats, b: (_roi_align_reference(feats, b, [0, 0], 4, 2, 1.0) * cotangent).sum()
  # Boxes: central differences of the float64 reference.
  step = np.eye(8).reshape(8, 2, 4) * 1e-4
  plain = np.asarray(boxes, np.float64)
  want = [(reference(features, plain + e) - reference(features, plain - e)) / 2e-4 for e in step]
  np.testing.assert_allclose(np.asarray(grad_boxes).ravel(), want, atol=1e-3)
  # Features: the output is linear in them, so the gradient is the reference at unit maps.
  basis = np.eye(200, dtype=np.float32).reshape(200, 1, 10, 10, 2)
  want = [reference(e, plain) for e in basis]
  np.testing.assert_allclose(np.asarray(grad_features).ravel(), want, atol=1e-5)


def test_paste_matches_the_definition():
  rng = np.random.default_rng(4)
  probs = rng.uniform(size=(4, 6, 6)).astype(np.float32)
  boxes = BOXES[[0, 1, 2, 3]]
  got = ra.paste_probabilities(probs, boxes, 16, 14)
  want = _paste_reference(probs, boxes, 16, 14)
  np.testing.assert_allclose(got, want, atol=1e-5)
  np.testing.assert_array_equal(ra.paste_masks(probs, boxes, 16, 14), want >= 0.5)


def test_a_full_mask_pastes_to_the_pixels_whose_centres_are_in_its_box():
  ones = np.ones((2, 28, 28), np.float32)
  boxes = np.array([[2.0, 3.0, 12.0, 9.0], [4.0, 1.0, 32.0, 29.0]], np.float32)
  got = np.asarray(ra.paste_masks(ones, boxes, 40, 40))
  want = np.zeros((2, 40, 40), bool)
  want[0, 2:12, 3:9] = want[1, 4:32, 1:29] = True
  np.testing.assert_array_equal(got, want)
  # A box of 28 px: one mask pixel per image pixel, pasted as it is.
  probs = np.random.default_rng(5).uniform(size=(1, 28, 28)).astype(np.float32)
  pasted = ra.paste_probabilities(probs, boxes[1:], 40, 40)
  np.testing.assert_allclose(pasted[0, 4:32, 1:29], probs[0], atol=1e-5)


def test_roi_align_then_paste_gives_the_object_back():
  yy, xx = np.mgrid[:48, :48] + 0.5
  disc = ((yy - 20) ** 2 + (xx - 27) ** 2 < 11**2).astype(np.float32)  # [H, W]
  box = np.array([[9.0, 16.0, 31.0, 38.0]], np.float32)
  target = ra.roi_align(disc[None, ..., None], box, output_size=28)[..., 0]  # [1, 28, 28]
  back = np.asarray(ra.paste_masks(target, box, 48, 48))[0]
  assert (back & (disc > 0)).sum() / (back | (disc > 0)).sum() > 0.97


def test_bad_arguments_say_what_is_valid():
  features = np.zeros((1, 8, 8, 1), np.float32)
  with pytest.raises(ValueError, match=r'features must be \[B, H, W, C\]'):
    ra.roi_align(features[0], BOXES)
  with pytest.raises(ValueError, match=r'boxes must be \[R, 4\] as \(y0, x0, y1, x1\)'):
    ra.roi_align(features, BOXES[:, :3])
  with pytest.raises(ValueError, match=r'image_index must be \[R\]=\(7,\)'):
    ra.roi_align(features, BOXES, np.zeros(3, np.int32))
  with pytest.raises(ValueError, match='output_size and sampling_ratio must be >= 1'):
    ra.roi_align(features, BOXES, sampling_ratio=0)
  with pytest.raises(ValueError, match=r'probs must be \[R, M, M\]'):
    ra.paste_masks(np.zeros((2, 4, 5)), BOXES[:2], 8, 8)
  with pytest.raises(ValueError, match=r'boxes must be \[2, 4\]'):
    ra.paste_masks(np.zeros((2, 4, 4)), BOXES, 8, 8)
