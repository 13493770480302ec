"""Runs the original Dreamer code (danijar/dreamer, written for TF 2.2) on
today's TensorFlow, from a checkout the user passes, without editing it.

    import os; os.environ['TF_USE_LEGACY_KERAS'] = '1'   # before TensorFlow
    from harness import compat
    compat.check_checkout(path)        # -> '56d4d44' or ValueError
    original = compat.load_original(path)
    original.dreamer.Dreamer, original.models.RSSM, original.tools.Adam

Only the APIs TensorFlow removed since 2.2 are mapped to their current
names (each shim below names the line of the original that breaks and why
the replacement computes the same); no math of the original is changed.
Packages it imports that are not installed here get stand-ins: gym (its
spaces work, the rest raises), PIL when absent, and tf.summary.scalar
without tensorboard (the same scalar as a raw Summary proto).
Its modules are loaded under their own names (`dreamer`, `models`,
`tools`, `wrappers`), which are also names of ours: load them in a process
that never imports our modules of those names (harness/step.py is one).
The original needs Keras 2 layers (tf_keras): Keras 3 layers do not track
their variables inside its tf.Module objects the way it relies on.
"""

import hashlib
import importlib.util
import os
import pathlib
import sys
import types

# Git blob hashes of the original's files at commit 56d4d44 ("Add scores in
# JSON format"), the commit this layer was written and tested against.
KNOWN = {
    '56d4d44': {
        'dreamer.py': 'fa6236dd59d85ffab9be4c83775b471c55cc3260',
        'models.py': '0f40316ed8484dde2a9af89ae8fbe1d18f8d2e8c',
        'tools.py': 'd5a80f388597425f6c77456f3af2d041ad7e9b7c',
        'wrappers.py': '686270502bb1899de1da0591e9fd34e5aa610859',
    },
}
MODULES = ('tools', 'models', 'wrappers', 'dreamer')  # import order


def blob_hash(data):
  """Git's blob hash of `data`: sha1(b'blob <len>\\0' + data), hex."""
  return hashlib.sha1(b'blob %d\0' % len(data) + data).hexdigest()


def check_checkout(path, force=False):
  """The commit whose files `path` holds unchanged, e.g. '56d4d44'.

  Compares the git blob hash of dreamer.py, models.py, tools.py and
  wrappers.py in `path` with each known commit's. Raises ValueError (one
  line naming the files that differ or are missing) unless `force`, which
  returns None instead.
  """
  path = pathlib.Path(path)
  hashes = {}
  for name in KNOWN['56d4d44']:
    file = path / name
    hashes[name] = blob_hash(file.read_bytes()) if file.is_file() else None
  for commit, known in KNOWN.items():
    if hashes == known:
      return commit
  if force:
    return None
  commit, known = next(iter(KNOWN.items()))
  differ = [
      name + (' (missing)' if hashes[name] is None else '')
      for name in known if hashes[name] != known[name]]
  raise ValueError(
      f'{path} is not the original Dreamer at a known commit: '
      f'{", ".join(differ)} differ{"s" if len(differ) == 1 else ""} from '
      f'commit {commit} (force=True, or --force, runs it anyway)')


def load_original(path):
  """Namespace(dreamer, models, tools, wrappers, path) of the checkout.

  Needs TF_USE_LEGACY_KERAS=1 in the environment before TensorFlow was
  first imported (raises RuntimeError otherwise, or when modules named
  like the original's are already loaded from elsewhere). Installs the
  shims, then imports the four files from `path` under their own names.
  """
  path = pathlib.Path(path).resolve()
  if os.environ.get('TF_USE_LEGACY_KERAS') != '1':
    raise RuntimeError(
        'set TF_USE_LEGACY_KERAS=1 before TensorFlow is imported: the '
        'original needs Keras 2 layers (tf_keras)')
  loaded = {}
  for name in MODULES:
    module = sys.modules.get(name)
    if module is not None:
      if pathlib.Path(getattr(module, '__file__', '')).parent != path:
        raise RuntimeError(
            f'a module named {name!r} is already loaded from '
            f'{getattr(module, "__file__", "?")}; load the original in a '
            f'process of its own')
      loaded[name] = module
  install_shims()
  for name in MODULES:
    if name not in loaded:
      loaded[name] = _import_file(name, path / f'{name}.py')
  return types.SimpleNamespace(path=path, **loaded)


def _import_file(name, file):
  """Imports `file` as the top-level module `name` (what dreamer.py's own
  `import models, tools, wrappers` then finds in sys.modules)."""
  spec = importlib.util.spec_from_file_location(name, file)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  try:
    spec.loader.exec_module(module)
  except BaseException:
    del sys.modules[name]
    raise
  return module


