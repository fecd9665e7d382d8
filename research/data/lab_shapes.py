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

Instances (configs `res64_instances*`, `generate_instances`): every drawn object is a
thing with its own id over its visible pixels; background is the one stuff class.
Clips (`res64_clips*`, `generate_clip`): 8 frames in which objects move and turn
smoothly over a drifting background, with labels and instance ids per frame.
"""

import math

import numpy as np
from scipy import ndimage

from research.data import motion
from research.data import procedural

CLASS_NAMES = ('background', 'blob', 'polygon', 'line', 'ring', 'speck')
BLOB, POLYGON, LINE, RING, SPECK = range(1, 6)
THIN_CLASSES = (LINE, RING)
# Panoptic roles (Kirillov et al. 2019): every drawn object is a countable thing with an
# instance id; the background is the one stuff class (amorphous, no instances).
THING_CLASSES = (BLOB, POLYGON, LINE, RING, SPECK)
STUFF_CLASSES = (0,)
_THIN_TRIES = 5  # placements tried before a thin object is left out
CLIP_FRAMES = 8


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
  return generate_instances(resolution, seed, split, index)[:2]


def generate_instances(resolution: int, seed: int, split: str, index: int) -> tuple:
  """`generate`'s example with its instance ids: `(image, labels, instances)`, uint8
  [S, S, 3], [S, S], [S, S].

  instances: 0 on background (stuff), 1..N on the visible pixels of the N drawn objects
  that stay visible, numbered in drawing order; `labels` is that object's class there.
  The image and labels are `generate`'s, byte for byte (the same draws in the same order).
  """
  rng = procedural.example_rng(seed, split, index)
  scale = resolution / 64
  yy, xx = procedural.pixel_grid(resolution)
  image, background = procedural.textured_background(rng, resolution)
  labels = np.zeros((resolution, resolution), np.uint8)  # [S, S]
  instances = np.zeros((resolution, resolution), np.int32)  # [S, S], in drawing order
  drawn = {c: np.zeros((resolution, resolution), bool) for c in THIN_CLASSES}  # unoccluded
  for number, cls in enumerate(_object_classes(rng, scale), start=1):
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
    instances[win][mask] = number
  return procedural.quantise(rng, image), labels, consecutive_ids(instances)


def consecutive_ids(instances: np.ndarray) -> np.ndarray:
  """Ids (int [..., S, S], 0 = none) renumbered 1..N in their order, as uint8: objects
  hidden everywhere (occluded, or off the canvas in every frame) leave no gap."""
  present, inverse = np.unique(instances, return_inverse=True)
  if present[0] != 0:  # no background pixel: ids start at 1 all the same
    inverse = inverse + 1
  if inverse.max(initial=0) > 255:
    raise ValueError(f'{inverse.max()} instances do not fit uint8 ids (at most 255)')
  return inverse.reshape(instances.shape).astype(np.uint8)


def generate_clip(
  resolution: int, seed: int, split: str, index: int, frames: int = CLIP_FRAMES
) -> tuple:
  """Clip `index` of `split`: `(images, labels, instances)`, uint8 [T, S, S, 3], [T, S, S],
  [T, S, S]; a pure function of its arguments.

  A scene drawn as a still one is (classes, counts, shapes, colours, occlusion order),
  set in motion: each object translates at 0.5–2 px per frame (× S / 64) and turns at up
  to 0.06 rad per frame, its texture moving with it (research/data/motion.py); the
  background texture drifts at 0.2–0.5 px per frame; pixel noise is new in every frame.
  Labels and instance ids are drawn per frame exactly as in a still; an object keeps its
  id in every frame (ids 1..N over the objects visible in some frame). A thin object is
  placed again while it touches its own class in any frame.
  """
  if frames < 1:
    raise ValueError(f'frames must be >= 1, got {frames}')
  rng = procedural.example_rng(seed, split, index)
  scale = resolution / 64
  yy, xx = procedural.pixel_grid(resolution)
  shape = (frames, resolution, resolution)
  background_seed = int(rng.integers(2**32))  # one texture, redrawn at each frame's offset
  drift = np.array(motion.random_velocity(rng, 0.2 * scale, 0.5 * scale))  # px per frame
  textures = [
    procedural.textured_background(np.random.default_rng(background_seed), resolution, drift * t)
    for t in range(frames)
  ]
  images, background = np.stack([image for image, _ in textures]), textures[0][1]  # [T, S, S, 3]
  labels, instances = np.zeros(shape, np.uint8), np.zeros(shape, np.int32)
  drawn = {c: np.zeros(shape, bool) for c in THIN_CLASSES}  # unoccluded, per frame
  for number, cls in enumerate(_object_classes(rng, scale), start=1):
    placed = _place_moving(rng, cls, scale, yy, xx, drawn)
    if placed is None:
      continue
    move, frame_masks = placed  # per frame: (window, bool mask [h, w])
    colour = procedural.contrasting_colour(rng, background)
    texture_seed, amplitude = int(rng.integers(2**32)), rng.uniform(0.03, 0.1)
    for t, (win, mask) in enumerate(frame_masks):
      if cls in THIN_CLASSES:
        drawn[cls][t][win] |= mask
      local_y, local_x = move.local(yy[win], xx[win], t)
      texture = procedural.grating(
        np.random.default_rng(texture_seed), local_y, local_x, max_period=16 * scale
      )
      shade = colour + texture[..., None] * amplitude  # [h, w, 3]
      images[t][win][mask] = shade[mask]
      labels[t][win][mask] = cls
      instances[t][win][mask] = number
  return procedural.quantise(rng, images), labels, consecutive_ids(instances)


def _place_moving(rng, cls, scale, yy, xx, drawn):
  """`_place` for a clip: `(Motion, [(window, bool mask [h, w])] per frame)` or None."""
  frames = next(iter(drawn.values())).shape[0]
  for _ in range(_THIN_TRIES if cls in THIN_CLASSES else 1):
    box, inside = _SHAPES[cls](rng, scale)
    move = motion.random_motion(rng, box, speed=(0.5 * scale, 2 * scale), max_spin=0.06)
    frame_masks = []
    for t in range(frames):
      win = _window(yy.shape[0], *move.box(box, t))
      frame_masks.append((win, inside(*move.local(yy[win], xx[win], t))))
    if cls not in THIN_CLASSES or not any(
      _touches(mask, drawn[cls][t][win]) for t, (win, mask) in enumerate(frame_masks)
    ):
      return move, frame_masks
  return None


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


def _instance_config(name, frames, sizes, what):
  train, validation, test = sizes
  return procedural.SceneConfig(
    name=name,
    instances=True,
    frames=frames,
    num_train=train,
    num_validation=validation,
    num_test=test,
    description=f'64×64 {what} with instance ids: train {train} / validation {validation} / '
    f'test {test}.',
  )


# Seed 0 as res64: the still instance configs hold res64's (res64_tiny's) examples, plus ids.
INSTANCE_CONFIGS = (
  _instance_config('res64_instances', 0, (2048, 256, 256), "res64's images"),
  _instance_config('res64_instances_tiny', 0, (64, 16, 16), "res64_tiny's images, for tests,"),
  _instance_config('res64_clips', CLIP_FRAMES, (512, 64, 64), 'clips of 8 frames'),
  _instance_config('res64_clips_tiny', CLIP_FRAMES, (8, 4, 4), 'clips of 8 frames, for tests,'),
)


class LabShapes(procedural.SceneBuilder):
  """Procedural shapes on textured backgrounds; see the module docstring for the classes."""

  BUILDER_CONFIGS = [*procedural.SCENE_CONFIGS, *INSTANCE_CONFIGS]
  CLASS_NAMES = CLASS_NAMES
  THIN_METRIC_CLASSES = (LINE, RING, SPECK)  # all 1–4 px across at every resolution

  def example(self, split: str, index: int) -> dict:
    config = self.builder_config
    where = (config.resolution, config.seed, split, index)
    if config.frames:
      return procedural.to_example(*generate_clip(*where, frames=config.frames))
    if config.instances:
      return procedural.to_example(*generate_instances(*where))
    return procedural.to_example(*generate(*where))
