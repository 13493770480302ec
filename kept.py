"""Copies of the checkpoint kept at fixed environment steps
(`--keep_checkpoints`), so that runs are evaluated at the same points.

A copy is `LOGDIR/kept/NAME-STEP.SUFFIX`, STEP the environment step at
which it was saved: ours `checkpoint-STEP.npz`, the original's program
(original_train.py) `variables-STEP.pkl`. Only the standard library here:
the harness imports it beside the original's modules.
"""

import math
import os

FOLDER = 'kept'


def parse(text):
  """The sorted environment steps of a --keep_checkpoints value
  ('5000,25000' or '5e3, 25e3'; '' for none); ValueError if one is not a
  whole number of at least 0."""
  steps = set()
  for item in str(text).split(','):
    if not item.strip():
      continue
    try:
      value = float(item)
    except ValueError:
      value = math.nan
    if not (math.isfinite(value) and value >= 0 and value == int(value)):
      raise ValueError(
          f'--keep_checkpoints {text!r}: {item.strip()!r} is not a step; '
          f'give environment steps separated by commas, e.g. 5000,25000')
    steps.add(int(value))
  return tuple(sorted(steps))


def due(keep, kept, step):
  """The steps of `keep` for which a checkpoint saved at `step` is kept:
  each K <= step that no copy kept at a step in [K, step) stands for
  already; `kept` are the steps of the copies there are.

  So K's copy is the last checkpoint saved at the first step >= K that saw
  one (a save at that same step after training replaces it), and a resume
  past a kept step leaves its copy alone.
  """
  return [k for k in keep
          if k <= step and not any(k <= s < step for s in kept)]


def copies(folder, name, suffix):
  """{step: path} of the copies NAME-STEP.SUFFIX in `folder`."""
  found = {}
  if folder.is_dir():
    for path in folder.glob(f'{name}-*{suffix}'):
      text = path.name[len(name) + 1:-len(suffix)]
      if text.isdigit():
        found[int(text)] = path
  return found


def store(target, step, write, due_steps, replacing):
  """Calls `write(temp)` and renames temp to `target`, the copy saved at
  environment step `step` for the steps `due_steps`; says so in a line
  unless it is `replacing` a copy of the same step. Returns `target`."""
  target.parent.mkdir(exist_ok=True)
  temp = target.with_name(f'.{target.name}.tmp')
  temp.unlink(missing_ok=True)
  write(temp)
  os.replace(temp, target)
  if not replacing:
    stands = ', '.join(f'{k:,}' for k in due_steps)
    print(f'Kept the checkpoint of step {step:,} as {target.parent.name}/'
          f'{target.name} (--keep_checkpoints {stands}).', flush=True)
  return target
