"""Environments, their wrappers and the worker processes that run them.

On these machines dm_control and TensorFlow cannot share a process, so the
environment always runs in a worker started with the `spawn` method, and the
main process talks to it through an `Async` proxy. The stack is:

  worker process (built by `make_env`, never imports TensorFlow):
    DeepMindControl -> ActionRepeat -> NormalizeActions -> TimeLimit
  main process (numpy only, episode callbacks run here):
    Async -> Collect -> RewardObs

`make_async_env` builds the whole stack; `step_all` and `reset_all` step a
list of such environments under the `--parallel` strategy. All strategies
use worker processes; with 'thread' the main-side wrappers, and so the
episode callbacks, run in pool threads (TensorFlow's default summary writer
is per thread, so callbacks should enter `writer.as_default()` themselves).

Environment API: `reset()` returns the observation dict, `step(action)`
returns `(obs, reward, done, info)` with `info['discount']` a float32 scalar,
`obs_space` maps observation keys to `Space`, `act_space` is a `Space`.
Worker-side environments take `step(action, render=False)` to skip rendering
and give the rendered keys of the current state through `render_obs()`.
Main-side wrappers and `Async` take `blocking=False` on `reset` and `step`
and then return a promise: a callable that waits for and returns the result.

This module must never import TensorFlow, and imports dm_control only inside
`DeepMindControl`, i.e. in the worker.
"""

import collections
import concurrent.futures
import contextlib
import functools
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import traceback
import types
import weakref

import numpy as np

STRATEGIES = ('none', 'thread', 'process')


class Space(collections.namedtuple(
    'Space', 'shape dtype low high discrete', defaults=(False,))):
  """Shape, dtype and bounds of an observation or action (gym's Box); a
  `discrete` action is a one-hot vector over shape[-1] choices."""

  __slots__ = ()

  def sample(self, rng):
    """A uniform sample (a uniform one-hot if discrete), from a numpy
    Generator."""
    if self.discrete:
      return np.eye(self.shape[-1], dtype=self.dtype)[
          rng.integers(self.shape[-1])]
    return rng.uniform(self.low, self.high, self.shape).astype(self.dtype)


SUITES = ('dmc', 'atari')


def check_task(task, known=False):
  """Returns (suite, name) of 'SUITE_NAME' without importing dm_control.

  With `known`, also checks that dm_control or the Arcade Learning
  Environment has the task, asking a spawned process (a second or two),
  and lists the valid ones if not.
  """
  suite, _, name = task.partition('_')
  if suite not in SUITES or not name:
    raise ValueError(
        f"task '{task}': unknown suite '{suite}'; use dmc_DOMAIN_TASK, e.g. "
        f"dmc_walker_walk, or atari_GAME, e.g. atari_pong")
  if suite == 'dmc':
    domain, _, rest = name.partition('_')
    if not domain or not rest:
      raise ValueError(
          f"task '{task}' must look like dmc_DOMAIN_TASK, e.g. dmc_walker_walk")
  if known:
    lookup = _dmc_domain_task if suite == 'dmc' else _atari_rom
    context = multiprocessing.get_context('spawn')
    with _main_module_hidden(), context.Pool(1) as pool:
      pool.apply(lookup, (name,))
  return suite, name


def make_env(task, action_repeat, time_limit, size=(64, 64), seed=0,
             image=True, life_done=False):
  """Worker-side environment; pass it to Async via functools.partial.

  `image` False leaves DeepMind Control frames unrendered; `life_done`
  ends Atari episodes at every lost life.
  """
  suite, name = check_task(task)
  if suite == 'atari':
    env = Atari(name, action_repeat, size, life_done=life_done, seed=seed)
    env = OneHotAction(env)
  else:
    env = DeepMindControl(name, size, seed=seed, image=image)
    env = ActionRepeat(env, action_repeat)
    env = NormalizeActions(env)
  return TimeLimit(env, time_limit / action_repeat)


def make_async_env(
    task, action_repeat, time_limit, callbacks=(), strategy='none',
    size=(64, 64), seed=0, timeout=None, image=True, life_done=False):
  """Worker running `make_env`, wrapped by Collect and RewardObs here."""
  check_task(task)
  ctor = functools.partial(
      make_env, task, action_repeat, time_limit, size=size, seed=seed,
      image=image, life_done=life_done)
  return RewardObs(Collect(Async(ctor, strategy, timeout), callbacks))


