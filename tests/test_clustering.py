"""k-means segmentation and its scores against hand-made images and partitions."""

import json

import jax
import numpy as np
import pytest
from scipy import ndimage

from experiments import clustering as experiment
from research import clustering
from research import kmeans_run
from research import metrics
from research import runners
from research import tables

# Jitted once per shape and static arguments; eager dispatch of the loops would dominate.
jit_kmeans = jax.jit(clustering.kmeans, static_argnames=('k', 'num_iters'))
jit_segment = jax.jit(clustering.segment, static_argnames=('k', 'space', 'num_iters'))
KEY = jax.random.key(0)
COLOURS = np.array([[[0.9, 0.1, 0.2], [0.1, 0.3, 0.8]], [[0.2, 0.7, 0.1], [1.0, 1.0, 0.0]]])


def two_colour_images(seed=0):
  """Images `[2, 16, 16, 3]` of two colours each on a random mask; returns (images, masks)."""
  masks = np.random.default_rng(seed).random((2, 16, 16)) < 0.4  # [2, 16, 16]
  images = np.where(masks[..., None], COLOURS[:, None, None, 1], COLOURS[:, None, None, 0])
  return images.astype(np.float32), masks


def noisy_grey_images(seed=0):
  """Images `[2, 16, 16, 3]`: mid grey plus uniform noise of +-0.05 per channel."""
  return (0.5 + np.random.default_rng(seed).uniform(-0.05, 0.05, (2, 16, 16, 3))).astype(np.float32)


def assert_equal_up_to_permutation(ids, reference):
  """ids and reference `[...]` are the same partition: a one-to-one map between their values."""
  pairs = np.unique(np.stack([ids.ravel(), reference.ravel()]), axis=1)  # [2, distinct pairs]
  assert len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


def halves(split=8, size=16):
  """Map `[1, size, size]`: 0 on the columns before `split`, 1 from it on."""
  return np.broadcast_to(np.arange(size) >= split, (1, size, size)).astype(np.int32)


# --- features and arguments --------------------------------------------------------------------


def test_unknown_space_and_bad_arguments_are_refused():
  images = np.zeros((2, 4, 4, 3), np.float32)
  valid = 'intensity, colour, colour_position'
  with pytest.raises(ValueError, match=f"Unknown feature space 'lab'.*{valid}"):
    clustering.features(images, 'lab')
  with pytest.raises(ValueError, match='num_segments'):
    clustering.features(images, 'colour_position')
  with pytest.raises(ValueError, match=r'\[B, H, W, 3\]'):
    clustering.features(images[..., :1], 'colour')
  with pytest.raises(ValueError, match=r'k must be in \[1, N=16\]'):
    clustering.kmeans(np.zeros((2, 16, 3)), 17, KEY)
  with pytest.raises(ValueError, match='cluster_ids and labels must both be'):
    clustering.undersegmentation_error(np.zeros((2, 4, 4), int), np.zeros((2, 4, 5), int))
  with pytest.raises(ValueError, match=r'labels must lie in \[0, 2\) or equal ignore_label=255'):
    clustering.match_clusters_to_classes(np.zeros((1, 2, 2), int), np.full((1, 2, 2), 2), 2)


def test_features_of_each_space():
  images = np.random.default_rng(0).random((2, 16, 16, 3)).astype(np.float32)
  grey = clustering.features(images, 'intensity')
  assert grey.shape == (2, 256, 1)
  np.testing.assert_allclose(grey[..., 0], (images @ [0.299, 0.587, 0.114]).reshape(2, 256), 1e-6)
  np.testing.assert_array_equal(clustering.features(images, 'colour'), images.reshape(2, 256, 3))
  feats = np.asarray(
    clustering.features(images, 'colour_position', compactness=20.0, num_segments=4)
  )  # [2, 256, 5]
  np.testing.assert_array_equal(feats[..., :3], images.reshape(2, 256, 3))
  # SLIC's distance (colour on a 0-100 scale, grid interval S = sqrt(256 / 4) = 8, m = 20)
  # is 100 times the feature distance.
  (y0, x0), (y1, x1) = (3, 5), (12, 1)
  d_c = 100 * np.linalg.norm(images[1, y0, x0] - images[1, y1, x1])
  d_s = np.hypot(y0 - y1, x0 - x1)
  slic = np.sqrt(d_c**2 + (d_s / 8) ** 2 * 20**2)
  distance = np.linalg.norm(feats[1, 16 * y0 + x0] - feats[1, 16 * y1 + x1])
  np.testing.assert_allclose(100 * distance, slic, 1e-5)


# --- k-means -----------------------------------------------------------------------------------


