"""The U-Net of research/models/unet.py in PyTorch, for the side-by-side benchmark.

PyTorch is not a dependency (`pip install torch==2.13.0` gives a CPU build); this module
is imported only by `launch.bench` when it is installed. The network mirrors the Flax one
layer for layer: the same widths and depth, 3×3 convolutions without bias followed by
GroupNorm(min(8, C) groups, eps 1e-6, as Flax) and ReLU, 2×2 max-pooling, a 1×1
reduction before each ×2 upsampler, concatenation with the skip, and a 1×1 head; its
parameter count must equal the Flax model's (the benchmark checks it). The train step is
the same too: pixel cross-entropy, gradient clipping by global norm, AdamW.
"""

import numpy as np
import torch
from torch import nn

_OPTIONS = {'nearest': set(), 'transpose_conv': {'kernel_size', 'use_bias'}}  # mirrored here


def _upsampler(name: str, channels: int, options: dict) -> nn.Module:
  if name not in _OPTIONS:
    raise ValueError(f'The PyTorch reference U-Net has {", ".join(_OPTIONS)}; got {name!r}.')
  unknown = sorted(set(options) - _OPTIONS[name])
  if unknown:  # e.g. overlap='max': not mirrored here, so refused rather than ignored
    raise ValueError(
      f'The PyTorch reference {name} has no option(s) {unknown}; it mirrors '
      f'{sorted(_OPTIONS[name]) or "none"}.'
    )
  if name == 'nearest':
    return nn.Upsample(scale_factor=2, mode='nearest')
  k = options.get('kernel_size', 4)  # transpose_conv
  p = (k - 1) // 2  # research.upsamplers.transpose_conv: the adjoint of a stride-2 conv
  return nn.ConvTranspose2d(
    channels,
    channels,
    k,
    stride=2,
    padding=p,
    output_padding=2 + 2 * p - k,
    bias=options.get('use_bias', True),
  )


class ConvBlock(nn.Sequential):
  def __init__(self, cin: int, features: int, num_convs: int = 2):
    mods = []
    for i in range(num_convs):
      mods += [
        nn.Conv2d(cin if i == 0 else features, features, 3, padding=1, bias=False),
        nn.GroupNorm(min(8, features), features, eps=1e-6),
        nn.ReLU(inplace=True),
      ]
    super().__init__(*mods)


class UNet(nn.Module):
  """x: [B, 3, H, W] -> logits [B, num_classes, H, W]."""

  def __init__(
    self,
    num_classes: int,
    upsampler: str = 'nearest',
    width: int = 16,
    depth: int = 4,
    upsampler_options: dict | None = None,
  ):
    super().__init__()
    options = upsampler_options or {}
    widths = [width * 2**level for level in range(depth)]
    self.down = nn.ModuleList(
      ConvBlock(3 if level == 0 else widths[level - 1], c) for level, c in enumerate(widths)
    )
    self.bottleneck = ConvBlock(widths[-1], width * 2**depth)
    self.reduce, self.up, self.dec = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
    cin = width * 2**depth
    for c in reversed(widths):
      self.reduce.append(nn.Conv2d(cin, c, 1))
      self.up.append(_upsampler(upsampler, c, options))
      self.dec.append(ConvBlock(2 * c, c))
      cin = c
    self.head = nn.Conv2d(width, num_classes, 1)
    self.pool = nn.MaxPool2d(2)

  def forward(self, x):
    skips = []
    for block in self.down:
      x = block(x)
      skips.append(x)
      x = self.pool(x)
    x = self.bottleneck(x)
    for reduce, up, dec, skip in zip(self.reduce, self.up, self.dec, reversed(skips)):
      x = dec(torch.cat([up(reduce(x)), skip], dim=1))
    return self.head(x)


def count_params(model: nn.Module) -> int:
  return sum(p.numel() for p in model.parameters())


def make_train_step(
  model: nn.Module,
  images: np.ndarray,
  labels: np.ndarray,
  learning_rate: float,
  weight_decay: float,
  grad_clip: float,
  channels_last: bool = False,
):
  """A zero-argument call running one eager train step (AdamW, clipping) of `model` on
  the same batch; it returns the loss as a Python float, so the step is done when it
  returns. images [B, H, W, 3] (NHWC, as the Flax side gets them; transposed once here),
  labels [B, H, W]."""
  x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
  y = torch.from_numpy(labels.astype(np.int64))
  if channels_last:
    model = model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
  opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
  loss_fn = nn.CrossEntropyLoss()

  def step():
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    return loss.item()

  return step