class DeepMindControl:
  """A dm_control suite task: its state arrays, and with `image` a
  rendered `image` of camera 0 (2 for quadruped)."""

  def __init__(self, name, size=(64, 64), camera=None, seed=0, image=True):
    os.environ.setdefault('MUJOCO_GL', 'egl')
    from dm_control import suite
    domain, task = _dmc_domain_task(name, suite.ALL_TASKS)
    self._env = suite.load(domain, task, task_kwargs={'random': seed})
    self._size = tuple(size)
    self._image = image
    if camera is None:
      camera = 2 if domain == 'quadruped' else 0
    self._camera = camera

  @property
  def obs_space(self):
    spaces = {}
    for key, spec in self._env.observation_spec().items():
      shape = tuple(spec.shape) or (1,)
      spaces[key] = Space(
          shape, np.dtype(np.float32), np.full(shape, -np.inf, np.float32),
          np.full(shape, np.inf, np.float32))
    if self._image:
      spaces['image'] = _image_space(self._size)
    return spaces

  @property
  def act_space(self):
    spec = self._env.action_spec()
    low = np.broadcast_to(spec.minimum, spec.shape).astype(np.float32)
    high = np.broadcast_to(spec.maximum, spec.shape).astype(np.float32)
    return Space(tuple(spec.shape), np.dtype(np.float32), low, high)

  def reset(self):
    return self._observe(self._env.reset(), render=True)

  def step(self, action, render=True):
    time_step = self._env.step(action)
    obs = self._observe(time_step, render)
    reward = float(time_step.reward or 0)
    info = {'discount': np.float32(time_step.discount)}
    return obs, reward, time_step.last(), info

  def render_obs(self):
    if not self._image:
      return {}
    image = self._env.physics.render(*self._size, camera_id=self._camera)
    return {'image': image}

  def close(self):
    self._env.close()

  def _observe(self, time_step, render):
    obs = {}
    for key, value in time_step.observation.items():
      value = np.asarray(value, np.float32)
      obs[key] = value.reshape((1,)) if value.ndim == 0 else value
    if render:
      obs.update(self.render_obs())
    return obs


def _image_space(size):
  shape = tuple(size) + (3,)
  return Space(shape, np.dtype(np.uint8), np.zeros(shape, np.uint8),
               np.full(shape, 255, np.uint8))


def _dmc_domain_task(name, all_tasks=None):
  """Resolves 'walker_walk', 'cup_catch' or 'point_mass_easy'."""
  if all_tasks is None:
    os.environ.setdefault('MUJOCO_GL', 'egl')
    from dm_control import suite
    all_tasks = suite.ALL_TASKS
  known = {f'{domain}_{task}': (domain, task) for domain, task in all_tasks}
  if name.startswith('cup_'):
    name = 'ball_in_' + name
  if name not in known:
    allowed = ', '.join(f'dmc_{key}' for key in known)
    raise ValueError(
        f"unknown DeepMind Control task 'dmc_{name}'; allowed: {allowed}")
  return known[name]


class Wrapper:
  """Forwards everything it does not override to the wrapped environment."""

  nonblocking = False

  def __init__(self, env):
    self._env = env

  def __getattr__(self, name):
    if name.startswith('_'):
      raise AttributeError(name)
    return getattr(self._env, name)


class ActionRepeat(Wrapper):

  def __init__(self, env, amount):
    super().__init__(env)
    self._amount = amount

  def step(self, action, render=True):
    total = 0.0
    for _ in range(self._amount):
      obs, reward, done, info = self._env.step(action, render=False)
      total += reward
      if done:
        break
    if render:
      obs = dict(obs, **self._env.render_obs())
    return obs, total, done, info


class NormalizeActions(Wrapper):

  def __init__(self, env):
    super().__init__(env)
    space = env.act_space
    self._mask = np.isfinite(space.low) & np.isfinite(space.high)
    self._low = np.where(self._mask, space.low, -1)
    self._high = np.where(self._mask, space.high, 1)

  @property
  def act_space(self):
    space = self._env.act_space
    low = np.where(self._mask, -1, space.low).astype(space.dtype)
    high = np.where(self._mask, 1, space.high).astype(space.dtype)
    return Space(space.shape, space.dtype, low, high)

  def step(self, action, render=True):
    scaled = (action + 1) / 2 * (self._high - self._low) + self._low
    scaled = np.where(self._mask, scaled, action)
    return self._env.step(scaled, render=render)