def test_kmeans_recovers_two_colours_exactly():
  images, masks = two_colour_images()
  centres, assignments = jit_kmeans(clustering.features(images, 'colour'), 2, KEY)
  assert assignments.shape == (2, 256) and assignments.dtype == np.int32
  for b in range(2):
    np.testing.assert_allclose(
      np.unique(centres[b], axis=0), np.unique(COLOURS[b], axis=0), atol=1e-5
    )
    assert_equal_up_to_permutation(np.asarray(assignments[b]), masks[b].ravel())


def test_kmeans_plusplus_picks_distinct_data_points():
  feats = clustering.features(noisy_grey_images(), 'colour')  # [2, 256, 3], all distinct
  centres = np.asarray(clustering.kmeans_plusplus(feats, 8, KEY))  # [2, 8, 3]
  for b in range(2):
    assert len(np.unique(centres[b], axis=0)) == 8
    assert all((feats[b] == centre).all(axis=1).any() for centre in centres[b])
  # Two distinct points: the second centre is the other one (its probability is 1).
  images, _ = two_colour_images()
  centres = np.asarray(clustering.kmeans_plusplus(clustering.features(images, 'colour'), 2, KEY))
  for b in range(2):
    np.testing.assert_array_equal(
      np.unique(centres[b], axis=0), np.unique(COLOURS[b].astype(np.float32), axis=0)
    )


def test_kmeans_is_deterministic_jit_matches_eager_and_batched_matches_per_image():
  feats = clustering.features(noisy_grey_images(), 'colour')  # [2, 256, 3]
  centres, assignments = jit_kmeans(feats, 2, KEY)
  again = jit_kmeans(feats, 2, KEY)
  eager = clustering.kmeans(feats, 2, KEY)
  for other in (again, eager):
    np.testing.assert_array_equal(other[1], assignments)
    np.testing.assert_allclose(other[0], centres, atol=1e-5)
  for b in range(2):
    single_centres, single_assignments = jit_kmeans(feats[b : b + 1], 2, KEY)
    np.testing.assert_array_equal(single_assignments[0], assignments[b])
    np.testing.assert_allclose(single_centres[0], centres[b], atol=1e-5)
  other_key = clustering.kmeans_plusplus(feats, 2, jax.random.key(1))
  assert not np.allclose(other_key, clustering.kmeans_plusplus(feats, 2, KEY))


def test_kmeans_stops_at_the_fixed_point_and_assigns_to_the_nearest_centre():
  feats = clustering.features(noisy_grey_images(), 'colour')  # [2, 256, 3]
  centres, assignments = jit_kmeans(feats, 4, KEY, num_iters=100)  # tol = 0: may stop early
  run_on = jit_kmeans(feats, 4, KEY, num_iters=100, tol=-1.0)  # all 100 iterations
  np.testing.assert_array_equal(run_on[1], assignments)
  np.testing.assert_allclose(run_on[0], centres, atol=1e-5)
  dist2 = ((np.asarray(feats)[:, :, None] - np.asarray(centres)[:, None]) ** 2).sum(-1)
  np.testing.assert_array_equal(assignments, dist2.argmin(-1))  # dist2: [2, 256, 4]
  for b, k in np.ndindex(2, 4):  # converged: every centre is the mean of its points
    np.testing.assert_allclose(centres[b, k], feats[b][assignments[b] == k].mean(0), atol=1e-5)
  unconverged = jit_kmeans(feats, 4, KEY, num_iters=0)[0]  # the k-means++ centres
  np.testing.assert_array_equal(unconverged, clustering.kmeans_plusplus(feats, 4, KEY))
  assert not np.allclose(unconverged, centres, atol=1e-4)


def test_empty_cluster_keeps_its_centre():
  images, masks = two_colour_images()
  out = jit_segment(images, 3, 'colour', KEY)  # 3 clusters, 2 colours: one stays empty
  for b in range(2):
    ids = np.asarray(out['cluster_ids'][b])
    assert len(np.unique(ids)) == 2
    assert_equal_up_to_permutation(ids, masks[b])
    colours = np.unique(out['quantised'][b].reshape(-1, 3), axis=0)
    np.testing.assert_allclose(colours, np.unique(COLOURS[b], axis=0), atol=1e-5)
  centres = jit_kmeans(clustering.features(images, 'colour'), 3, KEY)[0]  # [2, 3, 3]
  assert np.isfinite(centres).all()
  for b in range(2):  # the empty cluster's centre stays on one of the colours
    to_nearest_colour = np.abs(centres[b][:, None] - COLOURS[b][None]).max(-1).min(-1)  # [3]
    assert (to_nearest_colour < 1e-5).all()


# --- segment -----------------------------------------------------------------------------------


