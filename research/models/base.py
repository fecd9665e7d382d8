"""What every segmentation architecture has: the fields `models.build` fills, and what its
encoder hands the decoder's upsamplers."""
from typing import Any, ClassVar, Optional

from flax import linen as nn
import jax.numpy as jnp


# The name under which an architecture sows (collection 'intermediates') its last decoder
# feature map, before the classifier: where the evaluator scores checkerboard artifacts.
DECODER_FEATURES = 'decoder_features'


class SegmentationModel(nn.Module):
  """Images [B, H, W, 3] -> logits [B, H, W, num_classes], float32.

  `upsampler` names the registered ×2 upsampler used at every decoder step, built with
  `upsampler_options`; `guide_fields()` says which `upsamplers.Guide` fields the encoder
  fills for it (None: the architecture does not upsample).
  """

  num_classes: int
  upsampler: str = 'transpose_conv'
  upsampler_options: Optional[dict] = None
  width: int = 16
  dtype: Any = jnp.float32

  GUIDE_FIELDS: ClassVar[Optional[frozenset]] = None

  def guide_fields(self) -> Optional[frozenset]:
    return self.GUIDE_FIELDS
