"""A train step timed in a fresh process, so that XLA flags (read once per process) and the
compilation cache can be measured: `python -m research.bench.child CONFIG_JSON REPEATS`
prints train_step.train_step's row as one JSON line."""

import json
import sys

import ml_collections

from research import xla_flags
from research.bench import train_step


def main(argv):
  config = ml_collections.ConfigDict(json.loads(argv[1]))
  print(json.dumps(train_step.train_step(config, repeats=int(argv[2]))))


if __name__ == '__main__':
  xla_flags.apply()
  main(sys.argv)
