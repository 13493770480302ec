"""Replay: episodes on disk and the training batches sampled from them.

An episode is one `.npz` file in `logdir/episodes`, named
`{YYYYmmddTHHMMSS}-{uuid4 hex}-{length}.npz`, one array per key of equal
length: the observation keys, `action`, `reward` and `discount`, as the
original writes them. The steps a run has taken are counted from the names
alone. Training sequences are cut from the episodes by `EpisodeSampler` and
stacked into batches by `batches`.

Imports neither TensorFlow nor dm_control.
"""

import bisect
import os
import pathlib
import re
import time
import uuid

import numpy as np

from tools import write_atomic


# --- Episodes on disk -------------------------------------------------------

# {YYYYmmddTHHMMSS}-{uuid4 hex}-{length}.npz, the original's names.
EPISODE_NAME = re.compile(r'^\d{8}T\d{6}-[0-9a-f]{32}-(\d+)\.npz$')


def episode_length(path):
  """The length in an episode file's name, or None if the name does not fit."""
  match = EPISODE_NAME.match(pathlib.Path(path).name)
  return int(match.group(1)) if match else None


def list_episodes(directory):
  """Sorted paths of the episode files in `directory` ([] if it is missing)."""
  directory = pathlib.Path(directory).expanduser()
  if not directory.is_dir():
    return []
  return sorted(
      path for path in directory.iterdir()
      if episode_length(path) is not None)


def count_episodes(directory):
  """(episodes, agent steps) on disk: steps = Σ (length − 1), from names."""
  lengths = [episode_length(path) for path in list_episodes(directory)]
  return len(lengths), sum(max(length - 1, 0) for length in lengths)


def count_steps(directory, action_repeat):
  """Environment steps on disk: Σ (length − 1) × action_repeat."""
  return count_episodes(directory)[1] * action_repeat


def _episode_length_of(episode):
  """The shared leading length of an episode's arrays; ValueError otherwise."""
  if 'reward' not in episode:
    raise ValueError(f'episode has no reward: keys {sorted(episode)}')
  shapes = {key: np.shape(value) for key, value in episode.items()}
  lengths = {shape[0] if shape else None for shape in shapes.values()}
  if len(lengths) != 1 or None in lengths:
    raise ValueError(f'episode arrays differ in leading length: {shapes}')
  return lengths.pop()


def save_episode(directory, episode):
  """Writes `episode` (a dict of arrays) atomically; returns the new path.

  The arrays are stored as given. The file is written under a temporary name
  not ending in .npz and renamed, so readers never see a partial episode.
  """
  episode = {key: np.asarray(value) for key, value in episode.items()}
  length = _episode_length_of(episode)
  directory = pathlib.Path(directory).expanduser()
  directory.mkdir(parents=True, exist_ok=True)
  stamp = time.strftime('%Y%m%dT%H%M%S')
  path = directory / f'{stamp}-{uuid.uuid4().hex}-{length}.npz'
  write_atomic(path, lambda file: np.savez_compressed(file, **episode))
  return path


def load_episode(path):
  """Reads an episode file into a dict of arrays.

  float16 and int16 arrays (written by the original with precision 16) come
  back as float32 and int32. Any failure raises a one-line ValueError.
  """
  widen = {np.dtype(np.float16): np.float32, np.dtype(np.int16): np.int32}
  try:
    with np.load(path, allow_pickle=False) as data:
      episode = {key: data[key] for key in data.files}
    if not episode:
      raise ValueError('no arrays')
    _episode_length_of(episode)
  except Exception as error:
    reason = (str(error).splitlines() or [''])[0] or type(error).__name__
    raise ValueError(f'unreadable episode file {path}: {reason}') from error
  return {
      key: value.astype(widen[value.dtype]) if value.dtype in widen else value
      for key, value in episode.items()}


# --- Training sequences -----------------------------------------------------

