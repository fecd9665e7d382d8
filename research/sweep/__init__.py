"""Sweeps: a grid of config overrides, one workdir per cell, run locally or as a Slurm array.

An experiment file defines its grid next to `get_config(arg)` as `get_sweep(arg)`, a
list of cells, each a dict of dotted config keys -> values:

  def get_sweep(arg=None):
    return grids.product(grids.axis('model.arch', ['fcn8s', 'unet']),
                         grids.axis('model.upsampler', ['nearest', 'transpose_conv']),
                         grids.axis('seed', range(3)))

Every cell is one `python -m launch.train --config FILE[:ARG] --workdir ROOT/NAME
--config.KEY=VALUE ...` process, so that a crash stays inside its cell (with
config.seeds_together > 1, the seeds of a cell share one process). launch.train
resumes a partial workdir and returns at once for a finished one, hence running a sweep
again after a crash or a kill finishes it without redoing work.

Modules, one job each: archive (finished cells kept where workdirs do not last), grids
(axis, product, zip_: all an experiment file needs), naming
(cell names), cells (cells, their commands and processes, the sweep root's index), locks
(status and per-workdir locks), local and slurm (the two backends). The names below are
the ones launch.sweep, launch.table and scripts use.
"""

from research.sweep import archive
from research.sweep import cells
from research.sweep import grids
from research.sweep import local
from research.sweep import locks
from research.sweep import naming
from research.sweep import progress
from research.sweep import slurm
from research.sweep.cells import INDEX
from research.sweep.cells import LOG
from research.sweep.cells import REPO
from research.sweep.cells import Cell
from research.sweep.cells import apply_overrides
from research.sweep.cells import get_sweep
from research.sweep.cells import jobs
from research.sweep.cells import load_experiment
from research.sweep.cells import plan
from research.sweep.cells import read_index
from research.sweep.cells import select
from research.sweep.cells import split_spec
from research.sweep.cells import write_index
from research.sweep.grids import axis
from research.sweep.grids import product
from research.sweep.grids import zip_
from research.sweep.local import run_job
from research.sweep.local import run_local
from research.sweep.local import summary
from research.sweep.locks import LOCK
from research.sweep.locks import STATUSES
from research.sweep.locks import acquire_lock
from research.sweep.locks import counts
from research.sweep.locks import format_status
from research.sweep.locks import release_lock
from research.sweep.locks import status
from research.sweep.naming import cell_names
from research.sweep.naming import safe
from research.sweep.naming import short_keys
from research.sweep.slurm import slurm_script
