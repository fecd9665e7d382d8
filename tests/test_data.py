"""The data layer: the embedded lab_shapes dataset, adapters, and the grain pipelines.

Everything runs on lab_shapes' `res64_tiny` config (train 64 / validation 16 /
test 16), built once per session into a temporary data dir; nothing touches the
network (real TFDS datasets are mocked with `tfds.testing.mock_data`).
"""

import pathlib
import shutil
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
from scipy import ndimage
import tensorflow_datasets as tfds

from experiments import base
from research import data
from research import workdir as workdir_lib
from research.data import catalog
from research.data import lab_shapes
from research.data import pipeline

TINY = {'train': 64, 'validation': 16, 'test': 16}


@pytest.fixture
def config(tiny_dir):
  return data.default_config(variant='res64_tiny', data_dir=str(tiny_dir))


def _source(tiny_dir, split):
  return tfds.data_source(
    'lab_shapes/res64_tiny',
    split=split,
    data_dir=str(tiny_dir),
    download=False,
    builder_kwargs={'file_format': 'array_record'},
  )


def _labels(tiny_dir):
  """Labels of every tiny example, uint8 [N, 64, 64]."""
  return np.stack(
    [ex['segmentation_mask'][..., 0] for split in TINY for ex in _source(tiny_dir, split)]
  )


# Embedded dataset.


def test_dataset_info(config):
  info = data.dataset_info(config)
  assert info.num_classes == 6
  assert info.class_names == lab_shapes.CLASS_NAMES
  assert [info.class_names[c] for c in info.thin_classes] == ['line', 'ring', 'speck']
  assert (info.image_size, info.ignore_label) == (64, 255)
  assert info.num_examples == TINY


def test_records_are_the_generated_examples(tiny_dir):
  for split, index in [('train', 0), ('train', 63), ('validation', 5), ('test', 15)]:
    image, labels = lab_shapes.generate(64, 0, split, index)
    again = lab_shapes.generate(64, 0, split, index)
    np.testing.assert_array_equal(image, again[0])
    np.testing.assert_array_equal(labels, again[1])
    record = _source(tiny_dir, split)[index]
    np.testing.assert_array_equal(record['image'], image)
    np.testing.assert_array_equal(record['segmentation_mask'][..., 0], labels)


def test_examples_depend_on_seed_split_and_index():
  reference = lab_shapes.generate(64, 0, 'train', 0)[0]
  for other in [(1, 'train', 0), (0, 'test', 0), (0, 'train', 1)]:
    assert not np.array_equal(lab_shapes.generate(64, *other)[0], reference)


def test_build_is_byte_for_byte_deterministic(tiny_dir, tmp_path):
  lab_shapes.LabShapes(
    config='res64_tiny', data_dir=str(tmp_path), file_format='array_record'
  ).download_and_prepare()
  records = sorted((tiny_dir / 'lab_shapes/res64_tiny/1.0.0').glob('*.array_record*'))
  assert len(records) == 3
  for path in records:
    assert path.read_bytes() == (tmp_path / 'lab_shapes/res64_tiny/1.0.0' / path.name).read_bytes()


def test_every_class_occurs(tiny_dir):
  counts = np.bincount(_labels(tiny_dir).ravel(), minlength=6)
  assert len(counts) == 6 and (counts > 0).all(), counts


def test_thin_classes_are_one_or_two_pixels_wide(tiny_dir):
  labels = _labels(tiny_dir)
  for cls in lab_shapes.THIN_CLASSES:
    mask = labels == cls
    assert mask.sum() > 0
    eroded = ndimage.binary_erosion(mask, structure=np.ones((1, 3, 3)))
    assert not eroded.any(), f'{lab_shapes.CLASS_NAMES[cls]} is over 2 px wide somewhere'
  # Filled classes are not thin: erosion keeps most of them.
  blobs = labels == lab_shapes.BLOB
  assert ndimage.binary_erosion(blobs, structure=np.ones((1, 3, 3))).sum() > 0.5 * blobs.sum()


