"""The data layer: segmentation datasets by name, as grain batches for the training loop.

Datasets (`config.name`, see `names()`):

* `lab_shapes` (default): procedural shapes built locally on first use; classes
  and what makes them hard are in `research/data/lab_shapes.py`.
* `fashion_scenes`: Fashion-MNIST garments composed into scenes, built locally
  from Debian's `dataset-fashion-mnist` package.
* `oxford_iiit_pet`: TFDS's pets, trimap -> pet / background / border.
* `tfds`: any TFDS dataset with an image and a uint8 mask feature:
  `config.tfds_name` ('name' or 'name/config'), `config.label_map` (raw mask value
  as str -> class id; unmapped values -> `config.ignore_label`), and optionally
  `config.class_names`.

All are read as array_record with `tfds.data_source` (no TensorFlow). The config is
the `data` ConfigDict of an experiment; `default_config()` documents its fields.
Splits accept TFDS slicing, e.g. 'train[:90%]'.
"""

import dataclasses
import functools
from typing import Iterator

import ml_collections

from research.data import catalog
from research.data import pipeline

NotPreparedError = catalog.NotPreparedError


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the model and the metrics need to know about a dataset config."""

  num_classes: int
  class_names: tuple[str, ...]
  thin_classes: tuple[int, ...]  # class ids of thin structures, for the thin IoU; () for none
  image_size: int
  ignore_label: int
  num_examples: dict[str, int]  # for the config's train, eval and test splits


def default_config(**overrides) -> ml_collections.ConfigDict:
  """The data config with its defaults (lab_shapes at 64 px), updated by `overrides`."""
  config = ml_collections.ConfigDict(
    dict(
      name='lab_shapes',  # one of names()
      variant='',  # TFDS builder config; '': the dataset's default (lab_shapes and
      # fashion_scenes: res64; oxford_iiit_pet and 'tfds': none)
      tfds_name='',  # name='tfds' only: 'dataset' or 'dataset/config'
      data_dir='',  # '' -> $TFDS_DATA_DIR or ~/tensorflow_datasets
      image_size=64,  # images resized bilinearly, masks by nearest, to S×S
      label_map={},  # name='tfds' only: raw mask value (str) -> class id
      class_names=(),  # name='tfds' only, optional: one name per class id
      image_key='image',
      mask_key='segmentation_mask',
      ignore_label=255,  # unmapped mask values and eval padding
      train_split='train',
      eval_split='validation',
      test_split='test',
      random_flip=True,  # train: horizontal flip with probability 1/2
      random_crop=False,  # train: reflect-pad by crop_padding, random S×S crop
      crop_padding=4,
      worker_count=0,  # grain worker processes; 0: in this process
      prefetch=2,  # batches built ahead, each in its own thread
    )
  )
  unknown = sorted(set(overrides) - set(config.keys()))
  if unknown:
    raise ValueError(f'Unknown data config field(s) {unknown}; fields: {", ".join(config.keys())}.')
  config.update(overrides)
  return config


def names() -> list[str]:
  """Known dataset names; `tfds` is the generic adapter (see the module docstring)."""
  return catalog.names()


def dataset_info(config) -> DatasetInfo:
  """Classes, size and split sizes of the dataset `config` names (building it if local)."""
  dataset = catalog.resolve(config)
  splits = dict.fromkeys([config.train_split, config.eval_split, config.test_split])
  return DatasetInfo(
    num_classes=len(dataset.class_names),
    class_names=dataset.class_names,
    thin_classes=dataset.thin_classes,
    image_size=config.image_size,
    ignore_label=config.ignore_label,
    num_examples=catalog.num_examples(dataset, splits),
  )


def prepare(config) -> None:
  """Builds (or verifies, and rebuilds if broken) a local dataset; for datasets
  prepared elsewhere, checks that they are, else raises `NotPreparedError` saying how.

  Opening a dataset prepares it too; in a multi-process run sharing one data dir,
  call this on one process and wait for it before the others open the dataset.
  """
  dataset_info(config)


def train_batches(
  config,
  *,
  global_batch_size: int,
  seed: int,
  start_step: int = 0,
  process_index: int = 0,
  process_count: int = 1,
  instances: bool = False,
  transform=None,
) -> Iterator[dict]:
  """Train batches for steps start_step, start_step + 1, ... forever.

  Yields {'image': float32 [b, S, S, 3] in [0, 1], 'label': int32 [b, S, S]} with
  b = global_batch_size // process_count. The batch of a step is a pure function of
  (seed, step), so a restart at step N continues exactly where an uninterrupted run
  would be. `instances`: also 'instance' int32 [b, S, S] (a config with instance ids,
  e.g. lab_shapes/res64_instances), flipped with the image; `transform` (picklable,
  example -> example) adds a task's targets to each augmented example.
  """
  dataset = catalog.resolve(config)
  ds = pipeline.train_dataset(
    catalog.open_split(dataset, config.train_split),
    _decoder(config, dataset, instances),
    global_batch_size=global_batch_size,
    seed=seed,
    start_step=start_step,
    process_index=process_index,
    process_count=process_count,
    flip=config.random_flip,
    crop_padding=config.crop_padding if config.random_crop else 0,
    transform=transform,
  )
  return pipeline.iterate(ds, prefetch=config.prefetch, worker_count=config.worker_count)


def eval_batches(
  config,
  split: str,
  *,
  global_batch_size: int,
  process_index: int = 0,
  process_count: int = 1,
  instances: bool = False,
  transform=None,
) -> Iterator[dict]:
  """Every example of `split` exactly once across processes, in fixed-size batches.

  Yields {'image', 'label', 'valid': bool [b]} (and 'instance', and what `transform` adds,
  as train_batches); the last batches are padded with examples whose valid is False,
  whose labels are all the ignore label and whose instance ids are 0.
  """
  return _eval(config, split, global_batch_size, process_index, process_count, instances, transform)


def eval_clips(
  config, split: str, *, global_batch_size: int, process_index: int = 0, process_count: int = 1
) -> Iterator[dict]:
  """eval_batches for a dataset of clips (lab_shapes/res64_clips): every clip of `split`
  once, in batches of global_batch_size clips: {'image': float32 [b, T, S, S, 3], 'label':
  int32 [b, T, S, S], 'valid': bool [b]}. No augmentation."""
  return _eval(config, split, global_batch_size, process_index, process_count, clips=True)


def _eval(config, split, batch_size, index, count, instances=False, transform=None, clips=False):
  dataset = catalog.resolve(config)
  source = catalog.open_split(dataset, split)
  frames = catalog.frames(config)
  if clips != bool(frames):
    what = f'clips of {frames} frames' if frames else 'still images'
    use = 'data.eval_clips' if frames else 'a clip variant (e.g. res64_clips)'
    raise ValueError(f'{dataset.tfds_name} holds {what}; use {use}.')
  ds = pipeline.eval_dataset(
    source,
    _decoder(config, dataset, instances, clips),
    global_batch_size=batch_size,
    process_index=index,
    process_count=count,
    size=config.image_size,
    ignore_label=config.ignore_label,
    frames=frames,
    instances=instances,
    transform=transform,
  )
  return pipeline.iterate(ds, prefetch=config.prefetch, worker_count=config.worker_count)


def _decoder(config, dataset: catalog.Dataset, instances: bool = False, clips: bool = False):
  """The per-example source -> {'image', 'label'(, 'instance')} function (picklable, for
  workers); a clip's fields stacked over its frames."""
  if instances and not catalog.has_instances(config):
    raise ValueError(
      f'{dataset.tfds_name} has no instance ids; use a config with them '
      f'({", ".join(catalog.instance_variants(config)) or "none for this dataset"}).'
    )
  return functools.partial(
    pipeline.decode_clip if clips else pipeline.decode,
    image_key=config.image_key,
    mask_key=config.mask_key,
    size=config.image_size,
    table=pipeline.label_table(dataset.label_map, config.ignore_label),
    instance_key='instance' if instances else '',
  )
