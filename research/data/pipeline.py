"""grain pipelines from a random-access source to model batches.

Train batches are a pure function of (seed, step): a `MapDataset` is random access,
so the pipeline is an index computation (shuffle per epoch, augment with an rng
derived from the element's position, batch) and resuming at step N is slicing the
batch sequence at N. Global batch k holds stream elements [kB, (k+1)B); process p
of P takes every P-th of them from p, so the processes' batches together are the
global batch, whatever P is.
"""

import functools

from absl import flags
import grain
import numpy as np
import PIL.Image


def label_table(label_map: dict[int, int], ignore_label: int) -> np.ndarray:
  """int32 [256]: class id of every uint8 mask value; unmapped values -> ignore label."""
  table = np.full(256, ignore_label, np.int32)
  for raw, cls in label_map.items():
    table[raw] = cls
  return table


def _nearest(mask: np.ndarray, size: int) -> np.ndarray:
  """uint8 [h, w] -> [S, S] by nearest neighbour (no two values ever blend)."""
  if mask.shape == (size, size):
    return mask
  return np.asarray(PIL.Image.fromarray(mask).resize((size, size), PIL.Image.NEAREST))


def decode(
  example: dict,
  *,
  image_key: str,
  mask_key: str,
  size: int,
  table: np.ndarray,
  instance_key: str = '',
) -> dict:
  """A source example -> {'image': uint8 [S, S, 3], 'label': int32 [S, S]}, and with
  `instance_key` its instance ids 'instance': int32 [S, S] (0: none).

  Images are resized bilinearly, masks and ids by nearest neighbour (masks before the
  label table, so no two raw values ever blend).
  """
  image, mask = example[image_key], example[mask_key][..., 0]  # [h, w, c], [h, w]
  if mask.dtype != np.uint8:
    raise ValueError(f'Masks must be uint8 to map labels; {mask_key!r} is {mask.dtype}.')
  if image.shape != (size, size, 3):
    pil = PIL.Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).convert('RGB')
    image = np.asarray(pil.resize((size, size), PIL.Image.BILINEAR))
  decoded = {'image': image, 'label': table[_nearest(mask, size)]}
  if instance_key:
    decoded['instance'] = _nearest(example[instance_key][..., 0], size).astype(np.int32)
  return decoded


def decode_clip(
  example: dict, *, image_key: str, mask_key: str, instance_key: str = '', **options
) -> dict:
  """A source clip (a list of frames per feature) -> `decode`'s fields stacked over frames:
  'image' uint8 [T, S, S, 3], 'label' int32 [T, S, S] (and with instance_key 'instance')."""
  keys = [image_key, mask_key] + ([instance_key] if instance_key else [])
  frames = [
    decode(
      dict(zip(keys, frame)),
      image_key=image_key,
      mask_key=mask_key,
      instance_key=instance_key,
      **options,
    )
    for frame in zip(*(example[k] for k in keys))
  ]
  return {key: np.stack([f[key] for f in frames]) for key in frames[0]}


def augment(example: dict, rng: np.random.Generator, *, flip: bool, crop_padding: int) -> dict:
  """Random horizontal flip, and a random S×S crop of the reflect-padded example; the same
  for every field ('image' [S, S, 3], 'label' and 'instance' [S, S])."""
  example = dict(example)
  if flip and rng.random() < 0.5:
    example = {k: v[:, ::-1] for k, v in example.items()}
  if crop_padding:
    size, p = example['label'].shape[0], crop_padding
    dy, dx = rng.integers(0, 2 * p + 1, size=2)
    example = {
      k: np.pad(v, ((p, p), (p, p)) + ((0, 0),) * (v.ndim - 2), mode='reflect')[
        dy : dy + size, dx : dx + size
      ]
      for k, v in example.items()
    }
  return example


def to_model_inputs(batch: dict) -> dict:
  """uint8 images -> float32 in [0, 1], once per batch; other fields unchanged."""
  return {**batch, 'image': np.divide(batch['image'], np.float32(255), dtype=np.float32)}


