"""Gymnasium environments: `--task gym_ID` and `--task MODULE:FUNCTION`.

  gym_ID           gymnasium.make(ID, render_mode='rgb_array'), asked for
                   64x64 frames where it takes width/height (MuJoCo)
  MODULE:FUNCTION  FUNCTION() of the importable MODULE returns a
                   gymnasium.Env (render_mode 'rgb_array' for --obs image)

`GymEnv` gives a Gymnasium environment the API of wrappers.py (make_env
puts ActionRepeat and NormalizeActions or OneHotAction and TimeLimit
around it). Mapping (docs/environments.md):

  observation Box           -> 'state' float32 (scalars as (1,))
  observation Dict of Boxes -> one float32 array per key
  render() frame            -> 'image' uint8 64x64x3 (resized if needed)
  action Box (1-D)          -> [-1, 1] through NormalizeActions
  action Discrete(n)        -> one-hot of n through OneHotAction
  terminated                -> done, discount 0
  truncated                 -> done, discount 1

`check` validates a task in a spawned process before anything is built and
raises a one-line ValueError. Like wrappers.py, this module runs in the
environment workers and never imports TensorFlow.
"""

import difflib
import importlib
import os
import warnings

import numpy as np

from spaces import (
    Space, image_space, resize_frame, state_array, state_space)

# Observation keys of our own, which a Dict observation's keys must avoid.
RESERVED = ('image', 'action', 'reward', 'discount', 'is_first')


def build(task, size=(64, 64)):
  """The Gymnasium environment of `task`; `size` (height, width) is asked
  of gymnasium.make where the environment takes width and height."""
  os.environ.setdefault('MUJOCO_GL', 'egl')
  if task.startswith('gym_'):
    return _make(task[len('gym_'):], size)
  return _call_factory(task)


def _make(env_id, size):
  import gymnasium
  if env_id not in gymnasium.registry:
    close = difflib.get_close_matches(env_id, list(gymnasium.registry), 3, 0.5)
    hint = f'closest: {", ".join("gym_" + k for k in close)}' if close else (
        'see gymnasium.registry')
    raise ValueError(f"unknown Gymnasium id '{env_id}' in --task gym_{env_id}; "
                     f'{hint}')
  kwargs = dict(render_mode='rgb_array')
  if size:
    try:
      return gymnasium.make(env_id, width=size[1], height=size[0], **kwargs)
    except TypeError:  # The environment takes no width and height.
      pass
  return gymnasium.make(env_id, **kwargs)


def _call_factory(task):
  import gymnasium
  module_name, _, function = task.partition(':')
  if not module_name or not function:
    raise ValueError(
        f"--task '{task}' must look like MODULE:FUNCTION, e.g. my_envs:make")
  try:
    module = importlib.import_module(module_name)
  except Exception as error:
    raise ValueError(
        f"cannot import module '{module_name}' of --task {task} "
        f'({type(error).__name__}: {_first_line(error)}); put its folder on '
        'PYTHONPATH, e.g. PYTHONPATH=. python dreamer.py ...') from None
  factory = getattr(module, function, None)
  if not callable(factory):
    raise ValueError(
        f"module '{module_name}' has no function '{function}' (--task {task})")
  try:
    env = factory()
  except Exception as error:
    raise ValueError(
        f'the factory {task} raised {type(error).__name__}: '
        f'{_first_line(error)}') from None
  if not isinstance(env, gymnasium.Env):
    raise ValueError(
        f'the factory {task} returned {type(env).__name__}, not a '
        'gymnasium.Env')
  return env


def _first_line(error):
  return (str(error).strip().splitlines() or [''])[0]


def state_spaces(space):
  """{key: gymnasium Box} of an observation space: a Box is 'state', a Dict
  of Boxes its keys (RESERVED ones prefixed 'obs_'); ValueError otherwise."""
  import gymnasium
  boxes = {'state': space} if isinstance(space, gymnasium.spaces.Box) else None
  if isinstance(space, gymnasium.spaces.Dict):
    boxes = {(f'obs_{k}' if k in RESERVED else k): v
             for k, v in space.spaces.items()}
  if boxes is None or not all(
      isinstance(v, gymnasium.spaces.Box) for v in boxes.values()):
    raise ValueError(
        f'observation space {space} cannot be served: use a Box or a Dict of '
        'Boxes')
  for key, box in boxes.items():
    if box.dtype == np.uint8 and len(box.shape) == 3:
      raise ValueError(
          f'observation {key} is an image {box.shape}: pass --obs image, '
          'which observes render() frames')
  return boxes


