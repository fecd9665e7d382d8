"""What the locally generated datasets (lab_shapes, fashion_scenes) share.

Both are TFDS `GeneratorBasedBuilder`s whose every example is a pure function of
(seed, split, index): `example_rng` derives an independent numpy Generator from that
triple, so any example can be regenerated alone, in any order, by any process.
They write array_record (read back with `tfds.data_source`, no TensorFlow needed)
and share the resolution/size configs and the textured backgrounds below. A config
may add an `instance` mask (instance ids per pixel) and make every example a clip of
`frames` frames; the still semantic configs (`SCENE_CONFIGS`) have neither.
"""

import abc
import dataclasses

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

SPLITS = ('train', 'validation', 'test')


@dataclasses.dataclass(eq=False)
class SceneConfig(tfds.core.BuilderConfig):
  """Canvas size, examples per split and the seed every example derives from; whether
  examples carry instance ids, and how many frames a clip has (0: still images)."""

  resolution: int = 64
  num_train: int = 2048
  num_validation: int = 256
  num_test: int = 256
  seed: int = 0
  instances: bool = False  # an 'instance' mask: 0 none (stuff), 1..N the drawn objects
  frames: int = 0  # 0: one image per example; T > 0: clips [T, S, S, 3], labels per frame

  def num_examples(self) -> dict[str, int]:
    return {'train': self.num_train, 'validation': self.num_validation, 'test': self.num_test}


# Split sizes keep a build (one core) near 15 s at res64, 30 s at res128 and 1 min at res256.
SCENE_CONFIGS = (
  SceneConfig(name='res64', description='64×64, train 2048 / validation 256 / test 256.'),
  SceneConfig(
    name='res128', resolution=128, description='128×128, train 2048 / validation 256 / test 256.'
  ),
  SceneConfig(
    name='res256',
    resolution=256,
    num_train=1024,
    description='256×256, train 1024 / validation 256 / test 256.',
  ),
  SceneConfig(
    name='res64_tiny',
    num_train=64,
    num_validation=16,
    num_test=16,
    description='64×64, train 64 / validation 16 / test 16: for tests.',
  ),
)


def example_rng(seed: int, split: str, index: int) -> np.random.Generator:
  """The Generator of one example; independent of every other (split, index)."""
  return np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split), index]))


def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
  """Pixel-centre coordinates `(y, x)`, each float32 [S, S]: pixel (i, j) covers [i, i+1)."""
  c = np.arange(size, dtype=np.float32) + 0.5
  return np.meshgrid(c, c, indexing='ij')


def grating(
  rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, max_period: float
) -> np.ndarray:
  """A random oriented sinusoid in [-1, 1] over `yy`, `xx` (float32, their shape): cheap
  texture."""
  theta = rng.uniform(0, np.pi)
  period = rng.uniform(3.0, max_period)
  phase = rng.uniform(0, 2 * np.pi)
  u = np.cos(theta) * xx + np.sin(theta) * yy
  return np.sin(2 * np.pi * u / period + phase).astype(np.float32)


def textured_background(
  rng: np.random.Generator, size: int, offset=(0.0, 0.0)
) -> tuple[np.ndarray, np.ndarray]:
  """A colour plus a few coloured gratings: `(image float32 [S, S, 3], base colour [3])`.

  The base colour is drawn from the same range objects draw theirs from, so colour
  alone says little about class. `offset` (y, x) in px moves the texture (a clip's
  drifting background: the same rng state with a moving offset); (0, 0) leaves it.
  """
  yy, xx = pixel_grid(size)
  yy, xx = yy - np.float32(offset[0]), xx - np.float32(offset[1])
  base = rng.uniform(0.15, 0.85, size=3).astype(np.float32)
  image = np.broadcast_to(base, (size, size, 3)).copy()  # [S, S, 3]
  for _ in range(rng.integers(2, 4)):
    amplitude = rng.uniform(0.02, 0.08, size=3).astype(np.float32)
    image += grating(rng, yy, xx, max_period=size / 2)[..., None] * amplitude
  return image, base


def contrasting_colour(rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
  """A colour at RGB distance 0.25–0.5 from `base`: visible, but from the shared range."""
  direction = rng.normal(size=3)
  direction /= np.linalg.norm(direction)
  colour = base + direction * rng.uniform(0.25, 0.5)
  return np.clip(colour, 0.05, 0.95).astype(np.float32)


def quantise(rng: np.random.Generator, image: np.ndarray, noise: float = 0.03) -> np.ndarray:
  """float [S, S, 3] in [0, 1] plus pixel noise -> uint8 [S, S, 3]."""
  image = image + rng.normal(scale=noise, size=image.shape).astype(np.float32)
  return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def to_example(image: np.ndarray, labels: np.ndarray, instances=None) -> dict:
  """uint8 image [S, S, 3], labels [S, S] and optional instance ids [S, S] as a TFDS
  example; a clip's arrays have a leading frame axis [T, ...] and become lists of frames.

  PIL images, because TFDS PNG-encodes those with PIL; numpy arrays it would encode
  with TensorFlow.
  """
  arrays = {'image': image, 'segmentation_mask': labels}
  if instances is not None:
    arrays['instance'] = instances
  clip = image.ndim == 4
  return {
    key: [PIL.Image.fromarray(f) for f in a] if clip else PIL.Image.fromarray(a)
    for key, a in arrays.items()
  }


class SceneBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A builder of `SCENE_CONFIGS` scenes; subclasses say how one example looks.

  Examples are written in index order (shuffling disabled), so record `i` of a split
  is `example(split, i)`.
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First version.'}
  BUILDER_CONFIGS = list(SCENE_CONFIGS)
  DEFAULT_CONFIG_NAME = 'res64'
  CLASS_NAMES: tuple[str, ...] = ()
  THIN_METRIC_CLASSES: tuple[int, ...] = ()  # class ids the thin-structure IoU averages

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    s = config.resolution
    features = {
      'image': tfds.features.Image(shape=(s, s, 3), dtype=np.uint8),
      'segmentation_mask': tfds.features.Image(shape=(s, s, 1), dtype=np.uint8),
    }
    if config.instances:
      features['instance'] = tfds.features.Image(shape=(s, s, 1), dtype=np.uint8)
    if config.frames:  # each feature a sequence of frames, decoded as a list of arrays
      features = {k: tfds.features.Sequence(f, length=config.frames) for k, f in features.items()}
    return tfds.core.DatasetInfo(
      builder=self,
      description=self.__doc__,
      features=tfds.features.FeaturesDict(features),
      supervised_keys=('image', 'segmentation_mask'),
      disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {
      split: self._generate_examples(split, n)
      for split, n in self.builder_config.num_examples().items()
    }

  def _generate_examples(self, split: str, num_examples: int):
    for index in range(num_examples):
      yield index, self.example(split, index)

  @abc.abstractmethod
  def example(self, split: str, index: int) -> dict:
    """Example `index` of `split`, as `to_example` returns it."""
