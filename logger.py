"""What a run writes for its reader: metrics.jsonl, TensorBoard events,
GIFs, and the progress line on the console.

Every write is whole or not at all and fails with tools.WriteError (see
tools.py). `Logger.mark()` and `rewind()` keep one value per step across a
resume: the checkpoint holds the mark, and the next run rewinds the logdir
to it before it writes. Imports TensorFlow only to build the protos of
TensorBoard events.
"""

import collections
import json
import os
import pathlib
import re
import socket
import struct
import time

import numpy as np

from tools import append_whole, make_dirs, write_atomic

METRICS = 'metrics.jsonl'
LOST = 'metrics.lost.jsonl'  # Lines of stretches a stop lost.
EVENTS = 'events.out.tfevents.'
# Carried by several writes of one step by design: the original logs the
# episode count with both the train and the test episode of a step.
SHARED = frozenset({'episodes'})


# --- Metrics, TensorBoard and videos -----------------------------------------

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


class Logger:
  """Collects scalars and videos and writes them together.

  `write(step, prefix=...)` appends {"step": step, name: value, ...} to
  logdir/metrics.jsonl under the bare names, writes TensorBoard summaries
  under the tag `prefix/name` (`name` without a prefix), prints a console
  line and saves each video as logdir/videos/{tag with / as _}-{step}.gif.
  A name logged twice before a write keeps its last value. A metric is
  written once per step, also across resumes: a write whose metrics (but
  SHARED ones) were all written at this step or later before (a test
  episode done again after a stop) is dropped, as is a video whose GIF
  for this step exists. TensorBoard
  events are raw Summary protos written by `EventFile`, so the tensorboard
  package is not needed.
  """

  def __init__(self, logdir, step=0):
    self.logdir = pathlib.Path(logdir).expanduser()
    self.step = step
    self._scalars = {}
    self._videos = {}
    self._writer = None
    self._last_fps = None  # (step, time) of the last write with fps.
    self._written = None  # {name: last step in metrics.jsonl}, when read.

  def scalar(self, name, value):
    self._scalars[name] = float(np.asarray(value))

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
    scalars, videos = self._fresh(self._scalars), {
        name: frames for name, frames in self._videos.items()
        if not self._gif_path(tag_of(prefix, name)).exists()}
    self._scalars, self._videos = {}, {}
    if not (scalars or videos):
      return
    make_dirs(self.logdir)
    if scalars:
      self._write_jsonl(scalars)
      self._written.update(dict.fromkeys(scalars, self.step))
      print(f'[{self.step}]', ' / '.join(
          f'{name} {value:.4g}' for name, value in scalars.items()),
          flush=True)
    values = [_scalar_value(tag_of(prefix, name), value)
              for name, value in scalars.items()]
    for name, frames in videos.items():
      values.append(self._save_video(tag_of(prefix, name), frames))
    self._write_summary(values)

  def close(self):
    self._writer = None

  def mark(self, step):
    """What the logdir holds now, for the checkpoint: {"step": step,
    "files": {name: size}} of metrics.jsonl and the events files."""
    files = {}
    if self.logdir.is_dir():
      for path in self.logdir.iterdir():
        if path.name == METRICS or path.name.startswith(EVENTS):
          files[path.name] = path.stat().st_size
    return {'step': int(step), 'files': files}

  def _add_fps(self):
    now = time.time()
    if self._last_fps is not None:
      last_step, last_time = self._last_fps
      duration = max(now - last_time, 1e-9)
      self._scalars['fps'] = (self.step - last_step) / duration
    self._last_fps = (self.step, now)

  def _fresh(self, scalars):
    """`scalars`, or {} if those not SHARED were all written at this step
    or later (one value per metric and step)."""
    if self._written is None:
      self._written = _last_steps(self.logdir / METRICS)
    fresh = {name for name in scalars if name not in SHARED and (
        self._written.get(name, -1) < self.step)}
    return scalars if fresh else {}

  def _gif_path(self, tag):
    return self.logdir / 'videos' / f"{tag.replace('/', '_')}-{self.step}.gif"

  def _write_jsonl(self, scalars):
    line = json.dumps({'step': int(self.step), **scalars})
    append_whole(self.logdir / METRICS, (line + '\n').encode())

  def _save_video(self, tag, frames):
    """Saves the GIF file and returns its Summary value."""
    gif = encode_gif(frames)
    path = self._gif_path(tag)
    make_dirs(path.parent)
    write_atomic(path, lambda file: file.write(gif))
    return _image_value(tag, frames[0].shape, gif)

  def _write_summary(self, values):
    import tensorflow as tf
    if self._writer is None:
      self._writer = EventFile(self.logdir)
    self._writer.write(tf.compat.v1.Event(
        wall_time=time.time(), step=int(self.step),
        summary=tf.compat.v1.Summary(value=values)))


