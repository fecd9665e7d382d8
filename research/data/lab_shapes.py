"""lab_shapes: a procedural segmentation dataset where the upsampler matters.

Classes (mask value = class id):

  0 background  textured: a colour plus a few coloured gratings.
  1 blob        filled smooth blobs (wobbly ellipses), 5–18 px radius at 64 px.
  2 polygon     filled polygons with 3–6 straight edges and corners, same sizes.
  3 line        straight segments and gentle curves, 1–2 px wide.
  4 ring        circle outlines, 1–2 px wide, 3–12 px radius at 64 px.
  5 speck       discs and squares of a few pixels (2–4 px across).

Sizes of blobs, polygons, lines and rings scale with the resolution; line and ring
widths and speck sizes do not, so thin and small things stay 1–4 px at every
resolution, which is where upsamplers differ. Every object's colour is drawn at a
fixed distance from the background colour, from one range shared by all classes,
and carries its own grating texture; with the background texture and pixel noise,
a pixel's colour says nothing about its class: shape, scale and thickness do.
Objects are drawn in a random order, so they touch and occlude each other. Two
objects of the same thin class never touch (a resampled placement, or none), so
each thin class stays at most 2 px wide everywhere: a 3×3 erosion removes it.
Labels are rasterised with numpy at the output resolution, never resampled.
"""

import math

import numpy as np
from scipy import ndimage

from research.data import procedural

CLASS_NAMES = ('background', 'blob', 'polygon', 'line', 'ring', 'speck')
BLOB, POLYGON, LINE, RING, SPECK = range(1, 6)
THIN_CLASSES = (LINE, RING)
_THIN_TRIES = 5  # placements tried before a thin object is left out


def _window(size, y0, y1, x0, x1):
  """Pixel slices covering the float box [y0, y1] × [x0, x1] with a 2 px margin (room
  for `_touches`' dilation), clipped to the canvas."""

  def axis(lo, hi):
    return slice(min(max(math.floor(lo) - 2, 0), size), min(max(math.ceil(hi) + 2, 0), size))

  return axis(y0, y1), axis(x0, x1)


def _blob(rng, scale):
  """A wobbly ellipse: `(box, inside(yy, xx))`."""
  cy, cx = rng.uniform(0, 64 * scale, size=2)
  r0 = rng.uniform(5, 14) * scale
  aspect = rng.uniform(0.6, 1.0)
  theta = rng.uniform(0, np.pi)
  wobble = rng.uniform(0, 0.15, size=2)  # amplitudes of the 2nd and 3rd harmonics
  phases = rng.uniform(0, 2 * np.pi, size=2)
  reach = r0 * (1 + wobble.sum())

  def inside(yy, xx):
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = (-dx * np.sin(theta) + dy * np.cos(theta)) / aspect
    phi = np.arctan2(v, u)
    radius = r0 * (
      1 + wobble[0] * np.cos(2 * phi + phases[0]) + wobble[1] * np.cos(3 * phi + phases[1])
    )
    return u * u + v * v < radius * radius

  return (cy - reach, cy + reach, cx - reach, cx + reach), inside


def _polygon(rng, scale):
  """A star-shaped polygon with 3–6 vertices: `(box, inside(yy, xx))`, even-odd rule."""
  cy, cx = rng.uniform(0, 64 * scale, size=2)
  n = rng.integers(3, 7)
  jitter = rng.uniform(-0.3, 0.3, size=n)  # of the even angular spacing
  angles = rng.uniform(0, 2 * np.pi) + (np.arange(n) + jitter) * 2 * np.pi / n
  radii = rng.uniform(5, 14) * scale * rng.uniform(0.75, 1.0, size=n)
  vy, vx = cy + radii * np.sin(angles), cx + radii * np.cos(angles)  # [n] each
  wy, wx = np.roll(vy, -1), np.roll(vx, -1)  # edge ends

  def inside(yy, xx):
    py, px = yy[None], xx[None]  # [1, h, w] against edges [n, 1, 1]
    ay, ax, by, bx = (a[:, None, None] for a in (vy, vx, wy, wx))
    spans = (ay > py) != (by > py)
    with np.errstate(divide='ignore', invalid='ignore'):
      x_cross = ax + (py - ay) * (bx - ax) / (by - ay)
    return ((spans & (px < x_cross)).sum(axis=0) % 2).astype(bool)

  return (vy.min(), vy.max(), vx.min(), vx.max()), inside


