"""The upsampler contract: what every ×2 upsampler takes, returns and may receive from the encoder.

An upsampler is a Flax Linen module, a subclass of `Upsampler`, called as

    module(x, guide)  # x: [B, H, W, C] -> [B, 2H, 2W, F]

where F is `features` (None: the upsampler's default, C for most). `guide` is a `Guide`:
what the encoder left for the decoder at this step. Each architecture fills the fields it
has (`research.models` says which); an upsampler lists the fields it cannot work without
in `needs`, so that a model that cannot give them is refused when it is built, not traced.
"""

from typing import ClassVar, Optional

import flax
from flax import linen as nn
import jax

# What each Guide field holds, for error messages and the README's upsampler table.
GUIDE_FIELDS = {
  'switches': 'the switches of the matching max-pool, uint8 [B, H, W, C|1] (argmax per 2×2 window)',
  'skip': 'the encoder feature map at the target resolution, [B, 2H, 2W, Cs] (before pooling)',
  'indices': 'the decoder indices of the matching index-pooling layer, [B, 2H, 2W, C|1]',
}


@flax.struct.dataclass
class Guide:
  """What the encoder hands the decoder for one ×2 step; None where the architecture has none."""

  switches: Optional[jax.Array] = None  # uint8 [B, H, W, C|1], at the input (coarse) resolution
  skip: Optional[jax.Array] = None  # [B, 2H, 2W, Cs], at the target resolution
  indices: Optional[jax.Array] = None  # [B, 2H, 2W, C|1], at the target resolution

  def fields(self) -> frozenset:
    """The names of the fields this guide carries."""
    return frozenset(name for name in GUIDE_FIELDS if getattr(self, name) is not None)


class Upsampler(nn.Module):
  """Base of every registered upsampler: the `features` field and the one input check.

  Subclasses set `kind` (the registry name, for messages), `needs` (Guide fields they
  require), `keeps_channels` (True for those whose output has x's C channels: features must
  be None or C) and
  `skip_like_x` (True where the skip is mixed with x channel by channel, as FADE's gate).
  """

  features: Optional[int] = None

  kind: ClassVar[str] = 'upsampler'
  needs: ClassVar[tuple] = ()
  keeps_channels: ClassVar[bool] = False
  skip_like_x: ClassVar[bool] = False  # True: guide.skip must have x's channel count

  def check(self, x, guide: Optional[Guide]) -> Guide:
    """Refuses a wrong rank, an impossible channel count or a missing guide field; returns
    the guide (an empty one for None)."""
    guide = Guide() if guide is None else guide
    if x.ndim != 4:
      raise ValueError(f'{self.kind} expects x of shape [B, H, W, C]; got shape {x.shape}.')
    if self.keeps_channels and self.features is not None and self.features != x.shape[-1]:
      raise ValueError(
        f'{self.kind} keeps the {x.shape[-1]} input channels (its output has them); '
        f'got features={self.features} (use None or {x.shape[-1]}).'
      )
    for name in self.needs:
      if getattr(guide, name) is None:
        raise ValueError(
          f'{self.kind} needs {GUIDE_FIELDS[name]}: call it as module(x, Guide({name}=...)).'
        )
    return guide


class ParameterFree(Upsampler):
  """An upsampler that is a fixed function of x (and the guide): subclasses give `upsample`.
  It keeps the channels unless it says otherwise (bilinear_additive sums groups of them)."""

  keeps_channels = True

  def __call__(self, x, guide=None):  # x: [B, H, W, C] -> [B, 2H, 2W, C]
    return self.upsample(x, self.check(x, guide))

  def upsample(self, x, guide: Guide):
    raise NotImplementedError(f'{type(self).__name__} must define upsample(x, guide).')
