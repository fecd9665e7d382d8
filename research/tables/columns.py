"""A table's columns: where each metric is in final.json, how it is shown, and which way
is better. COLUMNS are always shown; OPTIONAL_COLUMNS where some finished run reports them."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Column:
  """One metric: where it is in final.json, how it is shown, and which way is better."""

  title: str
  tex: str
  section: str  # 'split' (the split shown), 'cost', or another section ('init', 'video')
  field: str  # its name in final.json, and in the CSV
  scale: float
  decimals: int
  better: str  # 'max' or 'min'
  spread: bool = True  # False: a function of the config, the same for every seed

  @property
  def name(self) -> str:
    """Its CSV name: the final.json field, prefixed by its section where that is neither
    the split nor the cost (e.g. init_checkerboard_logits)."""
    return self.field if self.section in ('split', 'cost') else f'{self.section}_{self.field}'


COLUMNS = (
  Column('mIoU (%)', r'mIoU (\%)', 'split', 'miou', 100, 1, 'max'),
  Column('pixel acc. (%)', r'pixel acc.\ (\%)', 'split', 'pixel_accuracy', 100, 1, 'max'),
  Column('boundary F1 (%)', r'boundary F1 (\%)', 'split', 'boundary_f1', 100, 1, 'max'),
  Column('checkerboard (%)', r'checkerboard (\%)', 'split', 'checkerboard', 100, 2, 'min'),
  Column('params (k)', r'params (k)', 'cost', 'params', 1e-3, 1, 'min', spread=False),
  Column('GFLOPs', r'GFLOPs', 'cost', 'gflops_per_image', 1, 3, 'min', spread=False),
  Column('ms/step', r'ms/step', 'cost', 'step_seconds', 1e3, 1, 'min'),
  Column('images/s', r'images/s', 'cost', 'images_per_second', 1, 0, 'max'),
)


# Shown only when some finished cell has them (the clustering baseline's superpixel scores;
# forward time and peak memory, recorded by runs since commit 8198877).
OPTIONAL_COLUMNS = (
  Column('boundary recall (%)', r'boundary recall (\%)', 'split', 'boundary_recall', 100, 1, 'max'),
  Column(
    'under-seg. error (%)',
    r'under-seg.\ error (\%)',
    'split',
    'undersegmentation_error',
    100,
    1,
    'min',
  ),
  # Where decoders differ (research.evaluate.evaluate_per_image; runs since the metrics of
  # issue 18): thin structures, bands around boundaries, small objects, translations, and
  # the checkerboard on the logits, after training and at initialisation.
  Column('thin IoU (%)', r'thin IoU (\%)', 'split', 'thin_iou', 100, 1, 'max'),
  Column('trimap 2px (%)', r'trimap 2px (\%)', 'split', 'trimap_miou_w2', 100, 1, 'max'),
  Column('trimap 4px (%)', r'trimap 4px (\%)', 'split', 'trimap_miou_w4', 100, 1, 'max'),
  Column(
    'small-object recall (%)',
    r'small-obj.\ recall (\%)',
    'split',
    'small_object_recall',
    100,
    1,
    'max',
  ),
  Column(
    'shift consistency (%)', r'shift cons.\ (\%)', 'split', 'shift_consistency', 100, 1, 'max'
  ),
  Column(
    'checkerboard logits (%)',
    r'checkerb.\ logits (\%)',
    'split',
    'checkerboard_logits',
    100,
    2,
    'min',
  ),
  Column(
    'checkerboard logits at init (%)',
    r'checkerb.\ logits, init (\%)',
    'init',
    'checkerboard_logits',
    100,
    2,
    'min',
  ),
  Column('ms/image (fwd)', r'ms/image (fwd)', 'cost', 'forward_ms_per_image', 1, 2, 'min'),
  Column('peak memory (MB)', r'peak memory (MB)', 'cost', 'peak_memory_mb', 1, 0, 'min'),
  # The tasks of issue 20: panoptic quality and the checkerboard of its dense regressions
  # (research.panoptic_run), the mask head's pasted masks (research.instance_run), and
  # the clips of the video task, in final.json's 'video' section (research.video_run).
  Column('PQ (%)', r'PQ (\%)', 'split', 'pq', 100, 1, 'max'),
  Column('SQ (%)', r'SQ (\%)', 'split', 'sq', 100, 1, 'max'),
  Column('RQ (%)', r'RQ (\%)', 'split', 'rq', 100, 1, 'max'),
  Column('PQ things (%)', r'PQ\textsuperscript{th} (\%)', 'split', 'pq_things', 100, 1, 'max'),
  Column('PQ stuff (%)', r'PQ\textsuperscript{st} (\%)', 'split', 'pq_stuff', 100, 1, 'max'),
  Column(
    'checkerboard offsets (%)',
    r'checkerb.\ offsets (\%)',
    'split',
    'checkerboard_offsets',
    100,
    2,
    'min',
  ),
  Column(
    'checkerboard heatmap (%)',
    r'checkerb.\ heatmap (\%)',
    'split',
    'checkerboard_heatmap',
    100,
    2,
    'min',
  ),
  Column('mask IoU (%)', r'mask IoU (\%)', 'split', 'mask_iou', 100, 1, 'max'),
  Column('mask AP (%)', r'mask AP (\%)', 'split', 'mask_ap', 100, 1, 'max'),
  Column('mask AP50 (%)', r'mask AP\textsubscript{50} (\%)', 'split', 'mask_ap50', 100, 1, 'max'),
  Column('mask AP75 (%)', r'mask AP\textsubscript{75} (\%)', 'split', 'mask_ap75', 100, 1, 'max'),
  Column('clip mIoU (%)', r'clip mIoU (\%)', 'video', 'miou', 100, 1, 'max'),
  Column('flicker (%)', r'flicker (\%)', 'video', 'flicker', 100, 2, 'min'),
)
