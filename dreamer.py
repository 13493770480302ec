"""Dreamer (Hafner et al., ICLR 2020): Algorithm 1, the agent and its loop.

    python dreamer.py --logdir runs/cheetah --task dmc_cheetah_run

`run` is Algorithm 1: `prefill` the dataset with random episodes, `build`
the model and agent (or resume them from the checkpoint), then until
`--steps`, `train_and_evaluate`: one test episode, then `--eval_every`
environment steps of collection, during which the agent trains every
`--train_every` steps, then a checkpoint. Where the rest is: flags
(config.py), devices and precision (devices.py), networks (networks/),
losses and the update (models.py), episodes and batches (replay.py),
environments (wrappers.py) in worker processes (workers.py) stepped by
driver.py, metrics and the progress line (logger.py), checkpoints
(checkpoint.py).

TensorFlow is imported only by `build` (models.py), after oneDNN is chosen;
none of the modules imported here at the top imports it, so environment
workers never load it.
"""

import contextlib
import errno
import functools
import gc
import json
import shlex
import signal
import sys
import threading
import time

import numpy as np

import checkpoint
import devices
import kept
import replay
import runlock
import tasks
import tools
import workers
import wrappers
from config import (
    CHOICES, check_logdir, config_dict, describe_config, fail, parse_args,
    saved_config)
from driver import Driver
from logger import Logger, Progress, rewind

ENV_TIMEOUT = 300  # Seconds an environment worker may take to answer.
NONFINITE_LIMIT = 100  # Skipped updates in a row that stop the run.


# --- Algorithm 1 ------------------------------------------------------------

def run(config, command='python dreamer.py', strategy=None):
  """Algorithm 1 until `config.steps`; returns the exit code.

  SIGINT and SIGTERM stop it at the next update or environment step, with
  the checkpoint saved (0); a failed environment worker saves and returns
  1; persistently non-finite gradients return 1 keeping the checkpoint; a
  write that fails (tools.WriteError) stops it unsaved and is raised. The
  logs are first taken back to the checkpoint it resumes from (rewind).
  """
  removed = tools.remove_temporary_files(config.logdir)
  if removed:
    print(f'Removed {len(removed)} unfinished files of a killed run: '
          f'{", ".join(path.name for path in removed)}', flush=True)
  mark = checkpoint.logged_mark(config.logdir / checkpoint.NAME)
  if mark is not None and rewind(config.logdir, mark):
    since = (f'the checkpoint (step {mark["step"]:,})' if mark else
             'the start (no checkpoint was saved)')
    print(f'Moved the lines of metrics.jsonl written after {since}, a '
          f'stretch the last stop lost, to metrics.lost.jsonl.', flush=True)
  datadir = config.logdir / 'episodes'
  episodes, agent_steps = replay.count_episodes(datadir)
  step = tools.Counter(agent_steps * config.action_repeat)
  if not step.value and not config.prefill:
    fail(f'no episodes in {datadir} and --prefill 0: nothing to train on')
  logger = Logger(config.logdir)
  progress = Progress(
      config.steps, step.value, config.train_steps / config.train_every)
  train_envs, test_envs = make_envs(config, 'train'), make_envs(config, 'test')
  train = Driver(train_envs, config.parallel)
  test = Driver(test_envs, config.parallel)
  train.on_step(lambda transition, index: step.increment(config.action_repeat))
  summaries = EpisodeSummaries(config, datadir, logger, progress, step, episodes)
  train.on_episode(functools.partial(summaries, 'train'))
  test.on_episode(functools.partial(summaries, 'test'))
  for driver in (train, test):
    driver.on_step(lambda transition, index: progress.tick(step.value))
  # One generator: the prefill's random actions, then exploration noise.
  rng = np.random.default_rng(config.seed)
  agent = None
  try:
    with stop_signals():
      prefill(config, train, train_envs[0].act_space, step, rng)
      agent = build(
          config, strategy, train_envs[0], logger, step, progress, rng)
      train_and_evaluate(config, agent, train, test, step, progress)
    return 0
  except (StopRequested, KeyboardInterrupt):
    saved = 'episodes are saved'
    if agent is not None:
      agent.save()
      saved = 'episodes and the checkpoint are saved'
    print(f'Stopped: {saved}. Resume with:\n  {command}', flush=True)
    return 0
  except workers.WorkerError as error:
    if agent is not None:
      agent.save()
    print(f'error: {error}\nThe checkpoint is saved; once the environment '
          f'works, resume with:\n  {command}', file=sys.stderr, flush=True)
    return 1
  except NonFiniteError as error:
    print(f'error: {error}', file=sys.stderr, flush=True)
    return 1
  finally:
    for env in train_envs + test_envs:
      env.close()
    logger.close()


