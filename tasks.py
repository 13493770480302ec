"""What a `--task` value is, and whether it exists: the one registry of
tasks, used by dreamer.py, evaluate.py and sweep.py.

  dmc_DOMAIN_TASK   DeepMind Control, e.g. dmc_walker_walk
  atari_GAME        the Arcade Learning Environment (ale-py), e.g. atari_pong
  gym_ID            a Gymnasium id, e.g. gym_Pendulum-v1
  MODULE:FUNCTION   FUNCTION() of an importable MODULE returns a
                    gymnasium.Env (its folder on PYTHONPATH)

`parse` reads the syntax and imports nothing. `check` also asks whether
each task exists, in one spawned process, as dm_control cannot share a
process with TensorFlow here: dm_control's task list, ale-py's ROMs, and a
Gymnasium task built once and checked against the flags (gym_env.check).
"""

import multiprocessing

from workers import main_module_hidden

SUITES = ('dmc', 'atari', 'gym')
FORMS = ('dmc_DOMAIN_TASK, e.g. dmc_walker_walk, atari_GAME, e.g. atari_pong,'
         ' gym_ID, e.g. gym_HalfCheetah-v5, or MODULE:FUNCTION (a Gymnasium '
         'factory)')


def parse(task):
  """(suite, name) of a task: ('dmc', 'walker_walk'), ('atari', 'pong'),
  ('gym', the whole task) for gym_ID and MODULE:FUNCTION. A one-line
  ValueError if it has none of these forms."""
  if task.startswith('gym_') or ':' in task:
    return 'gym', task
  suite, _, name = task.partition('_')
  if suite not in SUITES or not name:
    raise ValueError(f"task '{task}': unknown suite '{suite}'; use {FORMS}")
  if suite == 'dmc':
    domain, _, rest = name.partition('_')
    if not domain or not rest:
      raise ValueError(
          f"task '{task}' must look like dmc_DOMAIN_TASK, e.g. dmc_walker_walk")
  return suite, name


def check(tasks, configs=None):
  """[(suite, name)] of `tasks` once each is known to exist; a one-line
  ValueError names the first that does not (with the allowed values or
  the closest). `configs` {task: config}: the flags (obs, action_dist,
  expl) a Gymnasium task must fit. All are asked in one spawned process."""
  parsed = [parse(task) for task in tasks]
  flags = [_gym_flags((configs or {}).get(task)) for task in tasks]
  context = multiprocessing.get_context('spawn')
  with main_module_hidden(), context.Pool(1) as pool:
    pool.apply(_exist, (list(tasks), flags))
  return parsed


def _gym_flags(config):
  if config is None:
    return {}
  return {key: getattr(config, key) for key in ('obs', 'action_dist', 'expl')}


def _exist(tasks, flags):
  """In the spawned process: raises the first task's ValueError."""
  import gym_env
  import wrappers
  for task, gym_flags in zip(tasks, flags):
    suite, name = parse(task)
    if suite == 'gym':
      gym_env.check(task, **gym_flags)
    elif suite == 'dmc':
      wrappers.dmc_domain_task(name)
    else:
      wrappers.atari_rom(name)
