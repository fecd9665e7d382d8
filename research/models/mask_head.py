"""Mask R-CNN's mask head (He et al. 2017) on ground-truth boxes, with the ×2 upsampler
under test: a U-Net backbone, RoIAlign, four 3×3 convolutions, the upsampler, per-class
mask logits.

Backbone: U-Net (research.models.unet, `depth` poolings of `width`) whose 1×1 head gives
`head_width` feature channels at full resolution (stride 1). Mask R-CNN reads an FPN level
at stride 4-32; here objects are 1-4 px thin or across (lab_shapes' lines, rings, specks),
less than one feature pixel at stride 4, so the head reads the full-resolution map. The
backbone's own ×2 steps use `backbone_upsampler` (nearest by default) whatever the head's,
so that the comparison is of the head's upsampler alone.

Head (Mask R-CNN's, at `head_width` instead of 256 channels): RoIAlign of each box to 14×14
(research.roi_align, sampling ratio 2, aligned), four 3×3 convolutions with ReLU, the ×2
upsampler (`transpose_conv` with kernel_size=2 is Mask R-CNN's 2×2 stride-2 deconvolution)
and a ReLU, then a 1×1 convolution to one 28×28 mask logit map per class. Guided upsamplers
that need a skip (FADE, SAPA) get the backbone map RoIAligned to 28×28 as it; the head has no
pooling, so upsamplers that need switches or indices (max_unpool, indexnet) cannot run in it.
"""

from typing import Any, Optional

from flax import linen as nn
import jax.numpy as jnp

from research import roi_align
from research import upsamplers
from research.models import layers
from research.models import unet

GIVES = frozenset({'skip'})  # the Guide fields the head can give an upsampler


def check_upsampler(name: str) -> None:
  """Refuses an unknown upsampler, or one needing what the head cannot give, in one line."""
  missing = sorted(set(upsamplers.get(name).needs) - GIVES)
  if missing:
    valid = ', '.join(u for u in upsamplers.names() if not set(upsamplers.get(u).needs) - GIVES)
    raise ValueError(
      f'Upsampler {name!r} needs {missing[0]}, which the mask head does not give (it has no '
      f'pooling); upsamplers it takes: {valid}.'
    )


class MaskHeadModel(nn.Module):
  """(images [B, H, W, 3], boxes [R, 4], box_image int [R]) -> mask logits [R, 28, 28, K].

  Boxes are (y0, x0, y1, x1) in image pixels (research.roi_align); box_image says whose
  image each box is. Without boxes, one box per image covering it (for initialisation and
  the cost measurements, which call model(images)).
  """

  num_classes: int
  upsampler: str = 'transpose_conv'
  upsampler_options: Optional[dict] = None
  width: int = 16
  depth: int = 4
  head_width: int = 32
  num_convs: int = 4
  backbone_upsampler: str = 'nearest'
  dtype: Any = jnp.float32
  conv_impl: str = 'auto'

  def features(self, images):
    """The backbone's full-resolution map [B, H, W, head_width]."""
    return unet.UNet(
      num_classes=self.head_width,
      upsampler=self.backbone_upsampler,
      width=self.width,
      depth=self.depth,
      dtype=self.dtype,
      conv_impl=self.conv_impl,
      name='backbone',
    )(images)

  @nn.compact
  def __call__(self, images, boxes=None, box_image=None):
    b, h, w, _ = images.shape
    if boxes is None:
      boxes = jnp.tile(jnp.array([[0.0, 0.0, h, w]], jnp.float32), (b, 1))
      box_image = jnp.arange(b)
    features = self.features(images)
    x = roi_align.roi_align(features, boxes, box_image, output_size=roi_align.ROI_SIZE)
    for i in range(self.num_convs):
      conv = layers.Conv(
        self.head_width, (3, 3), dtype=self.dtype, conv_impl=self.conv_impl, name=f'mask_conv{i}'
      )
      x = nn.relu(conv(x))
    guide = upsamplers.Guide()
    if 'skip' in upsamplers.get(self.upsampler).needs:  # RoIAlign costs R·P·H·W·C: only here
      skip = roi_align.roi_align(features, boxes, box_image, output_size=roi_align.MASK_SIZE)
      guide = upsamplers.Guide(skip=skip.astype(x.dtype))
    x = layers.Upsample(self.upsampler, self.upsampler_options, name='mask_up')(x, guide)
    x = nn.relu(x)
    return layers.Conv(
      self.num_classes, (1, 1), dtype=self.dtype, conv_impl=self.conv_impl, name='mask_logits'
    )(x).astype(jnp.float32)
