"""Small helpers: the λ-return and the scan it runs on, schedules, the step
counter and the run's file writes (whole or not at all, one error).

TensorFlow is imported by the functions that need it, so that modules
without TensorFlow (replay, logging, environment workers) can import this
one.
"""

import contextlib
import errno
import os
import pathlib

# --- Math -------------------------------------------------------------------

def static_scan(fn, inputs, start, reverse=False):
  """Runs `state = fn(state, input_t)` over axis 0 of `inputs`, unrolled.

  `inputs` and `start` are nested structures of tensors; the states of every
  step are stacked along a new axis 0, in time order (also when `reverse`).
  Unrolled in Python like the original, so the graph has one copy of `fn` per
  step: the sequence length must be static. The inputs are unstacked once:
  the gradient of that is one stack, where one slice per step would make
  one input-sized gradient per step to add up (the same sum, with zeros).
  """
  import tensorflow as tf
  flat_inputs = tf.nest.flatten(inputs)
  length = flat_inputs[0].shape[0]
  if length is None:
    raise ValueError('static_scan needs a static length on axis 0.')
  indices = range(length)
  if reverse:
    indices = reversed(indices)
  steps = [tf.unstack(x, length) for x in flat_inputs]
  last = start
  outputs = []
  for index in indices:
    step_input = tf.nest.pack_sequence_as(inputs, [x[index] for x in steps])
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

  def get_state(self):
    """The step it last fired for (None before the first call)."""
    return self._last

  def set_state(self, last):
    self._last = last


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


class Counter:
  """The run's one step counter: environment steps of the training
  environments, from the episodes on disk at start."""

  def __init__(self, value=0):
    self.value = int(value)

  def increment(self, amount=1):
    self.value += amount

  def __int__(self):
    return self.value

  def __repr__(self):
    return f'Counter({self.value})'


# --- Files ------------------------------------------------------------------

def previous_path(path):
  """Where `write_atomic(..., keep_previous=True)` keeps the file it
  replaces: PATH.prev."""
  path = pathlib.Path(path)
  return path.with_name(path.name + '.prev')


# Why a write fails that a user can fix: full disk, quota, read-only or
# unwritable or vanished logdir. Other errors are bugs and stay tracebacks.
WRITE_ERRNOS = frozenset({
    errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.ENOENT})
# Test-only: 'ERRNO:GLOB[:N]' makes the writes to files whose name matches
# GLOB fail with ERRNO after the first N of them (default 0), as a full disk
# would, in the middle of the write.
FAIL_WRITE_ENV = 'DREAMER_FAIL_WRITE'
_write_counts = {}


class WriteError(OSError):
  """A file could not be written for a reason in WRITE_ERRNOS; nothing of
  the failed write is left on disk. str(): 'cannot write PATH: REASON'."""

  def __init__(self, path, error):
    super().__init__(error.errno, error.strerror, str(path))
    self.path = pathlib.Path(path)

  def __str__(self):
    code = errno.errorcode.get(self.errno, self.errno)
    return f'cannot write {self.path}: {self.strerror} ({code})'


def _injected_failure(path):
  """Raises the OSError that FAIL_WRITE_ENV asks for at `path`, if any."""
  spec = os.environ.get(FAIL_WRITE_ENV)
  if not spec:
    return
  code, pattern, *after = spec.split(':')
  if not pathlib.PurePath(path.name).match(pattern):
    return
  _write_counts[spec] = _write_counts.get(spec, 0) + 1
  if _write_counts[spec] > int(after[0] if after else 0):
    number = getattr(errno, code)
    raise OSError(number, os.strerror(number), str(path))


@contextlib.contextmanager
def _told(path):
  """Raises an OSError for a reason in WRITE_ERRNOS, coming from inside, as
  WriteError(path); other errors pass as they are."""
  try:
    yield
  except WriteError:
    raise
  except OSError as error:
    if error.errno in WRITE_ERRNOS:
      raise WriteError(path, error) from error
    raise


def make_dirs(path):
  """mkdir -p `path`; WriteError for a reason in WRITE_ERRNOS."""
  with _told(path):
    pathlib.Path(path).mkdir(parents=True, exist_ok=True)


def write_atomic(path, write, keep_previous=False):
  """Calls `write(file)` on a temporary file, then renames it to `path`;
  with `keep_previous`, a file already at `path` stays as PATH.prev. On
  any failure the temporary file is removed, and a reason in WRITE_ERRNOS
  is raised as WriteError."""
  path = pathlib.Path(path)
  temp = path.with_name(f'.{path.name}.tmp')
  with _told(path):
    try:
      with open(temp, 'wb') as file:
        write(file)
        _injected_failure(path)
      if keep_previous and path.exists():
        previous = previous_path(path)
        previous.unlink(missing_ok=True)
        os.link(path, previous)
      os.replace(temp, path)
    except BaseException:
      with contextlib.suppress(OSError):  # A vanished folder: nothing left.
        temp.unlink(missing_ok=True)
      raise


def append_whole(path, data):
  """Appends the bytes `data` to `path` (created if missing) whole or not
  at all: a write that fails is cut off again, so the file keeps its size,
  and a reason in WRITE_ERRNOS is raised as WriteError."""
  path = pathlib.Path(path)
  with _told(path):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    size = os.fstat(fd).st_size
    try:
      view = memoryview(data)
      while view:
        view = view[os.write(fd, view):]
      _injected_failure(path)
    except BaseException:
      with contextlib.suppress(OSError):
        os.ftruncate(fd, size)
      raise
    finally:
      os.close(fd)


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
