"""Environments: DeepMind Control and Atari, and the wrappers the original
puts around them. Everything here runs inside an environment worker
(workers.py), built there by `make_env`:

  DeepMind Control: DeepMindControl -> ActionRepeat -> NormalizeActions
                    -> TimeLimit
  Atari:            Atari -> OneHotAction -> TimeLimit
  Gymnasium:        gym_env.GymEnv -> ActionRepeat -> NormalizeActions (Box)
                    or OneHotAction (Discrete) -> TimeLimit

Environment API: `reset()` returns the observation dict, `step(action,
render=True)` returns `(obs, reward, done, info)` with `info['discount']` a
float32 scalar; `render=False` skips rendering, and `render_obs()` gives the
rendered keys of the current state. `obs_space` maps observation keys to
`Space`, `act_space` is a `Space`. The main process records the episodes
(driver.py).

This module never imports TensorFlow; it imports dm_control and ale_py only
inside the environments, i.e. in the worker.
"""

import logging
import os

import numpy as np

import gym_env
import tasks
from spaces import (
    Space, image_space, resize_frame, state_array, state_space)


def make_env(task, action_repeat, time_limit, size=(64, 64), seed=0,
             image=True, life_done=False):
  """The environment of `task`, to build in a worker: pass it to
  workers.Async through functools.partial.

  `image` False leaves DeepMind Control frames unrendered; `life_done`
  ends Atari episodes at every lost life.
  """
  suite, name = tasks.parse(task)
  if suite == 'gym':
    env = ActionRepeat(gym_env.GymEnv(name, size, seed, image), action_repeat)
    discrete = env.act_space.shape == ()
    env = OneHotAction(env) if discrete else NormalizeActions(env)
  elif suite == 'atari':
    env = Atari(name, action_repeat, size, life_done=life_done, seed=seed)
    env = OneHotAction(env)
  else:
    env = DeepMindControl(name, size, seed=seed, image=image)
    env = ActionRepeat(env, action_repeat)
    env = NormalizeActions(env)
  return TimeLimit(env, time_limit / action_repeat)


def _drop_settotalmass(record):
  """False for MuJoCo's deprecation warning of the cheetah model's
  `settotalmass`, which dm_control logs at every load; True for the rest."""
  return "'settotalmass' is deprecated" not in record.getMessage()


def _quiet_settotalmass():
  logger = logging.getLogger('absl')
  if _drop_settotalmass not in logger.filters:
    logger.addFilter(_drop_settotalmass)


class DeepMindControl:
  """A dm_control suite task: its state arrays, and with `image` a
  rendered `image` of camera 0 (2 for quadruped)."""

  def __init__(self, name, size=(64, 64), camera=None, seed=0, image=True):
    os.environ.setdefault('MUJOCO_GL', 'egl')
    from dm_control import suite
    _quiet_settotalmass()
    domain, task = dmc_domain_task(name, suite.ALL_TASKS)
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
      spaces[key] = state_space(spec.shape)
    if self._image:
      spaces['image'] = image_space(self._size)
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
      obs[key] = state_array(value)
    if render:
      obs.update(self.render_obs())
    return obs


def dmc_domain_task(name, all_tasks=None):
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
    self._ale.loadROM(atari_rom(game))
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
    return {'image': image_space(self._size)}

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
    if self._repeat > 1:
      np.maximum(self._buffers[0], self._buffers[1], out=self._buffers[0])
    return {'image': resize_frame(self._buffers[0], self._size)}


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


def atari_rom(game):
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