def local_batch_size(global_batch_size: int, process_index: int, process_count: int) -> int:
  """This process's share of a global batch; raises unless it divides evenly."""
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index must be in [0, {process_count}); got {process_index}.')
  if global_batch_size <= 0 or global_batch_size % process_count:
    raise ValueError(
      f'global_batch_size ({global_batch_size}) must be a positive multiple of '
      f'process_count ({process_count}).'
    )
  return global_batch_size // process_count


def train_dataset(
  source,
  decode_fn,
  *,
  global_batch_size: int,
  seed: int,
  start_step: int,
  process_index: int,
  process_count: int,
  flip: bool,
  crop_padding: int,
  transform=None,
) -> grain.MapDataset:
  """Infinite train batches from `start_step` on; batch k depends only on (seed, k).

  Each epoch is a fresh shuffle cut to whole global batches, so no batch spans two
  epochs and every process sees the same number of batches per epoch. `transform`
  (picklable, example -> example) runs on each augmented example: a task's targets.
  """
  b = local_batch_size(global_batch_size, process_index, process_count)
  steps_per_epoch = len(source) // global_batch_size
  if not steps_per_epoch:
    raise ValueError(
      f'The train split has {len(source)} examples, fewer than one global batch '
      f'({global_batch_size}).'
    )
  used = steps_per_epoch * global_batch_size
  # The shuffle is reseeded every epoch by repeat() below.
  return (
    grain.MapDataset.source(source)
    .seed(seed)
    .shuffle()[:used]
    .map(decode_fn)
    .random_map(functools.partial(augment, flip=flip, crop_padding=crop_padding))
    .map(transform or _same)[process_index::process_count]
    .batch(b, drop_remainder=True)
    .map(to_model_inputs)
    .repeat()[start_step:]
  )


def eval_dataset(
  source,
  decode_fn,
  *,
  global_batch_size: int,
  process_index: int,
  process_count: int,
  size: int,
  ignore_label: int,
  frames: int = 0,
  instances: bool = False,
  transform=None,
) -> grain.MapDataset:
  """Every example once, padded to whole global batches; `valid` marks the real ones.

  frames: 0 for still images, T for clips ([T, S, S, ...] per example); instances: the
  examples carry 'instance' ids (padding: 0); transform: as train_dataset's.
  """
  b = local_batch_size(global_batch_size, process_index, process_count)
  n = len(source)
  num_padding = -n % global_batch_size
  lead = (frames,) if frames else ()
  pad = {
    'image': np.zeros(lead + (size, size, 3), np.uint8),
    'label': np.full(lead + (size, size), ignore_label, np.int32),
  }
  if instances:
    pad['instance'] = np.zeros(lead + (size, size), np.int32)
  pad = {**(transform or _same)(pad), 'valid': False}
  examples = grain.MapDataset.source(source).map(decode_fn).map(transform or _same).map(_valid)
  padding = grain.MapDataset.source([pad] * num_padding)
  return (
    grain.MapDataset.concatenate([examples, padding])[process_index::process_count]
    .batch(b)
    .map(to_model_inputs)
  )


def _same(example: dict) -> dict:
  return example


def _valid(example: dict) -> dict:
  return {**example, 'valid': True}


def iterate(
  dataset: grain.MapDataset, *, prefetch: int, worker_count: int
) -> grain.DatasetIterator:
  """Iterates `dataset` with `prefetch` batches built ahead in threads, in
  `worker_count` processes if > 0 (order and content do not depend on either)."""
  read_options = grain.ReadOptions(num_threads=prefetch, prefetch_buffer_size=prefetch)
  ds = dataset.to_iter_dataset(read_options)
  if worker_count:
    if not flags.FLAGS.is_parsed():
      # grain 0.2.18's mp_prefetch reads an absl flag and fails outside an absl app
      # (google/grain#1355). Marked parsed, unparsed flags read as their defaults.
      flags.FLAGS.mark_as_parsed()
    ds = ds.mp_prefetch(
      grain.MultiprocessingOptions(
        num_workers=worker_count, per_worker_buffer_size=max(prefetch, 1)
      )
    )
  return iter(ds)
