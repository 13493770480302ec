"""Checkpoints: `logdir/checkpoint.npz`, everything a run needs to resume.

It holds the model's weights (the original's names) and optimizer state,
the agent's schedule, counters and random state, and the sampler's random
state; the episodes on disk hold the rest. Written atomically after every
training burst, the previous one kept as `checkpoint.npz.prev` until the new
one is whole.

The file cannot hold code: arrays in an npz read with `allow_pickle=False`,
the rest of the state as JSON inside it. A `variables.pkl` (a pickle),
written by an earlier version of this code or by the original, is read
once by an unpickler that admits only arrays, dtypes and plain data, and
refuses anything else before it is constructed; the original's is
converted (`from_original`).
"""

import io
import json
import os
import pathlib
import pickle

import numpy as np

import kept
from config import fail
from tools import previous_path, write_atomic

NAME = 'checkpoint.npz'
LEGACY = 'variables.pkl'  # Ours before checkpoint.npz: a pickle.
_JSON = '__state__.json'


def exists(path):
  """Whether `path`, its previous version or a legacy pickle beside it is
  there to resume from."""
  return any(candidate.exists() for candidate in candidates(path))


def save_checkpoint(path, model, agent, sampler, logged=None, keep=(),
                    step=None):
  """Writes the checkpoint atomically; the one it replaces stays as
  PATH.prev until the new one is complete. `logged()`, if given, is what
  the logdir's logs hold now (logger.Logger.mark), kept as "logged". A
  copy is kept if one of the environment steps `keep` is due at `step`
  (`keep_copy`)."""
  state = {
      'version': 3, 'model': model.get_state(), 'agent': agent.get_state(),
      'sampler': sampler.get_state()}
  if logged:
    state['logged'] = logged()
  data = encode(state)

  def write(file):
    file.write(data)
    file.flush()
    os.fsync(file.fileno())

  write_atomic(pathlib.Path(path), write, keep_previous=True)
  if keep:
    keep_copy(path, step, keep)


def keep_copy(path, step, keep):
  """Keeps the checkpoint at `path`, saved at environment step `step`, as
  kept/checkpoint-STEP.npz if a step of `keep` is due (kept.due): a hard
  link, as the file at `path` is only ever replaced, never changed.
  Returns the copy's path or None."""
  path = pathlib.Path(path)
  folder = path.parent / kept.FOLDER
  copies = kept.copies(folder, 'checkpoint', '.npz')
  due = kept.due(keep, copies, step)
  if due:
    return kept.store(folder / f'checkpoint-{step}.npz', step,
                      lambda temp: os.link(path, temp), due, step in copies)


def load_checkpoint(path, model, agent, sampler):
  """Restores the newest checkpoint that loads and fits: PATH, PATH.prev,
  then an earlier version's `variables.pkl` (and its .prev) beside it, with
  a warning for each that does not; `fail`s if none does. Returns the path
  it restored from."""
  problems = []
  for candidate in candidates(path):
    if not candidate.exists():
      continue
    try:
      state = read_state(candidate)
      if isinstance(state, (list, tuple)):  # The original's.
        _resume_original(state, candidate, model, agent)
        return candidate
      model.set_state(state['model'])
      agent.set_state(state['agent'])
      sampler.set_state(state['sampler'])
    except Exception as error:  # Damaged files fail in many ways.
      problems.append(f'{candidate.name}: {error!r}'[:300])
      print(f'Warning: cannot resume from {candidate}: {problems[-1]}',
            flush=True)
      continue
    if candidate.name.endswith('.prev'):
      print(f'Warning: resumed from the previous checkpoint {candidate}.',
            flush=True)
    if LEGACY in candidate.name:
      print(f'Read {candidate}, a checkpoint of an earlier version of this '
            f'code; {path.name} is written from now on.', flush=True)
    return candidate
  fail(f'cannot resume from the checkpoints in {path.parent} '
       f'({"; ".join(problems)}): they belong to another config or an older '
       f'version of this code, or are damaged; use another --logdir or move '
       f'them away')


def _resume_original(values, path, model, agent):
  """Loads the original's checkpoint: its weights, a fresh optimizer (it
  saves none, and its own resume starts Adam afresh too), and the agent's
  schedule as the original's resume leaves it (pretrain done, training due
  at the first call)."""
  count, step = load_original(values, model)
  agent.set_state(agent.get_state())  # Marks the pretrain as done.
  print(f'Converted {path}, a checkpoint of the original (its step {step:,},'
        f' {count} weights, no optimizer state: Adam starts afresh, as in '
        f'the original\'s resume); {NAME} is written from now on and '
        f'{path.name} is left as it is.', flush=True)


def load_original(values, model):
  """Assigns the weights of the original's variables.pkl (a list of
  arrays) to `model` (models.Dreamer); returns (weights, the original's
  step). ValueError if they do not fit its config."""
  import networks
  ours = {}
  for name, module in model.modules.items():
    ours.update(networks.weights.module_weights(name, module))
  weights, step = from_original(
      values, {name: tuple(v.shape) for name, v in ours.items()})
  networks.load_weights(model.modules, weights)
  return len(weights), step


# The modules in the order of the original's variables.pkl (commit 56d4d44):
# its tools.Module.save pickles tf.Module's walk of the agent's attributes
# by name: _actor, _decode, _dynamics, _encode, _metrics, then reward and
# pcont through the model optimizer's module list, then _value; `step` first.
ORIGINAL_BEFORE = ('actor', 'decoder', 'rssm', 'encoder')
ORIGINAL_AFTER = ('reward', 'pcont', 'value')


