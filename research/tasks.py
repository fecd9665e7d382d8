"""What the training loop (research.train) is asked to learn: a `Task` names the model, the
jitted steps (loss and predictions), the batches and the evaluations of one kind of
supervision, so that every task trains through the same loop: checkpoints, resume,
preemption, seeds together, config.json, metrics.jsonl and final.json.

`SEMANTIC` is per-pixel classification (config.method 'train'); research.panoptic_run and
research.instance_run define the others (issue 20).
"""

from typing import Callable, NamedTuple

from research import predict
from research import steps


class Task(NamedTuple):
  # (config, num_classes of the dataset) -> the Flax model
  build_model: Callable
  # (model, tx, config, num_classes, mesh, num_seeds=1, donate=True) -> steps.Steps
  make_steps: Callable
  # (config, num_seeds, size, num_sampled, sharding) -> the abstract [S, B, ...] batch
  batch_shapes: Callable
  # (config, seeds, start, size, num_sampled, sharding) -> next_batch(step)
  batch_source: Callable
  # (steps, params, config, split, info) -> the split's scores (periodic evaluations)
  evaluate: Callable
  # (steps, params, init_params, config, info, shared_cost, writer, workdir) -> final.json
  finish: Callable
  # (config, info) -> None: refuses what the task cannot run, before a workdir is claimed
  check: Callable = lambda config, info: None


SEMANTIC = Task(
  build_model=steps.build_model,
  make_steps=steps.make_steps,
  batch_shapes=steps.batch_shapes,
  batch_source=steps.batch_source,
  evaluate=predict.evaluate,
  finish=predict.finish,
)
