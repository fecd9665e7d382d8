"""fashion_scenes: built from fake idx files always, from Debian's package when installed."""

import gzip
import os

import numpy as np
import pytest

from research import data
from research.data import fashion_scenes


def _write_idx(directory, prefix, images, classes):
  with gzip.open(os.path.join(directory, f'{prefix}-images-idx3-ubyte.gz'), 'wb') as f:
    f.write(np.array([2051, len(images), 28, 28], '>i4').tobytes() + images.tobytes())
  with gzip.open(os.path.join(directory, f'{prefix}-labels-idx1-ubyte.gz'), 'wb') as f:
    f.write(np.array([2049, len(classes)], '>i4').tobytes() + classes.tobytes())


@pytest.fixture
def fake_fashion_mnist(tmp_path, monkeypatch):
  """Idx files of solid squares, garment i of class i % 10, as the package would install."""
  source = tmp_path / 'fashion-mnist'
  source.mkdir()
  for prefix, n in [('train', 12), ('t10k', 10)]:
    images = np.zeros((n, 28, 28), np.uint8)
    images[:, 6:22, 6:22] = 200
    _write_idx(source, prefix, images, (np.arange(n) % 10).astype(np.uint8))
  monkeypatch.setattr(fashion_scenes.FashionScenes, 'SOURCE_DIR', str(source))
  return source


def _config(data_dir):
  return data.default_config(name='fashion_scenes', variant='res64_tiny', data_dir=str(data_dir))


def test_scenes_from_fake_garments(fake_fashion_mnist, tmp_path):
  config = _config(tmp_path / 'tfds')
  info = data.dataset_info(config)
  assert info.num_classes == 11 and info.class_names[0] == 'background'
  assert info.thin_classes == ()
  assert info.num_examples == {'train': 64, 'validation': 16, 'test': 16}
  labels = np.concatenate(
    [b['label'] for b in data.eval_batches(config, 'validation', global_batch_size=16)]
  )
  # Validation draws from the last sixth of the training garments: 10 and 11, classes 0 and 1.
  assert set(np.unique(labels)) == {0, 1, 2}
  image, expected = fashion_scenes.generate(str(fake_fashion_mnist), 64, 0, 'validation', 0)
  np.testing.assert_array_equal(labels[0], expected)
  squares = expected > 0
  assert squares.any() and not squares.all()


def test_missing_package_says_how_to_install(tmp_path, monkeypatch):
  monkeypatch.setattr(fashion_scenes.FashionScenes, 'SOURCE_DIR', str(tmp_path / 'absent'))
  with pytest.raises(FileNotFoundError, match='apt-get install dataset-fashion-mnist'):
    data.prepare(_config(tmp_path / 'tfds'))


@pytest.mark.skipif(
  bool(fashion_scenes.missing_files(fashion_scenes.FashionScenes.SOURCE_DIR)),
  reason='Debian package dataset-fashion-mnist is not installed',
)
def test_scenes_from_fashion_mnist(tmp_path):
  config = _config(tmp_path)
  data.prepare(config)
  labels = np.concatenate(
    [
      b['label']
      for split in ('train', 'validation', 'test')
      for b in data.eval_batches(config, split, global_batch_size=16)
    ]
  )
  assert set(np.unique(labels)) == set(range(11))
