"""Which datasets exist, where their records live, and what their mask values mean.

Every dataset is a TFDS dataset stored as array_record and read with
`tfds.data_source` (random access, no TensorFlow). Two kinds:

* local (`lab_shapes`, `fashion_scenes`): builders in this package, built on first
  use into the data dir, verified on every open and rebuilt if the cache is broken;
* prepared elsewhere (`oxford_iiit_pet`, and any TFDS dataset through the generic
  `tfds` entry, named by `config.tfds_name`): `tfds build NAME
  --file_format=array_record` once, with network access; reading never downloads.
"""

import dataclasses
import fcntl
import shutil

from absl import logging
from etils import epath
import tensorflow_datasets as tfds

from research.data import fashion_scenes
from research.data import lab_shapes

GENERIC = 'tfds'  # any TFDS dataset: config.tfds_name, config.label_map, config.class_names
LOCAL_BUILDERS = {
  'lab_shapes': lab_shapes.LabShapes,
  'fashion_scenes': fashion_scenes.FashionScenes,
}
# Oxford-IIIT Pet trimaps: 1 pet, 2 background, 3 border (the unsure band around the pet).
PET_CLASS_NAMES = ('pet', 'background', 'border')
PET_LABEL_MAP = {1: 0, 2: 1, 3: 2}


def names() -> list[str]:
  """Known dataset names."""
  return sorted([*LOCAL_BUILDERS, 'oxford_iiit_pet', GENERIC])


class NotPreparedError(FileNotFoundError):
  """A dataset that must be prepared with network access has not been."""


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A data config resolved: what to open and how to read its masks."""

  tfds_name: str  # 'name' or 'name/builder_config'
  data_dir: str | None  # None: TFDS's default
  class_names: tuple[str, ...]
  thin_classes: tuple[int, ...]  # class ids the thin-structure IoU averages; () for none
  label_map: dict[int, int]  # raw mask value -> class id; others -> ignore label
  local: bool  # built here, on first use


def resolve(config) -> Dataset:
  """The dataset `config` names; a ValueError says what is wrong and what is valid."""
  name = config.name
  if name not in names():
    raise ValueError(f'Unknown dataset {name!r}; known datasets: {", ".join(names())}.')
  if name in LOCAL_BUILDERS:
    cls = LOCAL_BUILDERS[name]
    class_names, thin_classes = cls.CLASS_NAMES, cls.THIN_METRIC_CLASSES
    label_map = {i: i for i in range(len(class_names))}
    base = cls.name
  elif name == 'oxford_iiit_pet':
    class_names, label_map, base = PET_CLASS_NAMES, PET_LABEL_MAP, name
    thin_classes = ()  # the border class is an unsure band, not a thin structure
  else:
    if not config.tfds_name:
      raise ValueError(
        f'Dataset {GENERIC!r} reads any TFDS dataset: set config.data.tfds_name '
        "(e.g. 'oxford_iiit_pet') and config.data.label_map."
      )
    if not config.label_map:
      raise ValueError(
        f'Dataset {GENERIC!r} ({config.tfds_name}) needs config.data.label_map: '
        'raw mask value (str) -> class id.'
      )
    label_map = {int(raw): int(cls_id) for raw, cls_id in config.label_map.items()}
    num_classes = max(label_map.values()) + 1
    class_names = tuple(config.get('class_names') or (f'class_{i}' for i in range(num_classes)))
    if len(class_names) != num_classes:
      raise ValueError(
        f'config.data.class_names has {len(class_names)} names but config.data.label_map '
        f'uses class ids 0..{num_classes - 1}.'
      )
    base = config.tfds_name
    thin_classes = ()  # an arbitrary TFDS dataset declares none
  variant = resolved_variant(config)
  _check_variant(base, variant)
  return Dataset(
    tfds_name=f'{base}/{variant}' if variant else base,
    data_dir=config.data_dir or None,
    class_names=tuple(class_names),
    thin_classes=tuple(thin_classes),
    label_map=label_map,
    local=name in LOCAL_BUILDERS,
  )


def resolved_variant(config) -> str:
  """config.variant, or for '' the dataset's default: the first builder config of an
  embedded dataset (res64), none for the others."""
  if config.variant or config.name not in LOCAL_BUILDERS:
    return config.variant
  return LOCAL_BUILDERS[config.name].BUILDER_CONFIGS[0].name


def _check_variant(base: str, variant: str) -> None:
  """Raises if `variant` is not one of the builder configs of TFDS dataset `base`."""
  if '/' in base:  # the generic entry may name the builder config in tfds_name
    if variant:
      raise ValueError(
        f"tfds_name {base!r} already names a builder config; set config.data.variant=''."
      )
    return
  configs = [c.name for c in tfds.builder_cls(base).BUILDER_CONFIGS]
  if variant and variant not in configs:
    valid = ', '.join(configs) if configs else "none: set config.data.variant=''"
    raise ValueError(f'{base} has no builder config {variant!r}; valid variants: {valid}.')


def open_split(dataset: Dataset, split: str):
  """The random-access source of `split` (a sequence of decoded example dicts)."""
  if dataset.local:
    ensure_built(dataset)
  try:
    return tfds.data_source(
      dataset.tfds_name,
      split=split,
      data_dir=dataset.data_dir,
      download=False,
      builder_kwargs={'file_format': 'array_record'},
    )
  except KeyError as e:  # tfds: "`splits` is empty ... not been generated yet"
    if tfds.builder(dataset.tfds_name, data_dir=dataset.data_dir).is_prepared():
      raise
    where = dataset.data_dir or tfds.core.constants.DATA_DIR
    raise NotPreparedError(
      f'{dataset.tfds_name} is not prepared in {where}. Prepare it once where there is '
      f'network access (and TensorFlow, which the tfds CLI needs): `tfds build '
      f'{dataset.tfds_name} --file_format=array_record --data_dir={where}`, or set '
      'config.data.data_dir to a directory that holds a prepared array_record copy '
      '(reading it needs neither).'
    ) from e


def num_examples(dataset: Dataset, splits) -> dict[str, int]:
  """Examples per split, for each of `splits`."""
  return {split: len(open_split(dataset, split)) for split in splits}


def variant_dir(dataset: Dataset) -> epath.Path:
  """Where a local dataset's records and metadata live."""
  name, _, variant = dataset.tfds_name.partition('/')
  cls = tfds.builder_cls(name)
  return (
    epath.Path(dataset.data_dir or tfds.core.constants.DATA_DIR)
    / name
    / (variant or cls.DEFAULT_CONFIG_NAME)
    / str(cls.VERSION)
  )