def tag_of(prefix, name):
  return f'{prefix}/{name}' if prefix else name


def _last_steps(path):
  """{metric: the last step it has a value at} in a metrics.jsonl."""
  last = {}
  try:
    lines = pathlib.Path(path).read_text().splitlines()
  except OSError:
    return last
  for line in lines:
    try:
      row = json.loads(line)
      for name in row:
        last[name] = max(last.get(name, -1), int(row['step']))
    except (ValueError, KeyError, TypeError):
      continue  # A line a kill cut short.
  return last


def rewind(logdir, mark):
  """Takes `logdir` back to `mark` (Logger.mark, from the checkpoint a run
  resumes from; {} when there is none): the lines of metrics.jsonl past it
  move to metrics.lost.jsonl, events files are cut to their marked size and
  those it does not name are deleted. Returns the number of lines moved."""
  logdir = pathlib.Path(logdir)
  files = mark.get('files', {})
  if not logdir.is_dir():
    return 0
  for path in sorted(logdir.glob(EVENTS + '*')):
    if path.name not in files:
      path.unlink()
    elif path.stat().st_size > files[path.name]:
      os.truncate(path, files[path.name])
  path = logdir / METRICS
  size = files.get(METRICS, 0)
  if not path.exists() or path.stat().st_size <= size:
    return 0
  with open(path, 'rb') as file:
    file.seek(size)
    lost = file.read()
  if not lost.endswith(b'\n'):
    lost += b'\n'  # The line a kill cut short.
  append_whole(logdir / LOST, lost)
  os.truncate(path, size)
  return lost.count(b'\n')


class EventFile:
  """A TensorBoard events file (TFRecord of Event protos) in `logdir`,
  written record by record with tools.append_whole, so a failed write
  leaves no partial record and raises WriteError (TensorFlow's own writer
  drops such errors silently)."""

  def __init__(self, logdir):
    import tensorflow as tf
    self.path = pathlib.Path(logdir) / (
        f'{EVENTS}{int(time.time())}.{socket.gethostname()}.{os.getpid()}'
        f'.dreamer.v2')
    self.write(tf.compat.v1.Event(
        wall_time=time.time(), file_version='brain.Event:2'))

  def write(self, event):
    data = event.SerializeToString()
    length = struct.pack('<Q', len(data))
    append_whole(self.path, b''.join([
        length, struct.pack('<I', _masked_crc(length)), data,
        struct.pack('<I', _masked_crc(data))]))


def _crc32c_table():
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    table.append(crc)
  return table


_CRC_TABLE = _crc32c_table()


def _masked_crc(data):
  """TFRecord's masked CRC-32C of `data` (about 10 MB/s in Python)."""
  crc, table = 0xFFFFFFFF, _CRC_TABLE
  for byte in data:
    crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  crc ^= 0xFFFFFFFF
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _scalar_value(tag, value):
  import tensorflow as tf
  return tf.compat.v1.Summary.Value(tag=tag, simple_value=value)


def _image_value(tag, shape, encoded):
  """A Summary value showing `encoded` image bytes (PNG or animated GIF)."""
  import tensorflow as tf
  height, width, channels = shape
  image = tf.compat.v1.Summary.Image(
      height=height, width=width, colorspace=channels,
      encoded_image_string=encoded)
  return tf.compat.v1.Summary.Value(tag=tag, image=image)