def install_shims():
  """Maps the removed TF 2.2 APIs the original uses; idempotent."""
  import tensorflow as tf
  if 'tf_keras' not in tf.keras.__name__:
    raise RuntimeError(
        f'tf.keras is {tf.keras.__name__}, not tf_keras: set '
        f'TF_USE_LEGACY_KERAS=1 before TensorFlow is imported')
  _shim_mixed_precision(tf)
  _shim_run_v2(tf)
  _shim_summary_scalar(tf)
  install_gym_stand_in()
  _stand_in('PIL', ('Image',))


def _shim_mixed_precision(tf):
  """`from tensorflow.keras.mixed_precision import experimental as prec`
  (dreamer.py line 15, models.py line 5, tools.py line 13) raises
  ImportError: the `experimental` namespace was removed in TF 2.11. The
  original uses four of its names, each still present under another name:

    prec.global_policy()  -> mixed_precision.global_policy()  (same)
    prec.set_policy(p)    -> mixed_precision.set_global_policy(p)
    prec.Policy(name)     -> mixed_precision.Policy(name)  (same class)
    prec.LossScaleOptimizer(opt, 'dynamic')  (tools.Adam)
      In TF 2.2 the string 'dynamic' meant DynamicLossScale(initial 2**15,
      increment_period 2000, multiplier 2): start at 2**15, double after
      2000 finite steps, halve and skip the step on a non-finite gradient.
      Today's class takes that schedule as (dynamic=True, initial_scale=
      2**15, dynamic_growth_steps=2000), multiplier 2 fixed. A number meant
      a fixed scale: dynamic=False, initial_scale=number. get_scaled_loss,
      get_unscaled_gradients and apply_gradients keep name and meaning.
  """
  mp = tf.keras.mixed_precision
  if getattr(mp, 'experimental', None) is not None:
    return

  def loss_scale_optimizer(optimizer, loss_scale='dynamic'):
    if loss_scale == 'dynamic':
      return mp.LossScaleOptimizer(
          optimizer, dynamic=True, initial_scale=2 ** 15,
          dynamic_growth_steps=2000)
    return mp.LossScaleOptimizer(
        optimizer, dynamic=False, initial_scale=float(loss_scale))

  name = 'tensorflow.keras.mixed_precision.experimental'
  experimental = types.ModuleType(name)
  experimental.Policy = mp.Policy
  experimental.global_policy = mp.global_policy
  experimental.set_policy = mp.set_global_policy
  experimental.LossScaleOptimizer = loss_scale_optimizer
  mp.experimental = experimental
  import tensorflow.keras.mixed_precision as mp_module
  mp_module.experimental = experimental
  sys.modules[name] = experimental


def _shim_run_v2(tf):
  """`self._strategy.experimental_run_v2(self._train, ...)` (dreamer.py,
  Dreamer.train) raises AttributeError: TF 2.2 renamed the method `run`
  and TF 2.4 removed the old name. Same method: calls the function once
  per replica with the same arguments."""
  if not hasattr(tf.distribute.Strategy, 'experimental_run_v2'):
    tf.distribute.Strategy.experimental_run_v2 = tf.distribute.Strategy.run


def _shim_summary_scalar(tf):
  """`tf.summary.scalar(...)` (dreamer.py, summarize_episode and
  Dreamer._write_summaries) raises TBNotInstalledError: since TF 2.x the
  implementation lives in the tensorboard package, which is not installed
  here. Without it, the stand-in writes the same scalar (tag `name`, value
  `data`, at `step` or the default step) as a raw Summary proto to the
  default writer: TensorBoard shows it as the same scalar. Returns whether
  a default writer took it, as the original function. Left alone when
  tensorboard is installed."""
  try:
    import tensorboard.summary.v2  # noqa: F401
    return
  except ImportError:
    pass
  if getattr(tf.summary.scalar, '_original_compat', False):
    return

  def scalar(name, data, step=None, description=None):
    del description
    if step is None:
      step = tf.summary.experimental.get_step()
    summary = tf.compat.v1.Summary(value=[tf.compat.v1.Summary.Value(
        tag=name, simple_value=float(data))])
    return tf.summary.experimental.write_raw_pb(
        summary.SerializeToString(), step)

  scalar._original_compat = True
  tf.summary.scalar = scalar


