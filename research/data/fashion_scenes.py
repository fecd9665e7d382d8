"""fashion_scenes: 1–4 Fashion-MNIST garments per textured canvas, labelled per pixel.

Classes: 0 background, then the ten Fashion-MNIST classes shifted by one (see
`CLASS_NAMES`). Each garment is scaled to 35–70 % of the canvas side (bilinear),
placed at a random position (partly off the canvas allowed), tinted with a colour
drawn as lab_shapes draws object colours, and drawn in order, so later garments
occlude earlier ones. A pixel belongs to a garment where the scaled garment image
exceeds `_THRESHOLD`: labels come from the same scaled image the pixels do.

Garments come from Debian's `dataset-fashion-mnist` package (idx files under
`FashionScenes.SOURCE_DIR`): train from the first 5/6 of its training images
(50 000), validation from the last 1/6 (10 000), test from its test images, so
no garment is shared between splits.
"""

import functools
import gzip
import os

import numpy as np
import PIL.Image

from research.data import procedural

CLASS_NAMES = (
  'background',
  't-shirt/top',
  'trouser',
  'pullover',
  'dress',
  'coat',
  'sandal',
  'shirt',
  'sneaker',
  'bag',
  'ankle boot',
)
_THRESHOLD = 32  # of 255: below it a scaled garment pixel is background
_FILES = {
  'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
  't10k': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'),
}
# split -> (idx file set, start, end) of the garments it draws from, as fractions of the set
_POOLS = {'train': ('train', 0, 5 / 6), 'validation': ('train', 5 / 6, 1), 'test': ('t10k', 0, 1)}


def missing_files(directory: str) -> list[str]:
  """The Fashion-MNIST idx files absent from `directory`."""
  paths = [os.path.join(directory, f) for files in _FILES.values() for f in files]
  return [p for p in paths if not os.path.exists(p)]


@functools.cache
def _load(directory: str, part: str) -> tuple[np.ndarray, np.ndarray]:
  """Garments of one idx file set: `(images uint8 [N, 28, 28], classes uint8 [N])`."""
  image_file, label_file = (os.path.join(directory, f) for f in _FILES[part])
  with gzip.open(image_file) as f:
    images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
  with gzip.open(label_file) as f:
    classes = np.frombuffer(f.read(), np.uint8, offset=8)
  return images, classes


def generate(directory: str, resolution: int, seed: int, split: str, index: int):
  """Example `index` of `split`: `(image uint8 [S, S, 3], labels uint8 [S, S])`."""
  rng = procedural.example_rng(seed, split, index)
  part, start, stop = _POOLS[split]
  garments, classes = _load(directory, part)
  first, end = round(start * len(garments)), round(stop * len(garments))
  image, background = procedural.textured_background(rng, resolution)
  labels = np.zeros((resolution, resolution), np.uint8)  # [S, S]
  for _ in range(rng.integers(1, 5)):
    g = rng.integers(first, end)
    side = int(rng.uniform(0.35, 0.7) * resolution)
    top, left = rng.integers(-(side // 4), resolution - 3 * side // 4, size=2)
    scaled = np.asarray(PIL.Image.fromarray(garments[g]).resize((side, side), PIL.Image.BILINEAR))
    # Clip the garment to the canvas.
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + side, resolution), min(left + side, resolution)
    patch = scaled[y0 - top : y1 - top, x0 - left : x1 - left].astype(np.float32) / 255  # [h, w]
    mask = patch > _THRESHOLD / 255
    colour = procedural.contrasting_colour(rng, background)
    shaded = colour * (0.4 + 0.6 * patch[..., None])  # [h, w, 3]: keeps the garment's detail
    image[y0:y1, x0:x1][mask] = shaded[mask]
    labels[y0:y1, x0:x1][mask] = classes[g] + 1
  return procedural.quantise(rng, image), labels


class FashionScenes(procedural.SceneBuilder):
  """Fashion-MNIST garments composed on textured canvases; see the module docstring."""

  CLASS_NAMES = CLASS_NAMES
  THIN_METRIC_CLASSES = ()  # garments are 35–70 % of the canvas side: none is thin
  SOURCE_DIR = '/usr/share/datasets/fashion-mnist'

  def _split_generators(self, dl_manager):
    missing = missing_files(self.SOURCE_DIR)
    if missing:
      raise FileNotFoundError(
        "fashion_scenes needs Fashion-MNIST from Debian's dataset-fashion-mnist package; "
        f'missing: {", ".join(missing)}. '
        'Install it with `apt-get install dataset-fashion-mnist`.'
      )
    return super()._split_generators(dl_manager)

  def example(self, split: str, index: int) -> dict:
    config = self.builder_config
    return procedural.to_example(
      *generate(self.SOURCE_DIR, config.resolution, config.seed, split, index)
    )