class TimeLimit(Wrapper):

  def __init__(self, env, duration):
    super().__init__(env)
    self._duration = duration
    self._step = None

  def reset(self):
    self._step = 0
    return self._env.reset()

  def step(self, action, render=True):
    if self._step is None:
      raise RuntimeError('reset the environment before stepping it')
    obs, reward, done, info = self._env.step(action, render=render)
    self._step += 1
    if self._step >= self._duration and not done:
      done = True
      info = dict(info, discount=np.float32(1.0))
    if done:
      self._step = None
    return obs, reward, done, info


class Atari:
  """An Atari game of the Arcade Learning Environment, as the original
  wraps it: sticky actions (repeat probability 0.25), 1 to `noops` no-ops
  at reset, each action repeated `action_repeat` frames with the maximum
  over the last two, frames resized to `size` RGB (bilinear), and with
  `life_done` an episode end at every lost life. Actions are indices into
  the game's minimal action set."""

  def __init__(self, game, action_repeat=4, size=(64, 64), noops=30,
               life_done=False, sticky=True, seed=0):
    import ale_py
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    self._ale = ale_py.ALEInterface()
    self._ale.setInt('random_seed', seed)
    self._ale.setFloat('repeat_action_probability', 0.25 if sticky else 0.0)
    self._ale.loadROM(_atari_rom(game))
    self._actions = self._ale.getMinimalActionSet()
    self._repeat = action_repeat
    self._size = tuple(size)
    self._noops = noops
    self._life_done = life_done
    self._lives = None
    self._rng = np.random.default_rng(seed)
    height, width = self._ale.getScreenDims()
    self._buffers = [np.zeros((height, width, 3), np.uint8) for _ in range(2)]

  @property
  def obs_space(self):
    return {'image': _image_space(self._size)}

  @property
  def act_space(self):
    return Space((), np.dtype(np.int64), 0, len(self._actions) - 1)

  def reset(self):
    self._ale.reset_game()
    for _ in range(self._rng.integers(1, self._noops + 1)):
      self._ale.act(self._actions[0])
      if self._ale.game_over():
        self._ale.reset_game()
    self._lives = self._ale.lives()
    self._ale.getScreenRGB(self._buffers[0])
    self._buffers[1].fill(0)
    return self._obs()

  def step(self, action, render=True):
    total, done = 0.0, False
    for index in range(self._repeat):
      total += self._ale.act(self._actions[int(action)])
      done = self._ale.game_over()
      if self._life_done:
        lives = self._ale.lives()
        done = done or lives < self._lives
        self._lives = lives
      if done:
        break
      if index >= self._repeat - 2:  # The last two frames.
        self._ale.getScreenRGB(
            self._buffers[max(0, index - (self._repeat - 2))])
    info = {'discount': np.float32(0.0 if done else 1.0)}
    return self._obs(), total, done, info

  def render_obs(self):
    return {}

  def close(self):
    pass

  def _obs(self):
    from PIL import Image
    if self._repeat > 1:
      np.maximum(self._buffers[0], self._buffers[1], out=self._buffers[0])
    image = Image.fromarray(self._buffers[0]).resize(
        self._size[::-1], Image.BILINEAR)
    return {'image': np.asarray(image, np.uint8)}


class OneHotAction(Wrapper):
  """Takes one-hot actions for an environment of discrete actions."""

  @property
  def act_space(self):
    count = int(self._env.act_space.high) + 1
    return Space((count,), np.dtype(np.float32), np.zeros(count, np.float32),
                 np.ones(count, np.float32), discrete=True)

  def step(self, action, render=True):
    action = np.asarray(action)
    index = int(np.argmax(action))
    if not np.allclose(action, np.eye(len(action))[index]):
      raise ValueError(f'not a one-hot action: {action}')
    return self._env.step(index, render=render)


def _atari_rom(game):
  """The ROM path of an Atari game such as 'pong' or 'space_invaders'.

  ale-py ships a few ROMs its emulator does not support (combat, joust,
  maze_craze, warlords in 0.12): they are not offered.
  """
  import ale_py
  from ale_py import roms
  games = [name for name in roms.get_all_rom_ids()
           if ale_py.ALEInterface.isSupportedROM(roms.get_rom_path(name))]
  if game not in games:
    raise ValueError(
        f"unknown Atari game 'atari_{game}'; allowed: "
        + ', '.join(f'atari_{name}' for name in games))
  return roms.get_rom_path(game)


