"""What a run writes for its reader: metrics.jsonl, TensorBoard events,
GIFs, and the progress line on the console.

Imports TensorFlow only to write TensorBoard events.
"""

import collections
import json
import pathlib
import re
import time

import numpy as np

from tools import write_atomic


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
  A name logged twice before a write keeps its last value. TensorBoard
  events are raw Summary protos, so the tensorboard package is not needed.
  """

  def __init__(self, logdir, step=0):
    self.logdir = pathlib.Path(logdir).expanduser()
    self.step = step
    self._scalars = {}
    self._videos = {}
    self._writer = None
    self._last_fps = None  # (step, time) of the last write with fps.

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
    scalars, videos = self._scalars, self._videos
    self._scalars, self._videos = {}, {}
    if not (scalars or videos):
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
    write_atomic(path, lambda file: file.write(gif))
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
