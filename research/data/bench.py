"""How fast the train pipeline delivers images, to compare with how fast a model eats them."""

import time

from research import data


def pipeline_images_per_second(config, batch_size: int, num_batches: int) -> float:
  """Train images per second over `num_batches` batches, after the first (which pays
  for opening the source and starting threads or workers)."""
  data.prepare(config)
  batches = data.train_batches(config, global_batch_size=batch_size, seed=0)
  next(batches)
  start = time.perf_counter()
  for _ in range(num_batches):
    next(batches)
  return num_batches * batch_size / (time.perf_counter() - start)
