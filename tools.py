"""Small helpers: the λ-return, scans, schedules, episode files, training
sequences and logging.

Nothing here imports dm_control: the main process must never load it (see
wrappers.py). TensorFlow is imported lazily by the functions that need it so
that environment worker processes can import this module too.
"""

import json
import os
import pathlib
import pickle
import re
import time
import uuid

import numpy as np


# --- Math -------------------------------------------------------------------

def static_scan(fn, inputs, start, reverse=False):
  """Runs `state = fn(state, input_t)` over axis 0 of `inputs`, unrolled.

  `inputs` and `start` are nested structures of tensors; the states of every
  step are stacked along a new axis 0, in time order (also when `reverse`).
  Unrolled in Python like the original, so the graph has one copy of `fn` per
  step: the sequence length must be static.
  """
  import tensorflow as tf
  flat_inputs = tf.nest.flatten(inputs)
  length = flat_inputs[0].shape[0]
  if length is None:
    raise ValueError('static_scan needs a static length on axis 0.')
  indices = range(length)
  if reverse:
    indices = reversed(indices)
  last = start
  outputs = []
  for index in indices:
    step_input = tf.nest.map_structure(lambda x: x[index], inputs)
    last = fn(last, step_input)
    outputs.append(last)
  if reverse:
    outputs = outputs[::-1]
  return tf.nest.map_structure(lambda *xs: tf.stack(xs, 0), *outputs)


def lambda_return(reward, value, pcont, bootstrap, lambda_, axis=0):
  """TD(λ) returns over the time axis `axis`.

      next[t] = value[t + 1] for t < T − 1, and next[T − 1] = bootstrap
      R[t] = reward[t] + pcont[t] · ((1 − λ) · next[t] + λ · R[t + 1])
      R[T] = bootstrap

  `reward`, `value` and `pcont` share one shape (`pcont` may also be a
  Python number); `bootstrap` has that shape without `axis`, or is None for
  zeros. Returns a tensor of the shape of `reward`.
  """
  import tensorflow as tf
  reward = tf.convert_to_tensor(reward)
  value = tf.convert_to_tensor(value, reward.dtype)
  if reward.shape.ndims != value.shape.ndims:
    raise ValueError(
        f'reward {reward.shape} and value {value.shape} differ in rank.')
  if isinstance(pcont, (int, float)):
    pcont = pcont * tf.ones_like(reward)
  pcont = tf.convert_to_tensor(pcont, reward.dtype)
  if axis != 0:
    perm = [axis] + [i for i in range(reward.shape.ndims) if i != axis]
    reward, value, pcont = (tf.transpose(x, perm) for x in (reward, value, pcont))
  if bootstrap is None:
    bootstrap = tf.zeros_like(value[-1])
  bootstrap = tf.convert_to_tensor(bootstrap, reward.dtype)
  reward.shape.assert_is_compatible_with(value.shape)
  reward.shape.assert_is_compatible_with(pcont.shape)
  reward.shape[1:].assert_is_compatible_with(bootstrap.shape)
  next_values = tf.concat([value[1:], bootstrap[None]], 0)
  inputs = reward + pcont * next_values * (1 - lambda_)
  returns = static_scan(
      lambda agg, cur: cur[0] + cur[1] * lambda_ * agg,
      (inputs, pcont), bootstrap, reverse=True)
  if axis != 0:
    returns = tf.transpose(returns, tf.argsort(perm))
  return returns


# --- Schedules --------------------------------------------------------------

class Every:
  """True once every `every` steps of a growing counter; 0: at every call."""

  def __init__(self, every):
    self._every = every
    self._last = None

  def __call__(self, step):
    if self._last is None:
      self._last = step
      return True
    if step >= self._last + self._every:
      self._last += self._every
      return True
    return False


class Once:
  """True the first time it is called, then False."""

  def __init__(self):
    self._once = True

  def __call__(self):
    if self._once:
      self._once = False
      return True
    return False


class Means:
  """Running means of named scalars since the last `result()`."""

  def __init__(self):
    self._sums = {}

  def add(self, values):
    for name, value in values.items():
      total, count = self._sums.get(name, (0.0, 0))
      self._sums[name] = (total + float(value), count + 1)

  def result(self):
    """{name: mean} of everything added since the last call, then resets."""
    means = {name: total / count for name, (total, count) in self._sums.items()}
    self._sums = {}
    return means

  def get_state(self):
    return dict(self._sums)

  def set_state(self, state):
    self._sums = dict(state)


def exploration_amount(step, amount, decay, minimum):
  """amount · 0.5^(step / decay), floored at `minimum`; `amount` if no decay."""
  if decay:
    amount = amount * 0.5 ** (float(step) / decay)
  if minimum:
    amount = max(minimum, amount)
  return amount


