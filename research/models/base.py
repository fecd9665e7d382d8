"""What every segmentation architecture has: the fields `models.build` fills, and what its
encoder hands the decoder's upsamplers."""
from typing import Any, ClassVar, Optional

from flax import linen as nn
import jax.numpy as jnp


class SegmentationModel(nn.Module):
  """Images [B, H, W, 3] -> logits [B, H, W, num_classes], float32.

  `upsampler` names the registered ×2 upsampler used at every decoder step, built with
  `upsampler_options`; `guide_fields()` says which `upsamplers.Guide` fields the encoder
  fills for it (None: the architecture does not upsample). `conv_impl` says whose
  convolutions the architecture's layers run (layers.Conv: 'auto', 'xla' or 'onednn').
  """

  num_classes: int
  upsampler: str = 'transpose_conv'
  upsampler_options: Optional[dict] = None
  width: int = 16
  dtype: Any = jnp.float32
  conv_impl: str = 'auto'

  GUIDE_FIELDS: ClassVar[Optional[frozenset]] = None

  def guide_fields(self) -> Optional[frozenset]:
    return self.GUIDE_FIELDS