def test_generation_at_256_keeps_thin_classes_thin():
  _, labels = lab_shapes.generate(256, 0, 'train', 0)
  assert set(np.unique(labels)) == set(range(6))
  for cls in lab_shapes.THIN_CLASSES:
    assert not ndimage.binary_erosion(labels == cls, structure=np.ones((3, 3))).any()


def test_corrupted_cache_is_rebuilt(tiny_dir, tmp_path, caplog):
  shutil.copytree(tiny_dir / 'lab_shapes', tmp_path / 'lab_shapes')
  version_dir = tmp_path / 'lab_shapes/res64_tiny/1.0.0'
  config = data.default_config(variant='res64_tiny', data_dir=str(tmp_path))
  damages = {
    'truncated records': lambda: next(version_dir.glob('*validation*')).write_bytes(b'x' * 100),
    'missing records': lambda: next(version_dir.glob('*train*')).unlink(),
    'missing metadata': lambda: (version_dir / 'dataset_info.json').unlink(),
    'garbled metadata': lambda: (version_dir / 'dataset_info.json').write_text('{'),
  }
  for damage, apply in damages.items():
    apply()
    caplog.clear()
    assert data.dataset_info(config).num_examples == TINY, damage
    assert 'Rebuilding' in caplog.text, damage
    expected = _source(tiny_dir, 'validation')[3]['image']
    np.testing.assert_array_equal(_source(tmp_path, 'validation')[3]['image'], expected)


# Names, configs and errors.


def test_names():
  assert data.names() == ['fashion_scenes', 'lab_shapes', 'oxford_iiit_pet', 'tfds']


def test_unknown_name_lists_known_ones(config):
  config.name = 'imagenet_seg'
  with pytest.raises(
    ValueError,
    match="Unknown dataset 'imagenet_seg'.*fashion_scenes, lab_shapes, oxford_iiit_pet, tfds",
  ):
    data.dataset_info(config)


def test_unknown_variant_lists_valid_ones(config):
  config.variant = 'res32'
  with pytest.raises(
    ValueError, match='no builder config .res32.*res64, res128, res256, res64_tiny'
  ):
    data.train_batches(config, global_batch_size=4, seed=0)


def test_unknown_config_field_lists_valid_ones():
  with pytest.raises(ValueError, match=r"\['random_crops'\].*random_crop"):
    data.default_config(random_crops=True)


def test_unprepared_real_dataset_says_how_to_prepare(tmp_path):
  config = data.default_config(name='oxford_iiit_pet', variant='', data_dir=str(tmp_path))
  with pytest.raises(
    data.NotPreparedError, match='tfds build oxford_iiit_pet --file_format=array_record'
  ):
    data.prepare(config)


def test_generic_adapter_needs_a_label_map():
  with pytest.raises(ValueError, match='label_map'):
    data.dataset_info(data.default_config(name='tfds', variant='', tfds_name='oxford_iiit_pet'))


# Real datasets, mocked.


def _resized_mask_classes(raw_mask, size, label_map):
  mask = np.asarray(PIL.Image.fromarray(raw_mask[..., 0]).resize((size, size), PIL.Image.NEAREST))
  return pipeline.label_table(label_map, 255)[mask]


def test_pet_adapter_on_mock_data():
  config = data.default_config(
    name='oxford_iiit_pet', variant='', image_size=32, eval_split='train[90%:]', random_crop=True
  )
  with tfds.testing.mock_data(num_examples=10):
    info = data.dataset_info(config)
    assert info.num_classes == 3 and info.class_names == ('pet', 'background', 'border')
    assert info.thin_classes == ()
    batch = next(data.train_batches(config, global_batch_size=4, seed=0))
    assert batch['image'].shape == (4, 32, 32, 3) and batch['image'].dtype == np.float32
    assert batch['label'].shape == (4, 32, 32) and batch['label'].dtype == np.int32
    assert set(np.unique(batch['label'])) <= {0, 1, 2, 255}
    source = tfds.data_source('oxford_iiit_pet', split='test', download=False)
    evals = list(data.eval_batches(config, 'test', global_batch_size=4))
    labels = np.concatenate([b['label'] for b in evals])[:10]
    expected = np.stack(
      [_resized_mask_classes(ex['segmentation_mask'], 32, catalog.PET_LABEL_MAP) for ex in source]
    )
  np.testing.assert_array_equal(labels, expected)
  assert set(np.unique(expected)) == {0, 1, 2, 255}  # mock masks hold every byte value


