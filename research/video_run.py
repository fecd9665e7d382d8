"""Temporal consistency (issue 20) as a run (config.method = 'video').

The semantic model is trained exactly as method 'train' trains it (research.train, on the
still images of config.data: val and test scores, shift consistency among them, in
final.json); then its final parameters label every frame of the clips of
config.video.variant's config.video.split (lab_shapes/res64_clips: 8 frames in which the
objects move 0.5-2 px and turn, over a drifting background), one frame at a time, and
final.json gets a 'video' section:

* 'miou' (and 'iou_per_class'): per-frame mIoU, from the confusion summed over every frame
  of every clip; 'per_frame_miou' [T]: the same for frame t of each clip alone;
* 'flicker': the share of pixel pairs (t, t + 1) whose predicted label changes where the
  ground-truth label does not (research.video_metrics), summed over the split;
* 'shift_consistency' and 'still_miou': the still test split's, side by side. Shift
  consistency asks whether labels survive a whole-image translation of s px; flicker asks
  whether they survive the small sub-pixel and whole-pixel motions of a clip, object by
  object: a decoder that is not shift-equivariant should lose on both.

Each clip's values go to workdir/per_clip_<split>.npz (per-frame confusions, changed and
stable pair counts), for paired statistics. The clips are evaluated before final.json is
written (the training loop's `finish`), so that a run is finished only with them; a run
whose final.json lacks them (written by an earlier version, killed in between) gets them
from its last checkpoint when run again. Every process evaluates the whole clip split on
its first device; process 0 writes.
"""

import functools
import os
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from research import data
from research import decoder_metrics
from research import inference
from research import metrics
from research import predict
from research import steps
from research import tasks
from research import train
from research import video_metrics
from research import workdir as workdir_lib
from research.data import catalog


def clip_data_config(config):
  """config.data with the clip variant of config.video: the same size, classes and dir."""
  clips = config.data.copy_and_resolve_references()
  clips.variant = config.video.variant
  return clips


def check(config):
  """Refuses a config without clips to evaluate on, saying which variants have them."""
  if 'video' not in config:
    raise ValueError("method 'video' needs config.video (variant, split): experiments/video.py.")
  if not catalog.frames(clip_data_config(config)):
    valid = ', '.join(catalog.instance_variants(config.data, clips=True)) or 'none'
    raise ValueError(
      f'config.video.variant={config.video.variant!r} is not a dataset of clips; '
      f'variants of {config.data.name} with clips: {valid}.'
    )


def labels_fn(model, params, batch_size: int):
  """frames float [N, S, S, 3] -> labels int [N, S, S], in compiled chunks of batch_size
  (the last one padded)."""
  step = jax.jit(lambda p, x: jnp.argmax(model.apply({'params': p}, x), axis=-1))

  def labels(frames):
    out = []
    for i in range(0, len(frames), batch_size):
      part = frames[i : i + batch_size]
      padded = np.concatenate([part, np.zeros((batch_size - len(part),) + part.shape[1:])])
      out.append(np.asarray(step(params, padded.astype(np.float32)))[: len(part)])
    return np.concatenate(out)

  return labels


def evaluate_clips(labels, data_config, split: str, info, batch_size: int) -> tuple[dict, dict]:
  """(scores, per_clip) of `labels` (labels_fn) on every clip of `split`."""
  frames = catalog.frames(data_config)
  per_clip = {'confusion': [], 'changed': [], 'stable': []}
  for batch in data.eval_clips(data_config, split, global_batch_size=max(1, batch_size // frames)):
    images, truth = batch['image'][batch['valid']], batch['label'][batch['valid']]
    preds = labels(images.reshape(-1, *images.shape[2:])).reshape(truth.shape)
    per_clip['confusion'].append(video_metrics.per_frame_confusion(truth, preds, info.num_classes))
    changed, stable = video_metrics.flicker_counts(truth, preds, info.ignore_label)
    per_clip['changed'].append(changed)
    per_clip['stable'].append(stable)
  per_clip = {k: np.concatenate(v) for k, v in per_clip.items()}
  per_frame = per_clip['confusion'].sum(0)  # [T, K, K]
  stable = per_clip['stable'].sum()
  scores = {
    **metrics.region_scores(per_frame.sum(0), info.class_names),
    'per_frame_miou': decoder_metrics.mean_iou(per_frame).tolist(),
    'flicker': float(per_clip['changed'].sum() / stable) if stable else float('nan'),
    'clips': len(per_clip['stable']),
  }
  return scores, per_clip


def with_clips(final: dict, params, config, info, workdir: str) -> dict:
  """final with its 'video' section, from `params` (on one device; per_clip_<split>.npz
  written by process 0)."""
  model = steps.build_model(config, info.num_classes)
  clips = clip_data_config(config)
  scores, per_clip = evaluate_clips(
    labels_fn(model, params, config.eval_batch_size),
    clips,
    config.video.split,
    info,
    config.eval_batch_size,
  )
  scores['variant'], scores['split'] = catalog.resolved_variant(clips), config.video.split
  scores['shift_consistency'] = final['test'].get('shift_consistency')  # the stills'
  scores['still_miou'] = final['test']['miou']
  if jax.process_index() == 0:
    workdir_lib.write_npz_atomic(
      os.path.join(workdir, f'per_clip_{config.video.split}.npz'), per_clip
    )
  return {**final, 'video': scores}


def _finish_with_clips(final, params, config, info, workdir):
  """The task's `extend`: the trained parameters (replicated over the mesh) evaluated on
  the clips from this process's first device, as every process does."""
  device = jax.local_devices()[0]
  local = jax.tree.map(lambda x: jax.device_put(np.asarray(x.addressable_data(0)), device), params)
  return with_clips(final, local, config, info, workdir)


VIDEO = tasks.SEMANTIC._replace(finish=functools.partial(predict.finish, extend=_finish_with_clips))


def add_video(config, workdir: str, final: dict) -> dict:
  """final with its 'video' section, written to final.json, from workdir's last checkpoint:
  for runs whose final.json has none (finished by a version that wrote it after the stills'
  final.json, and killed in between)."""
  _, params, _ = inference.load(workdir, config.num_steps)
  final = with_clips(final, params, config, data.dataset_info(config.data), workdir)
  if jax.process_index() == 0:
    workdir_lib.write_json_atomic(os.path.join(workdir, 'final.json'), final)
  return final


def run_seeds(config, workdirs: Mapping[int, str]) -> dict[int, dict]:
  """Trains each seed as method 'train' does (resuming, or returning finished runs), with
  the clip evaluation before final.json; adds it where a final.json lacks it."""
  check(config)
  workdirs = workdir_lib.checked_workdirs(workdirs)
  finals = train.train_and_evaluate_seeds(config, workdirs, VIDEO)
  return {
    s: f if 'video' in f else add_video(workdir_lib.with_seed(config, s), workdirs[s], f)
    for s, f in ((s, finals[s]) for s in workdirs)
  }