# --- Progress ---------------------------------------------------------------

class Progress:
  """Prints a status line at most every `every` seconds.

  Time left = steps left / collection rate + updates left · seconds per
  update, with `updates_per_step` updates due per environment step; it
  reads "estimating" until both are known. Seconds per update is the median
  of the last 100 updates of this process after its first, which traces
  the train step (40 s for an 8 s update at the full config on 2 cores).
  """

  def __init__(self, total_steps, step, updates_per_step=0.0, every=30.0):
    self._total = total_steps
    self._updates_per_step = updates_per_step
    self._start_step = step
    self._start = time.time()
    self._last = self._start
    self._every = every
    self.train_return = None
    self.test_return = None
    self.collect_steps = 0
    self.collect_seconds = 0.0
    self.replay = None  # Returns the bytes the replay cache holds.
    self.updates = 0  # The agent's totals, as `trained` last reported them.
    self.train_seconds = 0.0
    self._durations = collections.deque(maxlen=100)
    self._traced = False
    self._mark = None

  def trained(self, updates, train_seconds, duration=None):
    """The agent's update count and training seconds so far, and the
    `duration` of the update it has just done, if it has."""
    self.updates, self.train_seconds = updates, train_seconds
    if duration is not None:
      if self._traced:
        self._durations.append(duration)
      self._traced = True

  def seconds_per_update(self):
    """Median seconds of the recent updates, or None before 3 are known."""
    if len(self._durations) < 3:
      return None
    return float(np.median(self._durations))

  def tick(self, step, force=False):
    """After an environment step: tracks it, prints the line when due."""
    self.track(step, self.train_seconds)
    self.update(step, force)

  def collected(self, steps, seconds):
    """Adds environment steps collected in `seconds` without training."""
    self.collect_steps += steps
    self.collect_seconds += seconds

  def track(self, step, train_seconds):
    """Counts the steps and time since the last call, training excluded.

    Called after every agent step, so evaluation episodes count as time
    spent without new training steps, as they do in the time left.
    """
    now = time.time()
    if self._mark:
      then, last_step, last_train = self._mark
      self.collected(
          step - last_step, (now - then) - (train_seconds - last_train))
    self._mark = now, step, train_seconds

  def update(self, step, force=False):
    """Prints the line if `every` seconds have passed since the last, or
    if `force`."""
    now = time.time()
    if not force and now - self._last < self._every:
      return
    self._last = now
    print(self.line(step, now), flush=True)

  def line(self, step, now):
    elapsed = max(now - self._start, 1e-9)
    rate = (step - self._start_step) / elapsed
    per_update = self.seconds_per_update()
    collect = self.collect_steps / self.collect_seconds if self.collect_seconds else 0
    steps_left = max(0, self._total - step)
    if not steps_left:
      left = '0h00m'
    elif collect and (per_update is not None or not self._updates_per_step):
      left = _duration(steps_left * (
          1 / collect + self._updates_per_step * (per_update or 0)))
    else:
      left = 'estimating'
    each = 'estimating' if per_update is None else f'{per_update:.2f} s each'
    fmt = lambda x: '-' if x is None else f'{x:.1f}'
    return (
        f'[progress] step {step:,}/{self._total:,} | {rate:.1f} steps/s '
        f'overall, {collect:.1f} collecting | updates {self.updates:,} '
        f'({each}) | return train {fmt(self.train_return)} '
        f'test {fmt(self.test_return)} | {_memory(self.replay)}left {left}')


def _memory(replay):
  """'memory X GB (replay Y GB) | ': the process's resident size and
  `replay()`, the replay cache's."""
  try:
    status = pathlib.Path('/proc/self/status').read_text()
    rss = int(re.search(r'VmRSS:\s+(\d+) kB', status).group(1)) * 1024
  except (OSError, AttributeError):
    return ''
  replay = '' if replay is None else f' (replay {replay() / 2 ** 30:.1f} GB)'
  return f'memory {rss / 2 ** 30:.1f} GB{replay} | '


def _duration(seconds):
  hours, rest = divmod(int(seconds), 3600)
  return f'{hours}h{rest // 60:02d}m'