def test_generic_adapter_on_mock_data():
  config = data.default_config(
    name='tfds',
    variant='',
    tfds_name='oxford_iiit_pet',
    label_map={'1': 0, '2': 1, '3': 1},
    class_names=('pet', 'other'),
    image_size=16,
  )
  with tfds.testing.mock_data(num_examples=5):
    assert data.dataset_info(config).class_names == ('pet', 'other')
    batch = next(data.eval_batches(config, 'train', global_batch_size=8))
  assert batch['label'].shape == (8, 16, 16)
  assert set(np.unique(batch['label'])) <= {0, 1, 255}
  assert batch['valid'].tolist() == [True] * 5 + [False] * 3


# Pipelines.


def test_train_batches(config):
  batch = next(data.train_batches(config, global_batch_size=8, seed=0))
  assert batch['image'].shape == (8, 64, 64, 3) and batch['image'].dtype == np.float32
  assert 0 <= batch['image'].min() and batch['image'].max() <= 1
  assert batch['label'].shape == (8, 64, 64) and batch['label'].dtype == np.int32
  assert set(np.unique(batch['label'])) <= set(range(6))


@pytest.mark.parametrize('random_crop', [False, True])
def test_resume_continues_with_the_same_batches(config, random_crop):
  config.random_crop = random_crop
  run = data.train_batches(config, global_batch_size=16, seed=7)
  uninterrupted = [next(run) for _ in range(7)]  # 4 steps per epoch: crosses into epoch 2
  for step in (1, 4, 6):
    resumed = next(data.train_batches(config, global_batch_size=16, seed=7, start_step=step))
    for key in ('image', 'label'):
      np.testing.assert_array_equal(resumed[key], uninterrupted[step][key])
  other_seed = next(data.train_batches(config, global_batch_size=16, seed=8))
  assert not np.array_equal(other_seed['image'], uninterrupted[0]['image'])


def test_processes_split_the_global_batch(config):
  whole = next(data.train_batches(config, global_batch_size=8, seed=3, start_step=5))
  parts = [
    next(
      data.train_batches(
        config, global_batch_size=8, seed=3, start_step=5, process_index=p, process_count=2
      )
    )
    for p in range(2)
  ]
  for key in ('image', 'label'):
    assert parts[0][key].shape[0] == 4
    np.testing.assert_array_equal(whole[key][0::2], parts[0][key])
    np.testing.assert_array_equal(whole[key][1::2], parts[1][key])


def _tagged_source(n):
  """n examples whose constant image tells their index (flips and crops keep it)."""
  return [
    {'image': np.full((8, 8, 3), i, np.uint8), 'segmentation_mask': np.zeros((8, 8, 1), np.uint8)}
    for i in range(n)
  ]


def _decode(size=8):
  return lambda ex: pipeline.decode(
    ex,
    image_key='image',
    mask_key='segmentation_mask',
    size=size,
    table=pipeline.label_table({0: 0}, 255),
  )


def test_every_epoch_is_a_fresh_permutation_of_whole_batches():
  ds = pipeline.train_dataset(
    _tagged_source(30),
    _decode(),
    global_batch_size=8,
    seed=0,
    start_step=0,
    process_index=0,
    process_count=1,
    flip=True,
    crop_padding=2,
  )
  ids = [np.round(ds[step]['image'][:, 0, 0, 0] * 255).astype(int) for step in range(9)]
  epochs = [np.concatenate(ids[i : i + 3]) for i in (0, 3, 6)]  # 30 // 8 = 3 steps per epoch
  for epoch in epochs:
    assert len(set(epoch)) == 24 and set(epoch) <= set(range(30))
  assert not np.array_equal(epochs[0], epochs[1])


def test_batch_size_must_split_across_processes(config):
  with pytest.raises(ValueError, match='multiple of process_count'):
    data.train_batches(config, global_batch_size=9, seed=0, process_count=2)
  with pytest.raises(ValueError, match='fewer than one global batch'):
    data.train_batches(config, global_batch_size=128, seed=0)