class Absent(types.ModuleType):
  """A stand-in module: importing it works, using any name raises."""

  def __getattr__(self, name):
    if name.startswith('__'):
      raise AttributeError(name)
    raise ImportError(
        f'{self.__name__}.{name}: {self.__name__} is not installed; '
        f'harness.compat stands in for it so that the original imports, '
        f'but its environment code (which uses it) cannot run here')


def _stand_in(name, submodules=()):
  """`from PIL import Image` (wrappers.py line 9) fails when Pillow is
  absent. Only the original's Atari wrapper uses it (never run here: our
  environment worker serves Atari); an Absent module lets the file import.
  An installed package is left alone."""
  try:
    __import__(name)
    return
  except ImportError:
    pass
  module = sys.modules.get(name)
  if not isinstance(module, Absent):
    module = sys.modules[name] = Absent(name)
  for sub in submodules:
    full = f'{name}.{sub}'
    sys.modules.setdefault(full, Absent(full))
    setattr(module, sub, sys.modules[full])


def install_gym_stand_in():
  """`import gym` (tools.py line 8, wrappers.py line 7) fails: gym is not
  installed. The original's wrappers build gym spaces (DeepMindControl,
  NormalizeActions, OneHotAction, RewardObs) and its main() samples
  random prefill actions from `action_space.sample()`, so the stand-in
  gives working `gym.spaces.Box`, `Dict` and `Discrete` (what those lines
  need of gym 0.17's classes); any other name of gym (gym.make, which the
  original's Atari wrapper calls) raises ImportError. Imports neither
  TensorFlow nor gym; idempotent; an installed gym is left alone."""
  try:
    __import__('gym')
    return
  except ImportError:
    pass
  if isinstance(sys.modules.get('gym'), Absent):
    return
  gym = Absent('gym')
  spaces = types.ModuleType('gym.spaces')
  spaces.Box, spaces.Dict, spaces.Discrete = Box, Dict, Discrete
  gym.spaces = spaces
  sys.modules['gym'] = gym
  sys.modules['gym.spaces'] = spaces


class Box:
  """gym.spaces.Box: `low` and `high` broadcast to `shape` (taken from
  `low` when not given) in `dtype`. `sample()` draws uniformly in
  [low, high] (bounded axes, as gym for float boxes) from `np_random`, by
  default NumPy's global generator (seeded by harness/train.py)."""

  def __init__(self, low, high, shape=None, dtype=None):
    import numpy as np
    dtype = np.dtype(np.float32 if dtype is None else dtype)
    if shape is None:
      shape = np.broadcast(np.asarray(low), np.asarray(high)).shape
    self.shape = tuple(int(n) for n in shape)
    self.dtype = dtype
    self.low = np.broadcast_to(np.asarray(low), self.shape).astype(dtype)
    self.high = np.broadcast_to(np.asarray(high), self.shape).astype(dtype)
    self.np_random = np.random

  def sample(self):
    import numpy as np
    if not (np.isfinite(self.low).all() and np.isfinite(self.high).all()):
      raise NotImplementedError('sampling an unbounded Box')
    if self.dtype.kind == 'f':
      value = self.np_random.uniform(self.low, self.high, self.shape)
    else:
      value = self.np_random.randint(
          self.low.astype(np.int64), self.high.astype(np.int64) + 1,
          self.shape)
    return value.astype(self.dtype)

  def contains(self, x):
    import numpy as np
    x = np.asarray(x)
    return bool(x.shape == self.shape and np.all(x >= self.low)
                and np.all(x <= self.high))

  def __repr__(self):
    return f'Box({self.low.min()}, {self.high.max()}, {self.shape}, {self.dtype})'


class Dict:
  """gym.spaces.Dict: `spaces` ordered by key when given a plain dict, as
  gym 0.17 does."""

  def __init__(self, spaces):
    import collections
    if not isinstance(spaces, collections.OrderedDict):
      spaces = collections.OrderedDict(sorted(spaces.items()))
    self.spaces = spaces

  def __getitem__(self, key):
    return self.spaces[key]

  def sample(self):
    return {key: space.sample() for key, space in self.spaces.items()}

  def __repr__(self):
    return f'Dict({dict(self.spaces)!r})'


class Discrete:
  """gym.spaces.Discrete(n): integers 0 .. n-1."""

  def __init__(self, n):
    import numpy as np
    self.n = int(n)
    self.shape = ()
    self.dtype = np.dtype(np.int64)
    self.np_random = np.random

  def sample(self):
    return int(self.np_random.randint(self.n))

  def contains(self, x):
    return 0 <= int(x) < self.n

  def __repr__(self):
    return f'Discrete({self.n})'
