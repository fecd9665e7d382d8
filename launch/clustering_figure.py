r"""The segmentation-as-clustering picture: input, quantised image, superpixels, ground truth.

python -m launch.clustering_figure --out results/clustering.png
"""

from absl import app
from absl import flags

from launch import cli
from research import data
from research.tables import qualitative

_OUT = flags.DEFINE_string('out', 'results/clustering.png', 'PNG to write.')
_NUM_IMAGES = flags.DEFINE_integer('num_images', 4, 'Test images, one per row.', lower_bound=1)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  qualitative.plot_clustering_examples(data.default_config(), _OUT.value, _NUM_IMAGES.value)
  print(f'Wrote {_OUT.value}')


if __name__ == '__main__':
  cli.run(main)
