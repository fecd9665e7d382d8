"""lab_shapes' instance ids and clips (issue 20): the configs res64_instances(_tiny) and
res64_clips(_tiny), their generators, and rigid motion (research/data/motion.py).

Builds only the tiny configs (96 still examples, 16 clips of 8 frames) into a temporary dir.
"""

import hashlib

import numpy as np
import pytest
from scipy import ndimage
import tensorflow_datasets as tfds

from research import data
from research.data import catalog
from research.data import lab_shapes
from research.data import motion

# sha256 (first 16 hex digits) of image bytes + label bytes of lab_shapes.generate, taken
# from the generator before instance ids and clips existed (commit dc8f806).
FROZEN = {
  (64, 'train', 0): 'b02d67fe5d77409c',
  (64, 'train', 7): '3609428bba596ccc',
  (64, 'validation', 3): '9068ac109a17e8fc',
  (64, 'test', 15): '2f311e087c76924a',
  (128, 'train', 1): '3666c54991add5e8',
}
EIGHT = np.ones((3, 3), bool)


def _digest(image, labels):
  return hashlib.sha256(image.tobytes() + labels.tobytes()).hexdigest()[:16]


def _source(path, variant, split):
  return tfds.data_source(
    f'lab_shapes/{variant}',
    split=split,
    data_dir=str(path),
    download=False,
    builder_kwargs={'file_format': 'array_record'},
  )


def _check_ids(labels, instances):
  """Ids agree with classes: 0 exactly on background, one thing class per id, ids 1..N
  (over a clip's frames together: an object may leave or hide in some frames)."""
  assert ((instances == 0) == (labels == 0)).all()
  ids = np.unique(instances)
  assert (ids == np.arange(len(ids))).all()
  for i in ids[1:]:
    classes = np.unique(labels[instances == i])
    assert len(classes) == 1 and classes[0] in lab_shapes.THING_CLASSES


@pytest.mark.parametrize('where', sorted(FROZEN))
def test_semantic_examples_are_unchanged(where):
  assert _digest(*lab_shapes.generate(where[0], 0, *where[1:])) == FROZEN[where]


def test_semantic_configs_have_no_instance_feature():
  builder = lab_shapes.LabShapes(config='res64_tiny', data_dir='/nonexistent')
  assert set(builder.info.features) == {'image', 'segmentation_mask'}
  assert set(builder.example('train', 0)) == {'image', 'segmentation_mask'}


@pytest.mark.parametrize('index', range(6))
def test_instance_examples_are_semantic_examples_plus_ids(index):
  image, labels, instances = lab_shapes.generate_instances(64, 0, 'validation', index)
  still_image, still_labels = lab_shapes.generate(64, 0, 'validation', index)
  assert np.array_equal(image, still_image) and np.array_equal(labels, still_labels)
  assert instances.dtype == np.uint8 and instances.shape == labels.shape
  _check_ids(labels, instances)
  # A thin object never touches another of its class, so each 8-connected piece of a thin
  # class is one object: one id, and an id's pixels of that class are that one object.
  for cls in lab_shapes.THIN_CLASSES:
    pieces, n = ndimage.label(labels == cls, EIGHT)
    for piece in range(1, n + 1):
      assert len(np.unique(instances[pieces == piece])) == 1


def test_objects_of_one_class_that_overlap_keep_their_own_ids():
  # Blobs and polygons may overlap their own class: somewhere, one 8-connected region of a
  # class holds two ids, which the semantic labels alone could not tell apart.
  merged = 0
  for index in range(16):
    _, labels, instances = lab_shapes.generate_instances(64, 0, 'train', index)
    for cls in (lab_shapes.BLOB, lab_shapes.POLYGON):
      pieces, n = ndimage.label(labels == cls, EIGHT)
      merged += sum(len(np.unique(instances[pieces == p])) > 1 for p in range(1, n + 1))
  assert merged > 0


def test_consecutive_ids_close_the_gaps_of_hidden_objects():
  ids = np.array([[0, 3, 3], [7, 0, 9]])
  assert lab_shapes.consecutive_ids(ids).tolist() == [[0, 1, 1], [2, 0, 3]]
  assert lab_shapes.consecutive_ids(np.array([[2, 5]])).tolist() == [[1, 2]]
  with pytest.raises(ValueError, match='256 instances do not fit uint8'):
    lab_shapes.consecutive_ids(np.arange(257))


