"""Runs the original Dreamer code (danijar/dreamer, written for TF 2.2) on
today's TensorFlow, from a checkout the user passes, without editing it.

    import os; os.environ['TF_USE_LEGACY_KERAS'] = '1'   # before TensorFlow
    import original_compat
    original_compat.check_checkout(path)        # -> '56d4d44' or ValueError
    original = original_compat.load_original(path)
    original.dreamer.Dreamer, original.models.RSSM, original.tools.Adam

Only the APIs TensorFlow removed since 2.2 are mapped to their current
names (each shim below names the line of the original that breaks and why
the replacement computes the same); no math of the original is changed.
Its modules are loaded under their own names (`dreamer`, `models`,
`tools`, `wrappers`), which are also names of ours: load them in a process
that never imports our modules of those names (original_step.py is one).
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
  _stand_in('gym')
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


class Absent(types.ModuleType):
  """A stand-in module: importing it works, using any name raises."""

  def __getattr__(self, name):
    if name.startswith('__'):
      raise AttributeError(name)
    raise ImportError(
        f'{self.__name__}.{name}: {self.__name__} is not installed; '
        f'original_compat stands in for it so that the original imports, '
        f'but its environment code (which uses it) cannot run here')


def _stand_in(name, submodules=()):
  """`import gym` (tools.py line 8, wrappers.py line 7) and `from PIL
  import Image` (wrappers.py line 9) fail when these packages are absent.
  Only the environment wrappers and tools.DummyEnv use them, never the
  agent or its train step; an Absent module lets the files import. An
  installed package is left alone."""
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
