"""Checkpoints: `logdir/variables.pkl`, everything a run needs to resume.

It holds the model's weights (the original's names) and optimizer state,
the agent's schedule, counters and random state, and the sampler's random
state; the episodes on disk hold the rest. Written atomically after every
training burst, the previous one kept as `variables.pkl.prev` until the new
one is whole.
"""

import os
import pathlib
import pickle

from config import fail
from tools import previous_path, write_atomic


def save_checkpoint(path, model, agent, sampler):
  """Writes the checkpoint atomically; the one it replaces stays as
  `variables.pkl.prev` until the new one is complete."""
  state = {
      'version': 2, 'model': model.get_state(), 'agent': agent.get_state(),
      'sampler': sampler.get_state()}
  save_pickle(path, state)


def load_checkpoint(path, model, agent, sampler):
  """Restores the newest checkpoint that loads and fits, else the previous
  one with a warning; `fail`s if neither does."""
  problems = []
  for candidate in (path, previous_path(path)):
    if not candidate.exists():
      continue
    try:
      with candidate.open('rb') as file:
        state = pickle.load(file)
      model.set_state(state['model'])
      agent.set_state(state['agent'])
      sampler.set_state(state['sampler'])
    except Exception as error:  # Damaged files fail in many ways.
      problems.append(f'{candidate.name}: {error!r}'[:300])
      print(f'Warning: cannot resume from {candidate}: {problems[-1]}',
            flush=True)
      continue
    if candidate != path:
      print(f'Warning: resumed from the previous checkpoint {candidate}.',
            flush=True)
    return candidate
  fail(f'cannot resume from the checkpoints in {path.parent} '
       f'({"; ".join(problems)}): they belong to another config or an older '
       f'version of this code, or are damaged; use another --logdir or move '
       f'them away')


def save_pickle(path, state):
  """Pickles `state` to `path` atomically and durably; the file it replaces
  stays as `previous_path(path)` until the new one is complete."""

  def write(file):
    pickle.dump(state, file, protocol=pickle.HIGHEST_PROTOCOL)
    file.flush()
    os.fsync(file.fileno())

  write_atomic(pathlib.Path(path), write, keep_previous=True)


def exists(path):
  """Whether `path` or its previous version is there to resume from."""
  return path.exists() or previous_path(path).exists()