def test_quantised_image_has_at_most_k_colours_each_its_cluster_mean():
  images = np.random.default_rng(1).random((2, 16, 16, 3)).astype(np.float32)
  for space in ('intensity', 'colour'):
    out = jit_segment(images, 5, space, KEY)
    ids, quantised = np.asarray(out['cluster_ids']), np.asarray(out['quantised'])
    assert ids.shape == (2, 16, 16) and quantised.shape == (2, 16, 16, 3)
    for b in range(2):
      assert len(np.unique(quantised[b].reshape(-1, 3), axis=0)) <= 5
      assert len(np.unique(ids[b])) > 1
      for k in np.unique(ids[b]):
        cluster = ids[b] == k  # [16, 16]
        mean = images[b][cluster].mean(0)  # [3]
        np.testing.assert_allclose(quantised[b][cluster] - mean, 0, atol=1e-5)


def test_large_compactness_gives_compact_clusters_small_compactness_follows_colour():
  images = noisy_grey_images()
  compact = np.asarray(jit_segment(images, 4, 'colour_position', KEY, 1000.0)['cluster_ids'])
  by_colour = np.asarray(jit_segment(images, 4, 'colour_position', KEY, 1e-3)['cluster_ids'])
  for b in range(2):
    for k in np.unique(compact[b]):
      mask = compact[b] == k  # [16, 16]
      box = ndimage.find_objects(mask.astype(np.int8))[0]
      assert ndimage.label(mask)[1] == 1  # one contiguous piece
      assert mask.sum() >= 0.5 * mask[box].size  # filling most of its bounding box
    pieces = [ndimage.label(by_colour[b] == k)[1] for k in np.unique(by_colour[b])]
    assert max(pieces) > 1  # clusters of the noise are scattered
  # On a two-colour image a small compactness recovers the colour mask, a large one does not.
  images, masks = two_colour_images()
  by_colour = jit_segment(images, 2, 'colour_position', KEY, 1e-3)['cluster_ids']
  compact = jit_segment(images, 2, 'colour_position', KEY, 1000.0)['cluster_ids']
  for b in range(2):
    assert_equal_up_to_permutation(np.asarray(by_colour[b]), masks[b])
    with pytest.raises(AssertionError):
      assert_equal_up_to_permutation(np.asarray(compact[b]), masks[b])


# --- scoring -----------------------------------------------------------------------------------


def test_matching_maps_permuted_clusters_back_to_their_classes():
  labels = np.zeros((2, 6, 6), np.int32)
  labels[:, 2:, :3], labels[:, 4:, 3:] = 1, 2
  labels[0, 0, 0] = 255
  cluster_ids = np.array([5, 3, 0])[np.where(labels == 255, 0, labels)]  # 3 of 6 ids used
  cluster_ids[1] = np.array([1, 4, 2])[labels[1]]  # another permutation in image 1
  class_map = clustering.match_clusters_to_classes(cluster_ids, labels, 3)
  assert class_map.dtype == np.int32
  scored = labels != 255
  np.testing.assert_array_equal(class_map[scored], labels[scored])
  scores = metrics.segmentation_scores(metrics.confusion_matrix(labels, class_map, 3))
  assert scores['miou'] == 1.0


def test_matching_is_one_to_one_then_majority_for_extra_clusters():
  # Cluster 0: 10 px of class 0; cluster 1: 6 of class 0, 4 of class 1. Majority would name
  # both 0; the one-to-one matching names cluster 1 after class 1 (overlap 10 + 4 > 6 + 0).
  ids = np.repeat([0, 1], 10)[None, None]  # [1, 1, 20]
  labels = np.repeat([0, 0, 1], [10, 6, 4])[None, None]
  np.testing.assert_array_equal(
    clustering.match_clusters_to_classes(ids, labels, 2), np.repeat([0, 1], 10)[None, None]
  )
  # Add cluster 2: 8 px of class 1, and cluster 3, only ignored pixels. The matching takes
  # 0 -> 0 and 2 -> 1 (10 + 8 is the largest total); unmatched 1 takes its majority class 0,
  # and 3 falls back to class 0.
  ids = np.repeat([0, 1, 2, 3], [10, 10, 8, 2])[None, None]  # [1, 1, 30]
  labels = np.repeat([0, 0, 1, 1, 255], [10, 6, 4, 8, 2])[None, None]
  np.testing.assert_array_equal(
    clustering.match_clusters_to_classes(ids, labels, 2),
    np.repeat([0, 0, 1, 0], [10, 10, 8, 2])[None, None],
  )