def from_original(values, shapes):
  """({our weight name: array}, step) from the arrays (a tuple) the original's
  variables.pkl holds: `step`; the weights of ORIGINAL_BEFORE; `total` and
  `count` of each logged metric; the weights of ORIGINAL_AFTER. Within a
  module the layers come by name, a layer's weights in their order (kernel,
  recurrent_kernel, bias). `shapes` {name: shape} are our model's weights;
  a ValueError names the first that is missing or does not fit."""
  extra = sorted({name.split('/')[0] for name in shapes} - set(
      ORIGINAL_BEFORE + ORIGINAL_AFTER))
  if extra:
    raise ValueError(f'the original has no {", ".join(extra)} (--obs image)')

  def ordered(modules):
    names = []
    for module in modules:
      layers = {}
      for name in shapes:  # Our order within a layer is Keras's, as theirs.
        if name.split('/')[0] == module:
          layers.setdefault(name.split('/')[1], []).append(name)
      for layer in sorted(layers):
        names += layers[layer]
    return names

  before, after = ordered(ORIGINAL_BEFORE), ordered(ORIGINAL_AFTER)
  metrics = len(values) - 1 - len(before) - len(after)
  if metrics < 0 or metrics % 2:
    raise ValueError(
        f'the original\'s checkpoint holds {len(values)} arrays; this config '
        f'has {len(before) + len(after)} weights (pass the config flags of '
        f'the run that wrote it)')
  arrays = list(values[1:1 + len(before)]) + list(
      values[len(values) - len(after):])
  weights = {}
  for name, value in zip(before + after, arrays):
    value = np.asarray(value)
    if value.shape != shapes[name]:
      raise ValueError(
          f'{name} has shape {value.shape} in the original\'s checkpoint, '
          f'{shapes[name]} in this config (pass the config flags of the run '
          f'that wrote it)')
    weights[name] = value.astype(np.float32)
  return weights, int(np.asarray(values[0]))


def logged_mark(path):
  """What the logs held when the checkpoint a resume will load was saved
  (its "logged"): {} if there is no checkpoint, None if the newest one
  that reads has no mark (an earlier version's or the original's). Reads
  only the JSON inside the file."""
  found = False
  for candidate in candidates(path):
    if not candidate.exists():
      continue
    found = True
    try:
      with np.load(candidate, allow_pickle=False) as npz:
        return json.loads(str(npz[_JSON])).get('logged')
    except Exception:  # Damaged or a pickle: load_checkpoint tells.
      continue
  return None if found else {}


def candidates(path):
  """Where a checkpoint for `path` may be, newest first."""
  path = pathlib.Path(path)
  legacy = path.with_name(LEGACY)
  return [path, previous_path(path), legacy, previous_path(legacy)]


def read_state(path):
  """The state in a checkpoint file: ours (npz) or a pickle, which is read
  with `SafeUnpickler`."""
  data = pathlib.Path(path).read_bytes()
  if data[:2] == b'PK':
    return decode(data)
  return SafeUnpickler(io.BytesIO(data)).load()


# --- The format -------------------------------------------------------------

def encode(state):
  """npz bytes of a nested state: every numpy array one entry, named by its
  path; the rest (dicts, lists, numbers, strings) one JSON entry in which
  each array stands as {"__array__": name}."""
  arrays = {}

  def skeleton(value, name):
    if isinstance(value, np.ndarray):
      arrays[name] = value
      return {'__array__': name}
    if isinstance(value, np.generic):
      return value.item()
    if isinstance(value, dict):
      if not all(isinstance(key, str) for key in value):
        raise TypeError(f'checkpoint keys must be strings at {name}')
      return {key: skeleton(item, _join(name, key))
              for key, item in value.items()}
    if isinstance(value, (list, tuple)):
      return [skeleton(item, _join(name, index))
              for index, item in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
      return value
    raise TypeError(f'cannot store {type(value).__name__} at {name}')

  text = json.dumps(skeleton(state, ''))
  buffer = io.BytesIO()
  np.savez(buffer, **arrays, **{_JSON: np.array(text)})
  return buffer.getvalue()


def _join(name, key):
  return f'{name}/{key}' if name else str(key)


def decode(data):
  """The state `encode` wrote (lists where it had tuples)."""
  with np.load(io.BytesIO(data), allow_pickle=False) as npz:
    arrays = {key: npz[key] for key in npz.files}

  def build(value):
    if isinstance(value, dict):
      if set(value) == {'__array__'}:
        return arrays[value['__array__']]
      return {key: build(item) for key, item in value.items()}
    if isinstance(value, list):
      return [build(item) for item in value]
    return value

  return build(json.loads(str(arrays.pop(_JSON))))


class SafeUnpickler(pickle.Unpickler):
  """Reads pickles of numpy arrays and plain data (dicts, lists, tuples,
  numbers, strings) and refuses any other class or function, so a pickle
  cannot run code: the refusal comes when the pickle names it, before
  anything is built from it."""

  ALLOWED = {
      ('numpy', 'ndarray'), ('numpy', 'dtype'),
      ('numpy.core.multiarray', '_reconstruct'),
      ('numpy.core.multiarray', 'scalar'),
      ('numpy._core.multiarray', '_reconstruct'),
      ('numpy._core.multiarray', 'scalar'),
      ('numpy.core.numeric', '_frombuffer'),
      ('numpy._core.numeric', '_frombuffer'),
      ('collections', 'OrderedDict'),
      ('_codecs', 'encode'),  # How protocol 2 stores bytes.
  }

  def find_class(self, module, name):
    if (module, name) in self.ALLOWED or (
        module == 'numpy' and name.endswith('DType')):
      return super().find_class(module, name)
    raise pickle.UnpicklingError(
        f'refused: the file names {module}.{name}, which is not an array '
        f'or plain data (a pickle can run code; this one is not loaded)')
