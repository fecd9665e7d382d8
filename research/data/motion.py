"""Rigid motion for clips of procedural scenes: an object moves by drawing its still shape
at coordinates mapped back into the frame where it was drawn.

An object drawn by `inside(yy, xx)` (a shape's indicator at pixel-centre coordinates) is
drawn at frame t of a `Motion` as `inside(*motion.local(yy, xx, t))`: each pixel is carried
back by the inverse of the motion, a translation by `velocity * t` px and a turn by
`spin * t` rad about the object's centre. The shape's width, thickness and texture move
with it unchanged (a rigid motion), and labels stay rasterised at the output resolution.
"""

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class Motion:
  """Constant velocity and turning rate of one object: smooth by construction."""

  centre: tuple[float, float]  # (y, x) px at frame 0: the turning point
  velocity: tuple[float, float]  # (y, x) px per frame
  spin: float  # rad per frame, counter-clockwise in (x, y)

  def local(self, yy: np.ndarray, xx: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates at frame 0 of the points at (yy, xx) (float [h, w] each) at frame t."""
    cy, cx = self.centre
    dy = yy - (cy + self.velocity[0] * t)
    dx = xx - (cx + self.velocity[1] * t)
    cos, sin = math.cos(self.spin * t), math.sin(self.spin * t)
    return (
      (cy + cos * dy - sin * dx).astype(np.float32),
      (cx + sin * dy + cos * dx).astype(np.float32),
    )

  def box(self, box, t: int) -> tuple[float, float, float, float]:
    """A box `(y0, y1, x0, x1)` holding what the frame-0 box `box` holds, at frame t.

    A turn keeps the box's points within its circumscribed circle about the centre, so
    the circle's square, moved by `velocity * t`, holds them.
    """
    cy, cx = self.centre
    y0, y1, x0, x1 = box
    reach = max(math.hypot(y - cy, x - cx) for y in (y0, y1) for x in (x0, x1))
    my, mx = cy + self.velocity[0] * t, cx + self.velocity[1] * t
    return my - reach, my + reach, mx - reach, mx + reach


def random_velocity(rng: np.random.Generator, low: float, high: float) -> tuple[float, float]:
  """A velocity (y, x) of speed uniform in [low, high] px per frame, in a uniform direction."""
  speed, direction = rng.uniform(low, high), rng.uniform(0, 2 * np.pi)
  return float(speed * math.sin(direction)), float(speed * math.cos(direction))


def random_motion(rng: np.random.Generator, box, speed, max_spin: float) -> Motion:
  """A Motion about the centre of `box` (y0, y1, x0, x1): speed (low, high) px per frame,
  spin uniform in [-max_spin, max_spin] rad per frame."""
  y0, y1, x0, x1 = box
  velocity = random_velocity(rng, *speed)
  spin = float(rng.uniform(-max_spin, max_spin))
  return Motion(centre=((y0 + y1) / 2, (x0 + x1) / 2), velocity=velocity, spin=spin)