def action_space(space):
  """Space of a 1-D Box (float32) or of a Discrete (indices 0 to n − 1);
  ValueError for any other action space."""
  import gymnasium
  if isinstance(space, gymnasium.spaces.Discrete):
    return Space((), np.dtype(np.int64), 0, int(space.n) - 1)
  if isinstance(space, gymnasium.spaces.Box) and len(space.shape) == 1:
    low = np.asarray(space.low, np.float32)
    high = np.asarray(space.high, np.float32)
    return Space(tuple(space.shape), np.dtype(np.float32), low, high)
  raise ValueError(
      f'action space {space} cannot be served: use a 1-D Box or a Discrete')


class GymEnv:
  """A Gymnasium environment with the API of wrappers.py: its state
  arrays (if servable) and with `image` the rendered frame."""

  def __init__(self, task, size=(64, 64), seed=0, image=True):
    self._env = build(task, size if image else None)
    self._size = tuple(size)
    self._image = image
    try:
      self._boxes = state_spaces(self._env.observation_space)
    except ValueError:
      if not image:
        raise
      self._boxes = {}  # --obs image: the state is not needed.
    self._act_space = action_space(self._env.action_space)
    self._start = int(getattr(self._env.action_space, 'start', 0))
    self._seed = seed

  @property
  def obs_space(self):
    spaces = {}
    for key, box in self._boxes.items():
      spaces[key] = state_space(box.shape)
    if self._image:
      spaces['image'] = image_space(self._size)
    return spaces

  @property
  def act_space(self):
    return self._act_space

  def reset(self):
    """The first reset is seeded (reset(seed=seed)), later ones go on."""
    seed, self._seed = self._seed, None
    obs, _ = self._env.reset(seed=seed)
    return self._observe(obs, render=True)

  def step(self, action, render=True):
    """(obs, reward, done, info): done = terminated or truncated, discount
    0 if terminated, else 1."""
    if self._act_space.shape == ():
      action = int(action) + self._start
    obs, reward, terminated, truncated, _ = self._env.step(action)
    info = {'discount': np.float32(0.0 if terminated else 1.0)}
    done = bool(terminated or truncated)
    return self._observe(obs, render), float(reward), done, info

  def render_obs(self):
    if not self._image:
      return {}
    return {'image': frame(self._env.render(), self._size)}

  def close(self):
    self._env.close()

  def _observe(self, obs, render):
    if not isinstance(obs, dict):
      obs = {'state': obs}
    result = {}
    for key, value in obs.items():
      key = f'obs_{key}' if key in RESERVED else key
      if key in self._boxes:
        result[key] = state_array(value)
    if render:
      result.update(self.render_obs())
    return result


def frame(image, size):
  """A render() result as uint8 (height, width, 3), resized bilinearly (as
  the Atari path does) if it has another size; ValueError if not a frame."""
  if image is None:
    raise ValueError(
        "render() returned None: make the environment with "
        "render_mode='rgb_array', or pass --obs proprio")
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[-1] not in (3, 4):
    raise ValueError(
        f'render() returned an array of shape {image.shape}, not an RGB frame')
  image = image[..., :3]
  if image.dtype != np.uint8:
    image = np.clip(image, 0, 255).astype(np.uint8)
  if image.shape[:2] != tuple(size):
    image = resize_frame(image, size)
  return image


def check(task, obs='image', action_dist='tanh_normal', expl=None):
  """Builds `task` once, checks its spaces against the flags and, for
  images, renders a frame after reset; ValueError of one line if anything
  does not fit or raises. Run it in a spawned process (tasks.check)."""
  try:
    with warnings.catch_warnings():  # Gymnasium's, which would add lines.
      warnings.simplefilter('ignore')
      _check(task, obs, action_dist, expl)
  except ValueError:
    raise
  except Exception as error:
    raise ValueError(
        f'{task}: {type(error).__name__}: {_first_line(error)}') from None


def _check(task, obs, action_dist, expl):
  image = obs != 'proprio'
  env = build(task, (64, 64) if image else None)
  try:
    if obs != 'image':
      state_spaces(env.observation_space)
    _check_actions(task, action_space(env.action_space), action_dist, expl)
    if image:
      env.reset(seed=0)
      try:
        rendered = env.render()
      except Exception as error:
        raise ValueError(
            f'render() of {task} raised {type(error).__name__}: '
            f'{_first_line(error)}; environments that cannot render (such as'
            ' classic control without pygame) are served from state only: '
            'pass --obs proprio') from None
      frame(rendered, (64, 64))
  finally:
    env.close()


def _check_actions(task, space, action_dist, expl):
  if space.shape == ():
    if action_dist != 'onehot' or expl not in (None, 'epsilon_greedy'):
      raise ValueError(
          f'{task} has Discrete({space.high + 1}) actions: pass --action_dist '
          'onehot --expl epsilon_greedy')
  elif action_dist != 'tanh_normal':
    raise ValueError(
        f'{task} has continuous (Box) actions: pass --action_dist tanh_normal')