def prefill(config, driver, act_space, step, rng):
  """Uniform random actions until `--prefill` environment steps are on disk
  (those of earlier runs count). Unfinished episodes are dropped."""
  missing = max(0, config.prefill - step.value)
  print(f'Prefill dataset with {missing} steps.', flush=True)
  if not missing:
    return

  driver(uniform_policy(act_space, rng, check_stop),
         steps=-(-missing // config.action_repeat))
  driver.reset()


def uniform_policy(act_space, rng, before_step=None):
  """Uniform random actions for every environment, drawn from `rng`
  (the prefill's, and evaluate.py --random's)."""

  def policy(obs, reset, state):
    if before_step:
      before_step()
    return np.stack([act_space.sample(rng) for _ in reset]), None
  return policy


def build(config, strategy, env, logger, step, progress, rng):
  """The model, sampler and agent, resumed from the checkpoint if there is
  one; else after the original's initial update."""
  import models
  print(f'Simulating agent for {max(0, config.steps - step.value)} steps.',
        flush=True)
  proprio = {key: space.shape for key, space in env.obs_space.items()
             if key != 'image'}
  try:
    model = models.Dreamer(
        config, env.act_space.shape[0], proprio=proprio, strategy=strategy)
  except ValueError as error:
    fail(error)
  sampler = replay.EpisodeSampler(
      config.logdir / 'episodes', config.batch_length, config.dataset_balance,
      rescan=config.train_steps, seed=config.seed,
      memory=replay.replay_bytes(config.replay_memory),
      across=tasks.parse(config.task)[0] == 'gym')
  progress.replay = sampler.memory
  path = config.logdir / checkpoint.NAME
  keep = kept.parse(config.keep_checkpoints)
  agent = Agent(
      config, model, replay.batches(sampler, config.batch_size), logger, step,
      progress, rng, save=lambda agent: checkpoint.save_checkpoint(
          path, model, agent, sampler, logged=lambda: logger.mark(step.value),
          keep=keep, step=step.value))
  if checkpoint.exists(path):
    print('Load checkpoint.', flush=True)
    checkpoint.load_checkpoint(path, model, agent, sampler)
    progress.update(step.value, force=True)
  else:
    # The original builds its variables with one real update, so 1 +
    # pretrain updates precede the first test episode.
    print('Training for 1 step (initial update).', flush=True)
    agent.train(1)
  return agent


def train_and_evaluate(config, agent, train, test, step, progress):
  """Until `--steps` are on disk: a test episode, `--eval_every` steps of
  collection (the agent trains on schedule inside its calls), a checkpoint.

  As in the original, the episodes on disk say when the run is done, not
  the step counter, which also counts the steps of open episodes and of
  those the prefill dropped (several environments): so a finished run is
  one whose episodes reach `--steps`, for sweep.py too."""
  datadir = config.logdir / 'episodes'
  while replay.count_steps(datadir, config.action_repeat) < config.steps:
    print('Start evaluation.', flush=True)
    test.reset()
    test(functools.partial(agent, training=False), episodes=1)
    print('Start collection.', flush=True)
    train(agent, steps=config.eval_every // config.action_repeat)
    agent.save()
    progress.update(step.value, force=True)


def make_envs(config, mode, seed=None):
  """`--envs` environment workers for `mode` train or test, seeded `seed` +
  index (default: the run's seed, + 10,000 for test)."""
  if seed is None:
    seed = config.seed + (0 if mode == 'train' else 10_000)
  return [
      workers.Async(functools.partial(
          wrappers.make_env, config.task, config.action_repeat,
          config.time_limit, seed=seed + index,
          image=config.obs != 'proprio', life_done=mode == 'train'),
          timeout=ENV_TIMEOUT)
      for index in range(config.envs)]


class EpisodeSummaries:
  """On each finished episode: saves it if it trains, prints a line and
  writes its return, length and the episode count (and a test episode's
  video) at the run's step, as the original's `summarize_episode`."""

  def __init__(self, config, datadir, logger, progress, step, episodes):
    self._c = config
    self._datadir = datadir
    self._logger = logger
    self._progress = progress
    self._step = step
    self._episodes = episodes  # Training episodes on disk.

  def __call__(self, mode, episode, index=None):
    if mode == 'train':
      replay.save_episode(self._datadir, episode)
      self._episodes += 1
    length = len(episode['reward']) - 1
    ret = float(episode['reward'].sum())
    print(f'{mode.title()} episode of length '
          f'{length * self._c.action_repeat} with return {ret:.1f}.',
          flush=True)
    setattr(self._progress, f'{mode}_return', ret)
    self._logger.scalar(f'{mode}/return', ret)
    self._logger.scalar(f'{mode}/length', length)
    self._logger.scalar('episodes', self._episodes)
    if mode == 'test' and self._c.log_images and 'image' in episode:
      self._logger.video(f'{mode}/video', episode['image'][None])
    self._logger.write(self._step.value, prefix='sim')


# --- The agent ---------------------------------------------------------------

class Agent:
  """The acting policy, which also trains on schedule (Algorithm 1).

  Called by the driver with the observations of its environments. When
  `step`, the run's counter, has advanced `--train_every` environment steps,
  a call first trains: `--pretrain` updates the first time, then
  `--train_steps`; as in the original, evaluation calls train too. Then it
  acts: the actor's sample plus exploration noise while training, its mode
  while evaluating. `save(agent)`, if given, writes the checkpoint; it runs
  after every training burst.
  """

  def __init__(self, config, model, batches, logger, step, progress, rng,
               save=None):
    self._c = config
    self._model = model
    self._batches = batches
    self._logger = logger
    self._progress = progress
    self._rng = rng
    self._step = step
    self._save = save
    self.updates = 0
    self.train_seconds = 0.0
    self._pending = 0  # Updates left of a burst that a stop cut short.
    self._should_train = tools.Every(config.train_every)
    self._should_log = tools.Every(config.log_every)
    self._should_pretrain = tools.Once()
    self._metrics = tools.Means()
    self._nonfinite = {}  # Optimizer name: non-finite updates in a row.

  @property
  def step(self):
    return self._step.value

  def __call__(self, obs, reset, state=None, training=True):
    check_stop()
    if self._pending or self._should_train(self.step):
      self.train()
    action, latent = act(self._model, obs, reset, state, training)
    action = self._exploration(action, training)
    return action, (latent, action)

  def train(self, count=None):
    """The updates due now: pretrain or train_steps, or the rest of a burst
    a stop cut short, or `count`. Metrics are averaged over every update
    since the last write, as the original's running means are. Raises
    StopRequested after the update during which a stop was asked for, and
    NonFiniteError when an optimizer skipped NONFINITE_LIMIT in a row."""
    burst = count is None
    log = burst and self._should_log(self.step)
    if burst:
      if not self._pending:
        self._pending = (
            self._c.pretrain if self._should_pretrain()
            else self._c.train_steps)
      count = self._pending
      print(f'Training for {count} steps.', flush=True)
    last = time.time()
    for index in range(count):
      data = next(self._batches)
      metrics = {k: float(v) for k, v in self._model.train(data).items()}
      if self._c.log_scalars:
        self._metrics.add(metrics)
      if (log and index == 0 and self._c.log_images
          and 'image' in self._model.obs_keys):
        self._logger.video('openl', self._model.openl(data).numpy())
      # Counted together, so a checkpoint taken mid-burst stays consistent.
      self.updates += 1
      self._pending = max(0, self._pending - 1)
      now = time.time()
      self.train_seconds += now - last
      self._report(now - last)
      last = now
      self._check_finite(metrics)
      check_stop()
    if log:
      for name, value in self._metrics.result().items():
        self._logger.scalar(name, value)
      self._logger.write(self.step, fps=True, prefix='agent')
    self.train_seconds += time.time() - last
    if burst:
      self.save()

  def _report(self, duration):
    if self._progress:
      self._progress.trained(self.updates, self.train_seconds, duration)
      self._progress.update(self.step)

  def _check_finite(self, metrics):
    for name in ('model', 'actor', 'value'):
      skipped = metrics.get(f'{name}_nonfinite', 0.0) > 0
      self._nonfinite[name] = self._nonfinite.get(name, 0) + 1 if skipped else 0
      if self._nonfinite[name] >= NONFINITE_LIMIT:
        raise NonFiniteError(
            f'the {name} loss had non-finite gradients in the last '
            f'{NONFINITE_LIMIT} updates in a row (each was skipped); the run '
            f'stops and keeps its last checkpoint. Look for NaN or inf in '
            f'the episodes (rewards) or lower --{name}_lr.')

  def _exploration(self, action, training):
    if training:
      amount = tools.exploration_amount(
          self.step, self._c.expl_amount, self._c.expl_decay,
          self._c.expl_min)
      self._metrics.add({'expl_amount': amount})
    elif self._c.eval_noise:
      amount = self._c.eval_noise
    else:
      return action
    return explore(action, amount, self._c.expl, self._rng)

  def save(self):
    """Calls `save(agent)` given at construction, if any."""
    if self._save:
      self._save(self)

  def get_state(self):
    return {
        'train_last': self._should_train.get_state(),
        'log_last': self._should_log.get_state(),
        'updates': self.updates,
        'train_seconds': self.train_seconds,
        'pending': self._pending,
        'rng': self._rng.bit_generator.state,
        'metrics': self._metrics.get_state(),
    }

  def set_state(self, state):
    self._should_train.set_state(state['train_last'])
    self._should_log.set_state(state['log_last'])
    self.updates = state['updates']
    self.train_seconds = state['train_seconds']
    self._pending = state['pending']
    self._rng.bit_generator.state = state['rng']
    self._metrics.set_state(state['metrics'])
    self._should_pretrain()
    if self._progress:
      self._progress.trained(self.updates, self.train_seconds)


def act(model, obs, reset, state, training):
  """One step of the policy for a batch of environments: (actions as numpy,
  posterior). `state` is (posterior, previous action), or None at first;
  environments that were just `reset` start from zeros."""
  if state is None:
    state = model.initial_state(len(reset))
  elif reset.any():
    mask = (1 - reset.astype(np.float32))[:, None]
    latent, action = state
    state = ({k: v * mask for k, v in latent.items()}, action * mask)
  action, latent = model.policy(
      {key: obs[key] for key in model.obs_keys}, state[0], state[1], training)
  return action.numpy(), latent


def explore(action, amount, kind, rng):
  """The original's exploration noise on a batch of actions:
  additive_gaussian clip(N(action, amount), −1, 1); completely_random
  U(−1, 1); epsilon_greedy a uniform one-hot with probability `amount`."""
  if kind == 'additive_gaussian':
    return np.clip(rng.normal(action, amount), -1, 1).astype(np.float32)
  if kind == 'completely_random':
    return rng.uniform(-1, 1, action.shape).astype(np.float32)
  if kind == 'epsilon_greedy':
    random = np.eye(action.shape[-1], dtype=np.float32)[
        rng.integers(0, action.shape[-1], action.shape[:-1])]
    pick = rng.uniform(0, 1, action.shape[:-1]) < amount
    return np.where(pick[..., None], random, action).astype(np.float32)
  raise ValueError(
      f'unknown expl {kind!r}; allowed: {", ".join(CHOICES["expl"])}')


# --- Stopping ---------------------------------------------------------------

class StopRequested(Exception):
  """SIGINT or SIGTERM asked the run to stop; raised at a safe point."""


class NonFiniteError(Exception):
  """An optimizer's gradients stayed non-finite for NONFINITE_LIMIT updates."""


STOP = threading.Event()


def check_stop():
  """Raises StopRequested if a stop was asked for: at every agent step and
  after every update."""
  if STOP.is_set():
    raise StopRequested()


@contextlib.contextmanager
def stop_signals():
  """SIGINT and SIGTERM set STOP while inside; a second Ctrl-C stops at
  once (KeyboardInterrupt)."""
  handlers = {sig: signal.signal(sig, _request_stop)
              for sig in (signal.SIGINT, signal.SIGTERM)}
  STOP.clear()
  try:
    yield
  finally:
    for sig, handler in handlers.items():
      signal.signal(sig, handler)


def _request_stop(signum, frame):
  if STOP.is_set() and signum == signal.SIGINT:
    raise KeyboardInterrupt
  STOP.set()
  print(f'\n{signal.Signals(signum).name}: stopping after the current '
        f'update or environment step (Ctrl-C again stops at once).',
        flush=True)


# --- Main -------------------------------------------------------------------

def main(argv=None):
  onednn = devices.choose_onednn() + '\n' + devices.choose_threads()
  config = parse_args(argv)
  with hold_logdir(config.logdir, resume_command(argv)):
    return start(config, onednn, argv)


def resume_command(argv):
  return ' '.join(['python dreamer.py'] + [shlex.quote(arg) for arg in (
      sys.argv[1:] if argv is None else argv)])


@contextlib.contextmanager
def hold_logdir(logdir, command):
  """Holds the logdir's lock (runlock) while inside. One line and exit
  code 2 if another run holds it, if it cannot be written, or if a write
  in it fails (tools.WriteError): then the line says what is kept."""
  held = contextlib.ExitStack()
  try:
    held.enter_context(runlock.LogdirLock(logdir))
  except runlock.LogdirLocked as error:
    fail(error)
  except OSError as error:
    fail(f'cannot write to --logdir {logdir}: {error.strerror}')
  with held:
    try:
      yield
    except tools.WriteError as error:
      fail(f'{error}; {what_is_kept(logdir)}; {WHEN.get(error.errno, WHEN[0])} the '
           f'same command resumes: {command}')


WHEN = {errno.ENOSPC: 'once there is room,', errno.EDQUOT: 'once there is '
        'room in the quota,', errno.ENOENT: 'once the folder is back,',
        0: 'once the logdir is writable again,'}


def what_is_kept(logdir):
  """What a stopped run's logdir holds: its checkpoint's step, episodes."""
  mark = checkpoint.logged_mark(logdir / checkpoint.NAME)
  saved = ('no checkpoint yet' if mark == {} else
           'the last complete checkpoint' if mark is None else
           f'the last complete checkpoint (step {mark["step"]:,})')
  episodes, _ = replay.count_episodes(logdir / 'episodes')
  return (f'kept: {saved} and the {episodes} complete episodes on disk, '
          f'no partial file')


def start(config, onednn, argv):
  """The run, in a logdir this process holds."""
  try:
    tasks.check([config.task], {config.task: config})
    check_logdir(config, saved_config(config.logdir))
  except ValueError as error:
    fail(error)
  config.precision, note, strategy = devices.setup(
      config.precision, config.seed, config.gpu_growth, config.batch_size)
  text = json.dumps(config_dict(config), indent=2) + '\n'
  tools.write_atomic(
      config.logdir / 'config.json', lambda file: file.write(text.encode()))
  print(describe_config(config), flush=True)
  print(onednn)
  if note:
    print(note)
  return run(config, resume_command(argv), strategy)


def exit_now(code):
  """Exits with `code` without the interpreter's last garbage collection
  over TensorFlow's objects (5 s on 2 cores, after everything is saved
  and closed): gc.freeze() leaves them to the operating system."""
  gc.freeze()
  sys.exit(code)


if __name__ == '__main__':
  exit_now(main(sys.argv[1:]))
