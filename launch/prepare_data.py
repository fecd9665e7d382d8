"""Builds (or checks) a dataset and prints its classes and split sizes.

  python -m launch.prepare_data --name lab_shapes --variant res64 [--data_dir DIR]

Local datasets (lab_shapes, fashion_scenes) are generated into the TFDS data dir
(rebuilt if the copy there is broken); for TFDS datasets prepared elsewhere this
only checks that they are, and says how to prepare them if not.
"""

from absl import app
from absl import flags

from launch import cli
from research import data

_NAME = flags.DEFINE_enum('name', 'lab_shapes', data.names(), 'Dataset to prepare.')
_VARIANT = flags.DEFINE_string('variant', 'res64', "Builder config ('' for none).")
_DATA_DIR = flags.DEFINE_string(
  'data_dir', '', "TFDS data dir ('': $TFDS_DATA_DIR or ~/tensorflow_datasets)."
)
_TFDS_NAME = flags.DEFINE_string('tfds_name', '', 'For --name=tfds: the TFDS dataset.')
_LABEL_MAP = flags.DEFINE_list('label_map', [], 'For --name=tfds: raw=class pairs, e.g. 1=0,2=1.')
_SPLITS = flags.DEFINE_list(
  'splits',
  ['train', 'validation', 'test'],
  'Train, eval and test split, e.g. train[:90%],train[90%:],test.',
)


def main(argv):
  del argv
  if len(_SPLITS.value) != 3:
    raise app.UsageError(f'--splits takes train,eval,test splits; got {_SPLITS.value}.')
  train, eval_, test = _SPLITS.value
  config = data.default_config(
    name=_NAME.value,
    variant=_VARIANT.value,
    data_dir=_DATA_DIR.value,
    tfds_name=_TFDS_NAME.value,
    label_map=dict(pair.split('=') for pair in _LABEL_MAP.value),
    train_split=train,
    eval_split=eval_,
    test_split=test,
  )
  data.prepare(config)
  info = data.dataset_info(config)
  print(
    f'{_NAME.value} {_VARIANT.value}: {info.num_classes} classes: {", ".join(info.class_names)}'
  )
  for split, n in info.num_examples.items():
    print(f'  {split}: {n} examples')


if __name__ == '__main__':
  cli.run(main)