@pytest.mark.parametrize('process_count', [1, 2])
def test_eval_sees_every_example_once(config, tiny_dir, process_count):
  batches = [
    list(
      data.eval_batches(
        config, 'validation', global_batch_size=6, process_index=p, process_count=process_count
      )
    )
    for p in range(process_count)
  ]
  everything = [b for process in batches for b in process]
  assert all(len(process) == 3 for process in batches)  # 16 examples -> 3 global batches of 6
  assert all(b['image'].shape[0] == 6 // process_count for b in everything)
  valid = np.concatenate([b['valid'] for b in everything])
  assert valid.shape == (18,) and valid.sum() == 16
  images = np.concatenate([b['image'] for b in everything])
  labels = np.concatenate([b['label'] for b in everything])
  assert (labels[~valid] == 255).all() and (images[~valid] == 0).all()
  seen = sorted(np.round(im * 255).astype(np.uint8).tobytes() for im in images[valid])
  expected = sorted(ex['image'].tobytes() for ex in _source(tiny_dir, 'validation'))
  assert seen == expected


def test_eval_without_padding(config):
  batches = list(data.eval_batches(config, 'test', global_batch_size=8))
  assert len(batches) == 2 and all(b['valid'].all() for b in batches)


def test_resizing(config):
  config.image_size = 48
  batch = next(data.eval_batches(config, 'test', global_batch_size=2))
  assert batch['image'].shape == (2, 48, 48, 3) and batch['label'].shape == (2, 48, 48)
  assert set(np.unique(batch['label'])) <= set(range(6))  # nearest: no blended classes


@pytest.mark.slow
def test_worker_processes_give_the_same_batches(config):
  expected = next(data.train_batches(config, global_batch_size=8, seed=1, start_step=2))
  config.worker_count = 2
  batches = data.train_batches(config, global_batch_size=8, seed=1, start_step=2)
  got = next(batches)
  batches.close()
  for key in ('image', 'label'):
    np.testing.assert_array_equal(got[key], expected[key])


@pytest.mark.slow
def test_prepare_data_launcher(tiny_dir):
  result = subprocess.run(
    [
      sys.executable,
      '-m',
      'launch.prepare_data',
      '--name=lab_shapes',
      '--variant=res64_tiny',
      f'--data_dir={tiny_dir}',
    ],
    cwd=pathlib.Path(__file__).parents[1],
    capture_output=True,
    text=True,
    check=True,
  )
  assert 'train: 64 examples' in result.stdout and 'test: 16 examples' in result.stdout


@pytest.mark.slow
def test_concurrent_builds_of_a_missing_dataset_both_succeed(tmp_path):
  """Sweep cells open a missing dataset at once: one builds, the other waits for it."""
  command = [
    sys.executable,
    '-m',
    'launch.prepare_data',
    '--name=lab_shapes',
    '--variant=res64_tiny',
    f'--data_dir={tmp_path}',
  ]
  procs = [
    subprocess.Popen(
      command,
      cwd=pathlib.Path(__file__).parents[1],
      text=True,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
    )
    for _ in range(2)
  ]
  outputs = [p.communicate(timeout=300) for p in procs]
  assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
  assert all('train: 64 examples' in out for out, _ in outputs)
  assert sum('Generating' in err for _, err in outputs) == 1  # built once


def test_the_variant_defaults_per_dataset():
  assert catalog.resolve(data.default_config()).tfds_name == 'lab_shapes/res64'
  assert catalog.resolve(data.default_config(name='fashion_scenes')).tfds_name == (
    'fashion_scenes/res64'
  )
  # Naming another dataset is enough: no lab_shapes variant to unset first.
  assert catalog.resolve(data.default_config(name='oxford_iiit_pet')).tfds_name == (
    'oxford_iiit_pet'
  )
  # A run records the variant it read, so a run written with 'res64' spelled out matches.
  assert workdir_lib.config_to_dict(base.get_config())['data']['variant'] == 'res64'