def test_boundary_recall_of_exact_shifted_and_finer_partitions():
  labels = halves()  # boundary pixels on columns 7 and 8; tolerance 1 px at 16 x 16
  rows = np.arange(16)[None, :, None] >= 8  # [1, 16, 1]
  cases = {
    'same': (7 - labels, 1.0),
    'finer': (labels * 2 + rows, 1.0),
    'shift 1': (halves(9), 1.0),  # cluster boundary on columns 8, 9
    'shift 2': (halves(10), 0.5),  # columns 9, 10: column 7 is 2 px away
    'shift 4': (halves(12), 0.0),
    'one cluster': (np.zeros_like(labels), 0.0),
  }
  for name, (ids, expected) in cases.items():
    assert clustering.boundary_recall(ids, labels)[0] == expected, name
  assert clustering.boundary_recall(halves(10), labels, tolerance=2.0)[0] == 1.0
  ignored = np.where(np.arange(16) < 8, 255, labels)  # the only boundary runs along ignored pixels
  assert np.isnan(clustering.boundary_recall(labels, ignored)[0])


def test_undersegmentation_error_hand_values():
  labels = halves(2, 4)  # [1, 4, 4]: class 0 on columns 0-1, class 1 on 2-3
  assert clustering.undersegmentation_error(1 - labels, labels)[0] == 0.0
  rows = np.arange(4)[None, :, None] >= 2
  assert clustering.undersegmentation_error(labels * 2 + rows, labels)[0] == 0.0  # finer
  # Cluster 0 on columns 0-2 (8 px in class 0, 4 in 1), cluster 1 on column 3 (4 px in 1):
  # (min(8, 4) + min(4, 8) + min(4, 0)) / 16.
  ids = halves(3, 4)
  assert clustering.undersegmentation_error(ids, labels)[0] == 0.5
  ignored = labels.copy()
  ignored[0, 0, 0] = 255  # cluster 0 now has 7 + 4 scored px out of 15
  assert clustering.undersegmentation_error(ids, ignored)[0] == pytest.approx(8 / 15)
  assert clustering.undersegmentation_error(np.zeros_like(labels), labels)[0] == 1.0
  assert np.isnan(clustering.undersegmentation_error(ids, np.full_like(labels, 255))[0])


def test_segment_match_and_metrics_end_to_end():
  images, masks = two_colour_images()
  labels = masks.astype(np.int32)  # the classes are the colours
  ids = jit_segment(images, 2, 'colour', KEY)['cluster_ids']
  class_map = clustering.match_clusters_to_classes(ids, labels, 2)
  np.testing.assert_array_equal(class_map, labels)
  np.testing.assert_array_equal(metrics.boundary_f1(labels, class_map, 2), [1.0, 1.0])
  np.testing.assert_array_equal(clustering.boundary_recall(ids, labels), [1.0, 1.0])
  np.testing.assert_array_equal(clustering.undersegmentation_error(ids, labels), [0.0, 0.0])


@pytest.mark.slow
def test_clustering_runs_as_a_sweep_cell_and_fills_the_table(tiny_dir, tmp_path):
  """experiments/clustering.py through launch.train's entry point: a workdir like a trained
  run's, read back when finished, and its superpixel scores as extra table columns."""
  c = experiment.get_config('space=colour_position,k=16,iters=5')
  c.data.variant, c.data.data_dir, c.eval_batch_size = 'res64_tiny', str(tiny_dir), 8
  final = runners.run(c, str(tmp_path))
  for split in ('val', 'test'):
    assert 0 < final[split]['miou'] <= 1 and 0 < final[split]['boundary_recall'] <= 1
    assert 0 <= final[split]['undersegmentation_error'] < 1
  assert final['cost']['images_per_second'] > 0
  assert runners.run(c, str(tmp_path)) == json.loads(json.dumps(final))
  row = tables.Row({'clustering.k': 16}, [str(tmp_path)], ['done'], [final])
  table = tables.to_markdown([row], 'test', '')
  assert 'boundary recall (%)' in table and 'under-seg. error (%)' in table
  assert 'checkerboard' not in table and 'GFLOPs' not in table and 'nan' not in table
  assert 'boundary recall' not in tables.to_markdown([tables.Row({'k': 1})], 'test', '')


def test_clustering_run_refuses_more_clusters_than_pixels(tiny_dir, tmp_path):
  c = experiment.get_config('k=5000')
  c.data.variant, c.data.data_dir = 'res64_tiny', str(tiny_dir)
  with pytest.raises(ValueError, match='k must be in \\[1, N=4096\\], got 5000'):
    kmeans_run.run(c, str(tmp_path))
  assert not (tmp_path / 'config.json').exists()


def test_the_clustering_runner_refuses_two_seeds_in_one_workdir(tmp_path):
  c = experiment.get_config('k=4')
  with pytest.raises(ValueError, match='Each seed needs its own workdir'):
    runners.run_seeds(c, {0: str(tmp_path), 1: str(tmp_path)})
