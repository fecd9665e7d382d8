"""The process's set-up for a run: joining the other processes, and the compilation cache."""

import os

import jax


def initialize_distributed(coordinator_address: str, num_processes: int, process_id: int):
  """Joins a run of `num_processes` processes (JAX's multi-controller runtime); on CPU the
  collectives between processes go through gloo."""
  if num_processes < 2 or not 0 <= process_id < num_processes or not coordinator_address:
    raise ValueError(
      f'A multi-process run needs a coordinator address (host:port), at least 2 '
      f'processes and a process id in [0, processes); got '
      f'{coordinator_address!r}, {num_processes}, {process_id}.'
    )
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address, num_processes, process_id)


def maybe_initialize_distributed(config):
  """Multi-host: join the other processes when the config or the environment asks for it."""
  # is_initialized, not process_count(): the latter starts the backend, after which
  # initialize() refuses to run.
  under_srun = int(os.environ.get('SLURM_STEP_NUM_TASKS', '1')) > 1  # Slurm's env says who
  if (
    config.distributed or under_srun or 'JAX_COORDINATOR_ADDRESS' in os.environ
  ) and not jax.distributed.is_initialized():
    if jax.config.jax_platforms in (None, '', 'cpu'):  # CPU collectives across processes
      jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize()


def enable_compilation_cache(workdir: str):
  """JAX's persistent compilation cache, shared by the runs under the workdir's parent
  (a sweep root): the cells of a sweep compile many identical programs."""
  if jax.config.jax_compilation_cache_dir is None:
    jax.config.update(
      'jax_compilation_cache_dir', os.path.join(os.path.dirname(workdir), '.jax_cache')
    )