class _MainWrapper(Wrapper):
  """Wrapper that can sit on an Async proxy: passes `blocking` through."""

  nonblocking = True

  def reset(self, blocking=True):
    promise = _start(self._env, 'reset')
    return _finish(lambda: self._after_reset(promise()), blocking)

  def step(self, action, blocking=True):
    promise = _start(self._env, 'step', action)
    return _finish(lambda: self._after_step(action, *promise()), blocking)

  def _after_reset(self, obs):
    return obs

  def _after_step(self, action, obs, reward, done, info):
    return obs, reward, done, info


class Collect(_MainWrapper):
  """Records episodes; on done passes them to the callbacks here."""

  def __init__(self, env, callbacks=()):
    super().__init__(env)
    self._callbacks = list(callbacks)
    self._episode = None

  def _after_reset(self, obs):
    action = np.zeros(self._env.act_space.shape, np.float32)
    self._episode = [dict(obs, action=action, reward=0.0, discount=1.0)]
    return obs

  def _after_step(self, action, obs, reward, done, info):
    if self._episode is None:
      raise RuntimeError('reset the environment before stepping it')
    discount = info.get('discount', np.float32(1 - float(done)))
    action = np.array(action, np.float32)
    self._episode.append(
        dict(obs, action=action, reward=reward, discount=discount))
    if done:
      episode = {
          key: _episode_array([step[key] for step in self._episode])
          for key in self._episode[0]}
      self._episode = None
      info = dict(info, episode=episode)
      for callback in self._callbacks:
        callback(episode)
    return obs, reward, done, info


def _episode_array(values):
  array = np.array(values)
  if np.issubdtype(array.dtype, np.floating):
    return array.astype(np.float32)
  if np.issubdtype(array.dtype, np.signedinteger):
    return array.astype(np.int32)
  return array


class RewardObs(_MainWrapper):

  @property
  def obs_space(self):
    space = Space((), np.dtype(np.float32), np.float32(-np.inf),
                  np.float32(np.inf))
    return dict(self._env.obs_space, reward=space)

  def _after_reset(self, obs):
    return dict(obs, reward=np.float32(0.0))

  def _after_step(self, action, obs, reward, done, info):
    return dict(obs, reward=np.float32(reward)), reward, done, info


def _start(env, method, *args):
  """Starts env.method(*args); returns a promise of its result."""
  if getattr(env, 'nonblocking', False):
    return getattr(env, method)(*args, blocking=False)
  result = getattr(env, method)(*args)
  return lambda: result


def _finish(compute, blocking):
  if blocking:
    return compute()
  return _once(compute)


def _once(compute):
  cache = []

  def promise():
    if not cache:
      cache.append(compute())
    return cache[0]
  return promise


def step_all(envs, actions, strategy):
  """Steps each env with its action; returns the list of step results."""
  calls = [functools.partial(_start, env, 'step', action)
           for env, action in zip(envs, actions)]
  return _run_all(calls, strategy)


def reset_all(envs, strategy):
  """Resets each env; returns the list of observations."""
  return _run_all([functools.partial(_start, env, 'reset') for env in envs],
                  strategy)


def _run_all(starts, strategy):
  _check_strategy(strategy)
  if strategy == 'none':
    return [start()() for start in starts]
  if strategy == 'process':
    return [promise() for promise in [start() for start in starts]]
  if not starts:
    return []
  with concurrent.futures.ThreadPoolExecutor(len(starts)) as pool:
    return list(pool.map(lambda start: start()(), starts))


def _check_strategy(strategy):
  if strategy not in STRATEGIES:
    raise ValueError(
        f"unknown parallel strategy '{strategy}'; allowed: "
        + ', '.join(STRATEGIES))


class WorkerError(RuntimeError):
  """An environment worker failed, died or stopped answering."""


