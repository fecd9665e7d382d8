"""Which method a config runs, by name (`config.method`), as scenic's trainers.get_trainer.

A runner takes a config and {seed: workdir} and returns {seed: final metrics}, leaving each
workdir as a finished run (config.json, final.json), so that sweeps and tables treat every
method alike. To add a method: write its runner module and add one line here.
"""

from typing import Callable, Mapping

from research import instance_run
from research import kmeans_run
from research import panoptic_run
from research import train
from research import video_run

Runner = Callable[..., dict]

_REGISTRY: dict[str, Runner] = {
  'train': train.train_and_evaluate_seeds,  # supervised training of config.model
  'kmeans': kmeans_run.run_seeds,  # the clustering baseline (experiments/clustering.py)
  'instance': instance_run.run_seeds,  # Mask R-CNN's mask head (experiments/instance.py)
  'panoptic': panoptic_run.run_seeds,  # Panoptic-DeepLab's heads (experiments/panoptic.py)
  'video': video_run.run_seeds,  # train, then flicker on clips (experiments/video.py)
}


def names() -> list[str]:
  return sorted(_REGISTRY)


def get(method: str) -> Runner:
  """The runner registered under `method`."""
  if method not in _REGISTRY:
    raise ValueError(
      f'Unknown method {method!r} (config.method); known methods: {", ".join(names())}.'
    )
  return _REGISTRY[method]


def run_seeds(config, workdirs: Mapping[int, str]) -> dict[int, dict]:
  """Runs config.method for each seed's workdir."""
  return get(config.method)(config, workdirs)


def run(config, workdir: str) -> dict:
  """Runs config.method for config.seed in `workdir`; returns its final metrics."""
  return run_seeds(config, {config.seed: workdir})[config.seed]