def _line(rng, scale):
  """A 1–2 px wide straight segment or quadratic Bézier curve: `(box, inside(yy, xx))`.

  The control point sits at most 0.3 length off the chord, so the curvature radius
  stays above the length: the band never folds onto itself.
  """
  p0 = rng.uniform(0, 64 * scale, size=2)
  length = rng.uniform(12, 40) * scale
  theta = rng.uniform(0, 2 * np.pi)
  chord = length * np.array([np.sin(theta), np.cos(theta)])
  normal = np.array([chord[1], -chord[0]]) / length
  bend = rng.uniform(-0.3, 0.3) * length if rng.random() < 0.6 else 0.0
  p1 = p0 + chord / 2 + bend * normal
  p2 = p0 + chord
  t = np.linspace(0, 1, 13)[:, None]
  points = (1 - t) ** 2 * p0 + 2 * t * (1 - t) * p1 + t**2 * p2  # [13, 2] (y, x)
  half_width = rng.uniform(1.1, 2.0) / 2
  a, b = points[:-1, :, None, None], points[1:, :, None, None]  # [12, 2, 1, 1]

  def inside(yy, xx):
    p = np.stack([yy, xx])[None]  # [1, 2, h, w]
    ab, ap = b - a, p - a
    along = np.clip((ap * ab).sum(1) / (ab * ab).sum(1), 0, 1)  # [12, h, w]
    d2 = ((ap - along[:, None] * ab) ** 2).sum(1)
    return d2.min(axis=0) < half_width**2

  lo, hi = points.min(0) - 1, points.max(0) + 1
  return (lo[0], hi[0], lo[1], hi[1]), inside


def _ring(rng, scale):
  """A 1–2 px wide circle outline: `(box, inside(yy, xx))`."""
  cy, cx = rng.uniform(0, 64 * scale, size=2)
  radius = rng.uniform(3, 12) * scale
  half_width = rng.uniform(1.1, 2.0) / 2

  def inside(yy, xx):
    return np.abs(np.hypot(yy - cy, xx - cx) - radius) < half_width

  reach = radius + 1
  return (cy - reach, cy + reach, cx - reach, cx + reach), inside


def _speck(rng, scale):
  """A disc or square 2–4 px across (size independent of resolution): `(box, inside)`."""
  cy, cx = rng.uniform(0, 64 * scale, size=2)
  radius = rng.uniform(0.8, 2.0)
  square = rng.random() < 0.5

  def inside(yy, xx):
    dy, dx = np.abs(yy - cy), np.abs(xx - cx)
    return np.maximum(dy, dx) < radius if square else dy * dy + dx * dx < radius * radius

  return (cy - radius, cy + radius, cx - radius, cx + radius), inside


_SHAPES = {BLOB: _blob, POLYGON: _polygon, LINE: _line, RING: _ring, SPECK: _speck}


def _object_classes(rng, scale):
  """Which objects an image gets, in drawing order; thin and small counts grow with size."""
  k = max(1, round(scale))
  counts = {
    BLOB: rng.integers(1, 4),
    POLYGON: rng.integers(1, 4),
    LINE: k * rng.integers(1, 4),
    RING: k * rng.integers(1, 3),
    SPECK: k * rng.integers(2, 7),
  }
  classes = np.repeat(list(counts), list(counts.values()))
  return rng.permutation(classes)


def generate(resolution: int, seed: int, split: str, index: int) -> tuple[np.ndarray, np.ndarray]:
  """Example `index` of `split`: `(image uint8 [S, S, 3], labels uint8 [S, S])`.

  A pure function of its arguments: the builder writes exactly this.
  """
  rng = procedural.example_rng(seed, split, index)
  scale = resolution / 64
  yy, xx = procedural.pixel_grid(resolution)
  image, background = procedural.textured_background(rng, resolution)
  labels = np.zeros((resolution, resolution), np.uint8)  # [S, S]
  drawn = {c: np.zeros((resolution, resolution), bool) for c in THIN_CLASSES}  # unoccluded
  for cls in _object_classes(rng, scale):
    placed = _place(rng, cls, scale, yy, xx, drawn)
    if placed is None:
      continue
    win, mask = placed  # mask: bool [h, w] within the window
    if cls in THIN_CLASSES:
      drawn[cls][win] |= mask
    colour = procedural.contrasting_colour(rng, background)
    texture = procedural.grating(rng, yy[win], xx[win], max_period=16 * scale)
    shade = colour + texture[..., None] * rng.uniform(0.03, 0.1)  # [h, w, 3]
    image[win][mask] = shade[mask]
    labels[win][mask] = cls
  return procedural.quantise(rng, image), labels


def _place(rng, cls, scale, yy, xx, drawn):
  """Where an object of class `cls` goes: `(window, bool mask [h, w])`.

  A thin object is placed again while it touches its own class (up to `_THIN_TRIES`
  times, then None: left out), so that every thin class stays at most 2 px wide.
  """
  for _ in range(_THIN_TRIES if cls in THIN_CLASSES else 1):
    box, inside = _SHAPES[cls](rng, scale)
    win = _window(yy.shape[0], *box)
    mask = inside(yy[win], xx[win])
    if cls not in THIN_CLASSES or not _touches(mask, drawn[cls][win]):
      return win, mask
  return None


def _touches(mask, other):
  """Whether `mask` overlaps or 8-neighbours `other` (both bool [h, w])."""
  return bool((mask & ndimage.binary_dilation(other, structure=np.ones((3, 3)))).any())


class LabShapes(procedural.SceneBuilder):
  """Procedural shapes on textured backgrounds; see the module docstring for the classes."""

  CLASS_NAMES = CLASS_NAMES
  THIN_METRIC_CLASSES = (LINE, RING, SPECK)  # all 1–4 px across at every resolution

  def example(self, split: str, index: int) -> dict:
    config = self.builder_config
    return procedural.to_example(*generate(config.resolution, config.seed, split, index))