def test_clips_are_deterministic_and_labelled_per_frame():
  images, labels, instances = lab_shapes.generate_clip(64, 0, 'train', 3)
  assert images.shape == (8, 64, 64, 3) and images.dtype == np.uint8
  assert labels.shape == instances.shape == (8, 64, 64)
  again = lab_shapes.generate_clip(64, 0, 'train', 3)
  assert all(np.array_equal(a, b) for a, b in zip((images, labels, instances), again))
  assert not np.array_equal(lab_shapes.generate_clip(64, 0, 'train', 4)[1], labels)
  _check_ids(labels, instances)  # also: one id is one object, whose class never changes
  for t in range(8):
    for cls in lab_shapes.THIN_CLASSES:  # thin in every frame, as in the stills
      assert not ndimage.binary_erosion(labels[t] == cls, np.ones((3, 3))).any()


def test_clip_objects_move_smoothly_by_a_few_pixels_per_frame():
  steps = []
  for index in range(4):
    _, _, instances = lab_shapes.generate_clip(64, 0, 'validation', index)
    for i in range(1, instances.max() + 1):
      masks = instances == i  # [T, H, W]
      area = masks.sum((1, 2))
      for t in range(7):  # steps where the object is whole-ish in both frames
        if area[t] >= 20 and abs(int(area[t + 1]) - int(area[t])) <= 0.1 * area[t]:
          a, b = (np.array(ndimage.center_of_mass(m)) for m in masks[t : t + 2])
          steps.append(np.hypot(*(b - a)))
  steps = np.array(steps)
  assert len(steps) > 50
  # 0.5-2 px of translation plus at most 0.06 rad of turn per frame.
  assert np.median(steps) > 0.4 and np.percentile(steps, 90) < 3.5


def test_clip_background_drifts_slowly():
  images, labels, _ = lab_shapes.generate_clip(64, 0, 'test', 1)
  frames = images.astype(np.float64)
  both = (labels[:-1] == 0) & (labels[1:] == 0)
  change = np.abs(frames[1:] - frames[:-1]).mean(-1)[both].mean()  # per 255
  noise_only = 0.03 * 255 * 2 / np.sqrt(np.pi)  # E|n1 - n2| for N(0, 0.03) noise: ~8.6
  assert 0 < change - noise_only < 4


def test_motion_moves_and_turns_points_rigidly():
  move = motion.Motion(centre=(10.0, 20.0), velocity=(1.0, -2.0), spin=np.pi / 2 / 3)
  yy, xx = np.array([[10.0, 11.0]]), np.array([[20.0, 25.0]])
  assert np.allclose(np.stack(move.local(yy, xx, 0)), np.stack([yy, xx]))
  # After 3 frames the centre is at (13, 14) and the object has turned by 90 degrees: the
  # point 5 px along +x of the centre in the object's frame-0 pose is now 5 px along ±y.
  ly, lx = move.local(np.array([13.0, 13.0, 18.0]), np.array([14.0, 19.0, 14.0]), 3)
  assert np.allclose(ly[0], 10) and np.allclose(lx[0], 20)
  assert np.allclose(np.hypot(ly - 10, lx - 20), [0, 5, 5], atol=1e-5)
  assert np.allclose(ly[2], 10, atol=1e-5) and np.allclose(lx[2], 25, atol=1e-5)
  # Every point that lies in the frame-0 box once carried back lies in the frame-t box.
  yy, xx = np.meshgrid(np.linspace(0, 30, 301), np.linspace(0, 40, 401), indexing='ij')
  for t in range(6):
    ly, lx = move.local(yy, xx, t)
    held = (ly >= 8) & (ly <= 12) & (lx >= 17) & (lx <= 23)
    y0, y1, x0, x1 = move.box((8.0, 12.0, 17.0, 23.0), t)
    assert held.sum() > 100
    assert ((yy[held] >= y0) & (yy[held] <= y1) & (xx[held] >= x0) & (xx[held] <= x1)).all()


def test_tiny_instance_and_clip_configs_build_and_read_back(tmp_path):
  for variant in ('res64_instances_tiny', 'res64_clips_tiny'):
    config = data.default_config(variant=variant, data_dir=str(tmp_path))
    info = data.dataset_info(config)  # builds it
    sizes = lab_shapes.LabShapes.builder_configs[variant].num_examples()
    assert info.num_examples == sizes and info.num_classes == 6
    assert catalog.resolve(config).tfds_name == f'lab_shapes/{variant}'
  record = _source(tmp_path, 'res64_instances_tiny', 'validation')[5]
  image, labels, instances = lab_shapes.generate_instances(64, 0, 'validation', 5)
  assert np.array_equal(record['image'], image)
  assert np.array_equal(record['segmentation_mask'][..., 0], labels)
  assert np.array_equal(record['instance'][..., 0], instances)
  record = _source(tmp_path, 'res64_clips_tiny', 'test')[2]
  images, labels, instances = lab_shapes.generate_clip(64, 0, 'test', 2)
  assert np.array_equal(np.stack(record['image']), images)
  assert np.array_equal(np.stack(record['segmentation_mask'])[..., 0], labels)
  assert np.array_equal(np.stack(record['instance'])[..., 0], instances)
