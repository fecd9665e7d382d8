"""Tables and figures of a sweep: one row per configuration, mean ± std over its seeds.

Reads a sweep root: ROOT/cells.json (written by launch.sweep) for the cells the sweep
should have, and each cell's final.json for those that finished. A cell that has not
finished is never dropped: its row counts it (n = seeds done / seeds in the sweep) and
the table lists it by name and status. Figures: mIoU against GFLOPs, boundary F1 per
upsampler, and from the checkpoints, predictions of every upsampler on the same images
and the checkerboard of transpose_conv against resize_conv made visible.
"""

import os

from research import upsamplers
from research import workdir as workdir_lib
from research.tables import figures
from research.tables import paired
from research.tables import qualitative as qualitative_lib
from research.tables import stats_figures
from research.tables import text
from research.tables.figures import high_pass
from research.tables.qualitative import qualitative_figures
from research.tables.text import COLUMNS
from research.tables.text import MISSING
from research.tables.text import SPLITS
from research.tables.text import Row
from research.tables.text import provenance
from research.tables.text import read_sweep
from research.tables.text import summarize
from research.tables.text import to_csv
from research.tables.text import to_latex
from research.tables.text import to_markdown


def write(
  root: str,
  out: str,
  name: str,
  split: str,
  command: str,
  plots: bool = True,
  qualitative: bool = True,
  num_images: int = 4,
  echo=print,
  force: bool = False,
  reference: str | list[str] | None = None,
) -> list[str]:
  """OUT/NAME.md, .csv, .tex and the figures; returns the paths written.

  With `reference` (a decoder, e.g. 'nearest', or several), NAME.md also holds each row's
  paired difference to the row with that decoder (tables.paired), drawn as
  NAME_diff_<reference>_<metric>.png.

  Everything is rendered before the first file is replaced, and each file is replaced by
  a rename, so an error leaves the previous results as they were. Tables made from
  another sweep (a smoke test of the same experiment, say) are not replaced unless
  `force`.
  """
  if split not in text.SPLITS:
    raise ValueError(f'Unknown split {split!r}; valid: {", ".join(text.SPLITS)}.')
  index, rows = text.read_sweep(root)
  md_path = os.path.join(out, f'{name}.md')
  if not force and os.path.exists(md_path):
    with open(md_path) as f:
      if f'Sweep `{index["config"]}` in `{root}`' not in f.read():
        raise FileExistsError(
          f'{md_path} was made from another sweep; not replacing it. Pass '
          '--force to replace it, or choose another --name or --out.'
        )
  header = text.provenance(command)
  overrides = ', '.join(f'{k}={v}' for k, v in index['overrides'].items()) or 'none'
  intro = (
    f'\n# {name}: {split} split\n\n'
    f'Sweep `{index["config"]}` in `{root}` (command-line overrides: {overrides}). '
    'One row per configuration: mean ± sample std (n − 1) over its finished seeds, '
    'n = seeds done / seeds in the sweep (one seed: its value alone). Bold: best per '
    'column (highest quality and images/s; lowest checkerboard score, parameters, '
    'GFLOPs and ms/step). Quality and checkerboard scores in %; params and GFLOPs '
    '(forward, one image) do not depend on the seed.\n'
  )
  together = sorted({f.get('cost', {}).get('seeds_together', 1) for r in rows for f in r.finals})
  if together != [1] and together:
    intro += (
      '\nSome cells trained several seeds in one program (seeds_together = '
      f'{", ".join(map(str, together))}): their ms/step and images/s are those of the '
      'joint step, per seed.\n'
    )
  references = [reference] if isinstance(reference, str) else list(reference or ())
  for ref in references:
    if ref not in upsamplers.names():
      raise ValueError(
        f'--reference {ref!r} is no upsampler; known upsamplers: {", ".join(upsamplers.names())}.'
      )
  thin = next((paired.thin_classes_of(r) for r in rows if r.done), ()) if references else ()
  found = {ref: paired.differences(rows, split, ref, thin) for ref in references}
  markdown = text.to_markdown(rows, split, header + intro)
  for ref, differences in found.items():
    markdown += '\n' + paired.to_markdown(differences, ref, split)
  texts = {
    'md': markdown,
    'csv': text.to_csv(rows, split),
    'tex': text.to_latex(rows, split, header),
  }
  os.makedirs(out, exist_ok=True)
  written = []
  for ext, content in texts.items():
    path = os.path.join(out, f'{name}.{ext}')
    workdir_lib.write_text_atomic(path, content)
    written.append(path)
  if plots and any(r.finals for r in rows):
    prefix = os.path.join(out, name)
    figures.plot_quality_vs_cost(rows, split, f'{prefix}_miou_vs_gflops.png')
    figures.plot_boundary_f1(rows, split, f'{prefix}_boundary_f1.png')
    written += [f'{prefix}_miou_vs_gflops.png', f'{prefix}_boundary_f1.png']
    written += stats_figures.plot_curves(rows, split, prefix)
    for ref, differences in found.items():
      written += paired.plot(differences, ref, f'{prefix}_diff_{ref}')
    if qualitative:
      written += qualitative_lib.qualitative_figures(rows, split, prefix, num_images, echo)
  return written