class Async:
  """Proxy of an environment that runs in a spawned worker process.

  `ctor` builds the environment in the worker; it must be picklable and
  importable there (a module-level function or a functools.partial of one,
  not something defined in the main script: the worker does not run it).
  A worker that raises, dies or takes longer than `timeout` seconds to
  answer (it is then killed) raises WorkerError here, with its traceback.
  """

  nonblocking = True

  def __init__(self, ctor, strategy='process', timeout=None):
    _check_strategy(strategy)
    self.strategy = strategy
    context = multiprocessing.get_context('spawn')
    self._conn, child_conn = context.Pipe()
    self._process = context.Process(
        target=_worker, args=(ctor, child_conn), daemon=True)
    try:
      with _main_module_hidden():
        self._process.start()
    except (pickle.PicklingError, AttributeError, TypeError) as error:
      self._conn.close()
      raise TypeError(
          f'the environment constructor {ctor!r} must be picklable: a '
          'module-level function or a functools.partial of one') from error
    finally:
      child_conn.close()
    self._timeout = timeout
    self._lock = threading.Lock()
    self._next_id = 0
    self._results = {}
    self._error = None
    self._spaces = {}
    self._finalizer = weakref.finalize(
        self, _stop_worker, self._conn, self._process)

  @property
  def pid(self):
    return self._process.pid

  @property
  def obs_space(self):
    return self._space('obs_space')

  @property
  def act_space(self):
    return self._space('act_space')

  def access(self, name, blocking=True):
    return self._request('access', name, (), {}, blocking)

  def call(self, name, *args, blocking=True, **kwargs):
    return self._request('call', name, args, kwargs, blocking)

  def reset(self, blocking=True):
    return self.call('reset', blocking=blocking)

  def step(self, action, blocking=True):
    return self.call('step', action, blocking=blocking)

  def close(self):
    self._finalizer()

  def _space(self, name):
    if name not in self._spaces:
      self._spaces[name] = self.access(name)
    return self._spaces[name]

  def _request(self, kind, name, args, kwargs, blocking):
    with self._lock:
      self._check_usable()
      request_id = self._next_id
      self._next_id += 1
      try:
        self._conn.send((request_id, kind, name, args, kwargs))
      except (BrokenPipeError, ConnectionResetError, OSError):
        self._died()
    promise = _once(functools.partial(self._receive, request_id))
    return promise() if blocking else promise

  def _receive(self, request_id):
    with self._lock:
      while request_id not in self._results:
        self._check_usable()
        request, value = self._read()
        self._results[request] = value
      return self._results.pop(request_id)

  def _read(self):
    waited, last = 0.0, time.monotonic()
    try:
      while not self._conn.poll(0.5):
        if not self._process.is_alive():
          self._died()
        now = time.monotonic()
        # A longer gap means this process was suspended (Ctrl-Z), not that
        # the worker is slow.
        waited += min(now - last, 5.0)
        last = now
        if self._timeout and waited > self._timeout:
          self._process.kill()
          self._fail(
              f'environment worker {self.pid} did not answer within '
              f'{self._timeout:g} s and was killed')
      message = self._conn.recv()
    except (EOFError, ConnectionResetError):
      self._died()
    if message[0] == 'error':
      lines = message[1].strip().splitlines()
      self._fail(
          f'environment worker failed: {lines[-1]}\n'
          f'worker traceback:\n{message[1]}')
    return message[1:]

  def _check_usable(self):
    if self._error:
      raise WorkerError(self._error)
    if not self._finalizer.alive:
      raise WorkerError('environment worker was closed')

  def _died(self):
    self._process.join(1)
    self._fail(
        f'environment worker {self.pid} died with exit code '
        f'{self._process.exitcode}')

  def _fail(self, message):
    self._error = message
    raise WorkerError(message)


@contextlib.contextmanager
def _main_module_hidden():
  """Keeps spawn from re-running the main script (and its TensorFlow import)
  in the worker."""
  main = sys.modules.get('__main__')
  sys.modules['__main__'] = types.ModuleType('__main__')
  try:
    yield
  finally:
    sys.modules['__main__'] = main


def _stop_worker(conn, process):
  try:
    conn.send((None, 'close', None, (), {}))
  except (OSError, ValueError):
    pass
  process.join(5)
  if process.is_alive():
    process.terminate()
    process.join(1)
  if process.is_alive():
    process.kill()
    process.join(1)
  conn.close()


def _worker(ctor, conn):
  # Ctrl-C reaches the whole process group; the parent does the closing.
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  parent = os.getppid()
  env = None
  try:
    env = ctor()
    while True:
      if not conn.poll(1.0):
        if os.getppid() != parent:
          break
        continue
      request_id, kind, name, args, kwargs = conn.recv()
      if kind == 'close':
        break
      value = getattr(env, name)
      if kind == 'call':
        value = value(*args, **kwargs)
      conn.send(('result', request_id, value))
  except (EOFError, BrokenPipeError, ConnectionResetError):
    pass
  except Exception:
    with contextlib.suppress(OSError):
      conn.send(('error', traceback.format_exc()))
  finally:
    if env is not None and hasattr(env, 'close'):
      with contextlib.suppress(Exception):
        env.close()
    conn.close()