# --- Episodes on disk -------------------------------------------------------

# {YYYYmmddTHHMMSS}-{uuid4 hex}-{length}.npz (SPEC 3).
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
  _write_atomic(path, lambda file: np.savez_compressed(file, **episode))
  return path


def previous_path(path):
  """Where `save_pickle` keeps the file it replaces: PATH.prev."""
  path = pathlib.Path(path)
  return path.with_name(path.name + '.prev')


def save_pickle(path, state):
  """Pickles `state` to `path` atomically and durably; the file it replaces
  stays as `previous_path(path)` until the new one is complete."""

  def write(file):
    pickle.dump(state, file, protocol=pickle.HIGHEST_PROTOCOL)
    file.flush()
    os.fsync(file.fileno())

  _write_atomic(pathlib.Path(path), write, keep_previous=True)


def remove_temporary_files(logdir):
  """Deletes the `.NAME.tmp` files a killed run left in `logdir` and its
  episodes folder; returns their paths. Readers never look at them."""
  removed = []
  for folder in (pathlib.Path(logdir), pathlib.Path(logdir) / 'episodes'):
    if folder.is_dir():
      for path in folder.glob('.*.tmp'):
        path.unlink(missing_ok=True)
        removed.append(path)
  return removed


def _write_atomic(path, write, keep_previous=False):
  """Calls `write(file)` on a temporary file, then renames it to `path`;
  with `keep_previous`, a file already at `path` stays as PATH.prev."""
  temp = path.with_name(f'.{path.name}.tmp')
  try:
    with open(temp, 'wb') as file:
      write(file)
    if keep_previous and path.exists():
      previous = previous_path(path)
      previous.unlink(missing_ok=True)
      os.link(path, previous)
    os.replace(temp, path)
  except BaseException:
    temp.unlink(missing_ok=True)
    raise


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
  """

  def __init__(self, directory, length, balance=False, rescan=100, seed=None,
               memory=None):
    self._directory = pathlib.Path(directory).expanduser()
    self._length = int(length)
    self._balance = balance
    self._rescan = rescan
    self._rng = np.random.default_rng(seed)
    self._count = 0
    self._budget = memory
    # File name: episode, None when unreadable, or _ON_DISK past the budget.
    self._cache = {}
    self._usable = []  # Sorted names of the episodes longer than `length`.

  def __iter__(self):
    return self

  def __next__(self):
    due = self._rescan and self._count % self._rescan == 0
    if due or not self._usable:
      self.scan()
    if not self._usable:
      raise RuntimeError(
          f'no episode in {self._directory} has more than {self._length} '
          f'steps ({len(self._cache)} episode files).')
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
    self._usable = sorted(
        name for name, episode in self._cache.items()
        if episode is not None and episode_length(name) > self._length)

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


def sample_episodes(directory, length, balance=False, rescan=100, seed=None,
                    memory=None):
  """An EpisodeSampler: an infinite iterator of sequence dicts (see there)."""
  return EpisodeSampler(directory, length, balance, rescan, seed, memory)


def batches(sampler, batch_size):
  """Stacks `batch_size` sequences into arrays (batch_size, length, ...)."""
  while True:
    sequences = [next(sampler) for _ in range(batch_size)]
    yield {
        key: np.stack([sequence[key] for sequence in sequences])
        for key in sequences[0]}


# --- Logging ----------------------------------------------------------------

def to_rgb_uint8(frames):
  """uint8 kept, floats in [0, 1] scaled to 0–255; one channel made three."""
  frames = np.asarray(frames)
  if frames.dtype != np.uint8:
    frames = (np.clip(frames, 0, 1) * 255 + 0.5).astype(np.uint8)
  if frames.shape[-1] == 1:
    frames = np.repeat(frames, 3, axis=-1)
  return frames


def tile_video(frames):
  """(T, H, W, C) or (B, T, H, W, C) → uint8 (T, H, B·W, 3), B side by side."""
  frames = to_rgb_uint8(frames)
  if frames.ndim == 5:
    frames = np.concatenate(list(frames), axis=2)
  if frames.ndim != 4:
    raise ValueError(
        f'video needs (T, H, W, C) or (B, T, H, W, C), got {frames.shape}.')
  return frames


def encode_gif(frames, fps=20):
  """GIF bytes of uint8 (T, H, W, 3) frames that loop forever.

  Identical consecutive frames are merged into one longer frame.
  """
  import imageio.v3 as iio
  return iio.imwrite(
      '<bytes>', frames, extension='.gif', duration=1000 / fps, loop=0)


def encode_png(image):
  """PNG bytes of a uint8 (H, W, 3) image."""
  import imageio.v3 as iio
  return iio.imwrite('<bytes>', image, extension='.png')


class Logger:
  """Collects scalars, images and videos and writes them together.

  `write(step, prefix=...)` appends {"step": step, name: value, ...} to
  logdir/metrics.jsonl under the bare names, writes TensorBoard summaries
  under the tag `prefix/name` (`name` without a prefix), prints a console
  line and saves each video as logdir/videos/{tag with / as _}-{step}.gif.
  A name logged twice before a write keeps its last value. TensorBoard
  events are raw Summary protos, so the tensorboard package is not needed.
  """

  def __init__(self, logdir, step=0):
    self.logdir = pathlib.Path(logdir).expanduser()
    self.step = step
    self._scalars = {}
    self._images = {}
    self._videos = {}
    self._writer = None
    self._last_fps = None  # (step, time) of the last write with fps.

  def scalar(self, name, value):
    self._scalars[name] = float(np.asarray(value))

  def image(self, name, array):
    """An image (H, W, C) or a batch (B, H, W, C), uint8 or floats in [0, 1]."""
    array = to_rgb_uint8(array)
    self._images[name] = array[None] if array.ndim == 3 else array

  def video(self, name, frames):
    """Frames (T, H, W, C) or (B, T, H, W, C), uint8 or floats in [0, 1]."""
    self._videos[name] = tile_video(frames)

  def write(self, step=None, fps=False, prefix=''):
    """Writes and clears everything collected; `fps` adds steps per second.

    fps is measured from the previous write with `fps=True`, so the first
    such write has none.
    """
    if step is not None:
      self.step = step
    if fps:
      self._add_fps()
    scalars, images, videos = self._scalars, self._images, self._videos
    self._scalars, self._images, self._videos = {}, {}, {}
    if not (scalars or images or videos):
      return
    self.logdir.mkdir(parents=True, exist_ok=True)
    if scalars:
      self._write_jsonl(scalars)
      print(f'[{self.step}]', ' / '.join(
          f'{name} {value:.4g}' for name, value in scalars.items()),
          flush=True)
    tag = (lambda name: f'{prefix}/{name}') if prefix else (lambda name: name)
    values = [_scalar_value(tag(name), value)
              for name, value in scalars.items()]
    for name, batch in images.items():
      values += _image_values(tag(name), batch)
    for name, frames in videos.items():
      values.append(self._save_video(tag(name), frames))
    self._write_summary(values)

  def close(self):
    if self._writer is not None:
      self._writer.close()
      self._writer = None

  def _add_fps(self):
    now = time.time()
    if self._last_fps is not None:
      last_step, last_time = self._last_fps
      duration = max(now - last_time, 1e-9)
      self._scalars['fps'] = (self.step - last_step) / duration
    self._last_fps = (self.step, now)

  def _write_jsonl(self, scalars):
    line = json.dumps({'step': int(self.step), **scalars})
    with open(self.logdir / 'metrics.jsonl', 'a') as file:
      file.write(line + '\n')
      file.flush()

  def _save_video(self, tag, frames):
    """Saves the GIF file and returns its Summary value."""
    gif = encode_gif(frames)
    path = self.logdir / 'videos' / f"{tag.replace('/', '_')}-{self.step}.gif"
    path.parent.mkdir(exist_ok=True)
    _write_atomic(path, lambda file: file.write(gif))
    return _image_value(tag, frames[0].shape, gif)

  def _write_summary(self, values):
    import tensorflow as tf
    if self._writer is None:
      self._writer = tf.summary.create_file_writer(str(self.logdir))
    summary = tf.compat.v1.Summary(value=values)
    with self._writer.as_default():
      tf.summary.experimental.write_raw_pb(
          summary.SerializeToString(), int(self.step))
    self._writer.flush()


def _scalar_value(tag, value):
  import tensorflow as tf
  return tf.compat.v1.Summary.Value(tag=tag, simple_value=value)


def _image_values(tag, batch):
  """Summary values of a (B, H, W, 3) batch, tagged like tf.summary.image."""
  if len(batch) == 1:
    return [_image_value(tag, batch[0].shape, encode_png(batch[0]))]
  return [
      _image_value(f'{tag}/image/{index}', image.shape, encode_png(image))
      for index, image in enumerate(batch)]


def _image_value(tag, shape, encoded):
  """A Summary value showing `encoded` image bytes (PNG or animated GIF)."""
  import tensorflow as tf
  height, width, channels = shape
  image = tf.compat.v1.Summary.Image(
      height=height, width=width, colorspace=channels,
      encoded_image_string=encoded)
  return tf.compat.v1.Summary.Value(tag=tag, image=image)