class EpisodeSampler:
  """Infinite iterator of training sequences cut from the episode files.

  Each item is a dict of read-only arrays with leading size `length`. An
  episode is picked uniformly among those with more than `length` steps, and
  the start uniformly in [0, len − length); with `balance`, start =
  min(randint(0, len), len − length), which puts more windows at the end.
  The folder is rescanned every `rescan` samples (never, if falsy) and
  whenever no usable episode is cached; if none is usable after a rescan, a
  RuntimeError is raised (the caller prefills first). Unreadable
  files are reported once and skipped, never deleted. Episodes stay in
  memory up to `memory` bytes (unbounded if None); past that, the oldest are
  read from disk each time they are picked, which changes no draw. Given
  the seed, the files and the state, the stream is deterministic;
  `get_state`/`set_state` resume it.

  With `across` (Gymnasium tasks, whose episodes can be shorter than
  `length`), a sequence starts at a step drawn uniformly from all stored
  steps, episodes in file-name order, and runs on into the next episodes;
  each item then also holds `is_first` (float32, 1 where an episode
  starts), at which the RSSM starts from zeros (`balance` is not used).
  """

  def __init__(self, directory, length, balance=False, rescan=100, seed=None,
               memory=None, across=False):
    self._directory = pathlib.Path(directory).expanduser()
    self._length = int(length)
    self._balance = balance
    self._rescan = rescan
    self._rng = np.random.default_rng(seed)
    self._count = 0
    self._budget = memory
    # File name: episode, None when unreadable, or _ON_DISK past the budget.
    self._cache = {}
    self._usable = []  # Sorted names of the episodes longer than `length`
    # (with `across`: of every readable episode).
    self._across = across
    self._starts = []  # With `across`: stream index of each usable episode.

  def __iter__(self):
    return self

  def __next__(self):
    due = self._rescan and self._count % self._rescan == 0
    if due or not self._usable:
      self.scan()
    if not self._usable:
      what = (f'are {self._length} steps' if self._across
              else f'has more than {self._length} steps')
      raise RuntimeError(
          f'no episode in {self._directory} {what} '
          f'({len(self._cache)} episode files).')
    if self._across:
      return self._next_across()
    self._count += 1
    name = self._usable[self._rng.integers(len(self._usable))]
    total = episode_length(name)
    if self._balance:
      start = min(int(self._rng.integers(total)), total - self._length)
    else:
      start = int(self._rng.integers(total - self._length))
    episode = self._cache[name]
    if episode is _ON_DISK:
      episode = self._load(self._directory / name)
      if episode is None:  # Damaged since it was first read.
        self._cache[name] = None
        self._usable.remove(name)
        self._count -= 1
        return next(self)
    return {
        key: value[start: start + self._length]
        for key, value in episode.items()}

  def _next_across(self):
    """`length` steps from a uniform start in the stream of all episodes,
    with `is_first`."""
    self._count += 1
    start = int(self._rng.integers(self._starts[-1] - self._length + 1))
    index = bisect.bisect_right(self._starts, start) - 1
    offset, parts, missing = start - self._starts[index], [], self._length
    while missing:
      name = self._usable[index]
      episode = self._cache[name]
      if episode is _ON_DISK:
        episode = self._load(self._directory / name)
      if episode is None:  # Damaged since it was first read.
        self._cache[name] = None
        self.scan()
        self._count -= 1
        return next(self)
      part = {k: v[offset: offset + missing] for k, v in episode.items()}
      first = np.zeros(len(part['reward']), np.float32)
      first[0] = offset == 0
      parts.append(dict(part, is_first=first))
      missing -= len(first)
      index, offset = index + 1, 0
    return {key: np.concatenate([part[key] for part in parts])
            for key in parts[0]}

  def scan(self):
    """Loads new episode files and forgets the ones that are gone; keeps
    the newest in memory within the budget."""
    paths = list_episodes(self._directory)
    names = {path.name for path in paths}
    for name in set(self._cache) - names:
      del self._cache[name]
    for path in paths:
      if path.name not in self._cache:
        self._cache[path.name] = self._load(path)
    self._evict()
    shortest = 0 if self._across else self._length
    self._usable = sorted(
        name for name, episode in self._cache.items()
        if episode is not None and episode_length(name) > shortest)
    if self._across:
      lengths = [episode_length(name) for name in self._usable]
      self._starts = list(np.cumsum([0] + lengths))
      if self._starts[-1] < self._length:
        self._usable = []

  def memory(self):
    """Bytes of the episodes held in memory."""
    return sum(_nbytes(episode) for episode in self._cache.values())

  def _evict(self):
    if self._budget is None:
      return
    held = self.memory()
    for name in sorted(self._cache):  # Oldest first: names start with time.
      if held <= self._budget:
        break
      if isinstance(self._cache[name], dict):
        held -= _nbytes(self._cache[name])
        self._cache[name] = _ON_DISK

  def _load(self, path):
    try:
      episode = load_episode(path)
      if len(episode['reward']) != episode_length(path):
        raise ValueError(
            f'unreadable episode file {path}: {len(episode["reward"])} steps, '
            f'its name says {episode_length(path)}')
    except ValueError as error:
      print(f'Skipping episode: {error}', flush=True)
      return None
    for value in episode.values():
      value.flags.writeable = False
    return episode

  def get_state(self):
    """The random state and sample count, to resume the same stream."""
    return {'rng': self._rng.bit_generator.state, 'count': self._count}

  def set_state(self, state):
    self._rng.bit_generator.state = state['rng']
    self._count = state['count']


_ON_DISK = 'on disk'


def _nbytes(episode):
  return sum(v.nbytes for v in episode.values()) if isinstance(episode, dict) else 0


def batches(sampler, batch_size):
  """Stacks `batch_size` sequences into arrays (batch_size, length, ...)."""
  while True:
    sequences = [next(sampler) for _ in range(batch_size)]
    yield {
        key: np.stack([sequence[key] for sequence in sequences])
        for key in sequences[0]}




def replay_bytes(gigabytes):
  """The replay cache budget in bytes: `gigabytes`, or half of the RAM if 0."""
  if gigabytes:
    return int(gigabytes * 2 ** 30)
  try:
    return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // 2
  except (ValueError, OSError):
    return 8 * 2 ** 30