def ensure_built(dataset: Dataset) -> None:
  """Builds a local dataset unless an intact copy exists; rebuilds a broken one.

  Intact: metadata readable, every split has the configured number of records,
  and its first and last records decode.
  """
  if _problem(dataset) is None:
    return
  path = variant_dir(dataset)
  path.parent.mkdir(parents=True, exist_ok=True)
  # Processes that open the same missing dataset at once (sweep cells, hosts) would
  # race on tfds's final rename: one builds, the others wait and then find it built.
  with open(path.parent / f'.{path.name}.build.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    problem = _problem(dataset)
    if problem is None:
      return
    if path.exists():
      logging.warning('Rebuilding %s: %s.', path, problem)
      shutil.rmtree(path)
    _builder(dataset).download_and_prepare()
  problem = _problem(dataset)
  if problem is not None:
    raise RuntimeError(
      f'{dataset.tfds_name} in {path} is unreadable right after building it '
      f'({problem}); remove {path} and try again.'
    )


def _builder(dataset: Dataset) -> tfds.core.DatasetBuilder:
  return tfds.builder(dataset.tfds_name, data_dir=dataset.data_dir, file_format='array_record')


def _problem(dataset: Dataset) -> str | None:
  """What is wrong with the local copy of `dataset`, or None if it is intact."""
  try:
    builder = _builder(dataset)
  except Exception as e:  # any unreadable metadata
    return f'its metadata is unreadable: {e}'
  if not builder.is_prepared():
    return 'it is not (completely) built'
  for split, expected in builder.builder_config.num_examples().items():
    try:
      source = builder.as_data_source(split)
      if len(source) != expected:
        return f'{split} has {len(source)} records, expected {expected}'
      _ = [source[i] for i in (0, expected - 1)]  # decodes, or raises on a corrupt file
    except Exception as e:  # any unreadable record
      return f'reading {split} failed: {e}'
  return None


def _builder_config(config):
  """The embedded dataset's builder config that `config` names, or None (TFDS datasets)."""
  if config.name not in LOCAL_BUILDERS:
    return None
  variant = resolved_variant(config)
  return next((c for c in LOCAL_BUILDERS[config.name].BUILDER_CONFIGS if c.name == variant), None)


def frames(config) -> int:
  """Frames per example: T for a dataset of clips (lab_shapes/res64_clips), 0 for stills."""
  return getattr(_builder_config(config), 'frames', 0)


def has_instances(config) -> bool:
  """Whether the examples carry instance ids (an 'instance' feature)."""
  return bool(getattr(_builder_config(config), 'instances', False))


def instance_variants(config, clips: bool = False) -> list[str]:
  """The variants of config's dataset with instance ids: stills, or with `clips` clips."""
  if config.name not in LOCAL_BUILDERS:
    return []
  return [
    c.name
    for c in LOCAL_BUILDERS[config.name].BUILDER_CONFIGS
    if getattr(c, 'instances', False) and bool(getattr(c, 'frames', 0)) == clips
  ]
