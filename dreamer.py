"""Dreamer: config, agent and the training loop (Algorithm 1 of the paper).

    python dreamer.py --logdir runs/cheetah --task dmc_cheetah_run

TensorFlow is imported inside functions, not at the top: environment worker
processes are started with `spawn`, which re-imports this file, and they must
never load TensorFlow (see wrappers.py).
"""

import argparse
import functools
import json
import math
import os
import pathlib
import pickle
import re
import shlex
import signal
import sys
import threading
import time
import types

import numpy as np

CHOICES = {
    'parallel': ('none', 'thread', 'process'),
    'clip_rewards': ('none', 'tanh'),
    'dense_act': ('elu', 'relu', 'swish', 'leaky_relu'),
    'cnn_act': ('elu', 'relu', 'swish', 'leaky_relu'),
    'action_dist': ('tanh_normal', 'onehot'),
    'expl': ('additive_gaussian', 'completely_random', 'epsilon_greedy'),
    'precision': ('16', '32', 'bf16'),
    'latent_noise': ('shared', 'independent'),
    'obs': ('image', 'proprio', 'both'),
}


# Named overlays of the defaults, applied in order by `--configs NAME ...`
# before the other flags (as the original's later versions do). The
# defaults stay the original's.
CONFIGS = {
    # A network and batch that fit a 2-core CPU (README, "Results").
    'small': dict(cnn_depth=16, num_units=200, deter_size=100, batch_size=16),
}


def defaults():
  """Every config key with its default: the original's, plus `configs`,
  `jit`, `latent_noise`, `obs` and `replay_memory` (GB of episodes kept in
  RAM, 0: half the machine's; README, "Differences from the original")."""
  return dict(
      configs=[],
      # General.
      logdir=pathlib.Path('.'), seed=0, steps=int(5e6), eval_every=int(1e4),
      log_every=int(1e3), log_scalars=True, log_images=True, gpu_growth=True,
      precision='16', jit=False,
      # Environment.
      task='dmc_walker_walk', envs=1, parallel='none', action_repeat=2,
      time_limit=1000, prefill=5000, eval_noise=0.0, clip_rewards='none',
      obs='image',
      # Model.
      deter_size=200, stoch_size=30, num_units=400, dense_act='elu',
      cnn_act='relu', cnn_depth=32, pcont=False, free_nats=3.0, kl_scale=1.0,
      pcont_scale=10.0, weight_decay=0.0, weight_decay_pattern=r'.*',
      latent_noise='shared',
      # Training.
      batch_size=50, batch_length=50, train_every=1000, train_steps=100,
      pretrain=100, model_lr=6e-4, value_lr=8e-5, actor_lr=8e-5,
      grad_clip=100.0, dataset_balance=False, replay_memory=0.0,
      # Behavior.
      discount=0.99, disclam=0.95, horizon=15, action_dist='tanh_normal',
      action_init_std=5.0, expl='additive_gaussian', expl_amount=0.3,
      expl_decay=0.0, expl_min=0.0,
  )


def make_config(**overrides):
  """The defaults, the named `configs` overlays, then `overrides`."""
  config = defaults()
  unknown = sorted(set(overrides) - set(config))
  if unknown:
    raise ValueError(f'unknown config keys: {", ".join(unknown)}')
  config['configs'] = list(overrides.pop('configs', []))
  for name in config['configs']:
    if name not in CONFIGS:
      raise ValueError(
          f'unknown config {name!r}; known: {", ".join(CONFIGS)}')
    config.update(CONFIGS[name])
  config.update(overrides)
  config['precision'] = str(config['precision'])
  check_config(config)
  return types.SimpleNamespace(**config)


# Allowed ranges of numeric keys: (lowest, highest or None), ends included.
RANGES = {
    **{key: (1, None) for key in (
        'steps', 'eval_every', 'envs', 'action_repeat', 'time_limit',
        'deter_size', 'stoch_size', 'num_units', 'cnn_depth', 'batch_size',
        'train_steps', 'horizon')},
    **{key: (0, None) for key in (
        'log_every', 'prefill', 'train_every', 'pretrain', 'eval_noise',
        'free_nats', 'kl_scale', 'pcont_scale', 'model_lr', 'value_lr',
        'actor_lr', 'grad_clip', 'expl_amount', 'expl_decay', 'expl_min',
        'replay_memory')},
    'batch_length': (2, None),
    'weight_decay': (0, 1),
    'discount': (0, 1),
    'disclam': (0, 1),
    'action_init_std': (1e-6, None),
}
# The paper's Atari flags (README, "Atari").
ATARI_FLAGS = (
    '--action_dist onehot --pcont True --expl epsilon_greedy --expl_amount 0.4 '
    '--expl_decay 1e5 --expl_min 0.1 --horizon 10 --kl_scale 0.1 '
    '--clip_rewards tanh --action_repeat 4')
# Keys a resumed run must share with the run that wrote the logdir.
RESUME_KEYS = (
    'task', 'action_repeat', 'cnn_depth', 'deter_size', 'stoch_size',
    'num_units', 'pcont', 'action_dist', 'obs')


def check_config(config):
  """ValueError naming the first key whose value is not allowed."""
  for key, allowed in CHOICES.items():
    if str(config[key]) not in allowed:
      raise ValueError(
          f'--{key} {config[key]!r} is not allowed; choose one of: '
          f'{", ".join(allowed)}')
  for key, (low, high) in RANGES.items():
    value = config[key]
    if not (math.isfinite(value) and value >= low and (
        high is None or value <= high)):
      allowed = f'at least {low}' if high is None else f'in [{low}, {high}]'
      raise ValueError(f'--{key} must be {allowed}, got {value}')
  episode = -(-config['time_limit'] // config['action_repeat'])
  if config['batch_length'] > episode:
    raise ValueError(
        f'--batch_length {config["batch_length"]} is longer than an episode '
        f'can give: episodes have time_limit / action_repeat = {episode} '
        f'steps, so batch_length must be at most {episode}')
  if config['task'].startswith('atari_'):
    wrong = [f'--{key} {config[key]}' for key, value in (
        ('action_dist', 'onehot'), ('expl', 'epsilon_greedy'),
        ('obs', 'image')) if config[key] != value]
    if wrong:
      raise ValueError(
          f'{", ".join(wrong)} does not fit an Atari task (one-hot actions, '
          f'images only): pass --action_dist onehot --expl epsilon_greedy; '
          f'the paper also used {ATARI_FLAGS}')
  try:
    re.compile(config['weight_decay_pattern'])
  except re.error as error:
    raise ValueError(
        f'--weight_decay_pattern {config["weight_decay_pattern"]!r} is not '
        f'a regular expression: {error}')


def check_logdir(config, previous=None):
  """ValueError if the logdir cannot be written, or if `previous`, the
  config saved there, differs in a key that breaks resuming."""
  try:
    config.logdir.mkdir(parents=True, exist_ok=True)
    probe = config.logdir / '.write-test'
    probe.write_text('')
    probe.unlink()
  except OSError as error:
    raise ValueError(
        f'cannot write to --logdir {config.logdir}: {error.strerror}')
  if previous is None:
    return
  now = config_dict(config)
  changed = [key for key in RESUME_KEYS
             if key in previous and previous[key] != now[key]]
  if changed:
    diffs = ', '.join(
        f'{key} {previous[key]!r} there, {now[key]!r} now' for key in changed)
    raise ValueError(
        f'--logdir {config.logdir} holds a run with another config ({diffs}), '
        f'which it cannot resume; pass the same values to resume it, or '
        f'another --logdir to start fresh')


def _parser_type(default):
  """How a flag's value parses, from its default's type."""
  if isinstance(default, bool):
    def parse_bool(text):
      if text not in ('True', 'False'):
        raise argparse.ArgumentTypeError(f'expected True or False, got {text!r}')
      return text == 'True'
    return parse_bool
  if isinstance(default, int):
    def parse_int(text):
      try:
        value = float(text)
        if value == int(value):
          return int(value)
      except (ValueError, OverflowError):
        pass
      raise argparse.ArgumentTypeError(f'expected an integer, got {text!r}')
    return parse_int
  if isinstance(default, pathlib.Path):
    return lambda text: pathlib.Path(text).expanduser()
  return type(default)


def fail(message):
  """Ends the program with one line naming the problem, and exit code 2."""
  print(f'dreamer.py: error: {message}', file=sys.stderr, flush=True)
  raise SystemExit(2)


class _Parser(argparse.ArgumentParser):
  """argparse whose errors are one line (see `fail`), without the usage."""

  def error(self, message):
    fail(f'{message} (python dreamer.py --help lists the flags)')


def parse_args(argv=None):
  """Parses `--key value` flags; unknown flags and bad values `fail`.

  `--configs NAME ...` first overlays named configs on the defaults; the
  other flags then override single keys.
  """
  parser = _Parser(
      description='Dreamer on DeepMind Control and Atari.',
      allow_abbrev=False)
  parser.add_argument(
      '--configs', nargs='+', default=[], metavar='NAME',
      help=f'named overlays of the defaults: {", ".join(CONFIGS)}')
  first = _Parser(add_help=False, allow_abbrev=False)
  first.add_argument('--configs', nargs='+', default=[])
  names = first.parse_known_args(argv)[0].configs
  try:
    base = vars(make_config(configs=names))
  except ValueError as error:
    parser.error(str(error))
  for key, value in base.items():
    if key != 'configs':
      parser.add_argument(
          f'--{key}', type=_parser_type(value), default=value,
          required=(key == 'logdir'), metavar=type(value).__name__.upper())
  args = parser.parse_args(argv)
  try:
    return make_config(**vars(args))
  except ValueError as error:
    parser.error(str(error))


def config_dict(config):
  """The config as JSON-ready values."""
  return {k: str(v) if isinstance(v, pathlib.Path) else v
          for k, v in vars(config).items()}


# --- Setup ------------------------------------------------------------------

def choose_onednn(environ=None):
  """Turns TensorFlow's oneDNN kernels on unless the user chose; a message.

  TensorFlow 2.21 leaves them off on CPUs without AVX-512, where a
  full-config update then takes 1.7x as long (19.4 s instead of 11.4 s on
  an AVX2-only EPYC). Has an effect only before TensorFlow is imported.
  """
  environ = os.environ if environ is None else environ
  value = environ.get('TF_ENABLE_ONEDNN_OPTS')
  if value is not None:
    state = 'off' if value.strip().lower() in ('0', 'false') else 'on'
    return f'oneDNN {state}: TF_ENABLE_ONEDNN_OPTS={value} (your setting).'
  environ['TF_ENABLE_ONEDNN_OPTS'] = '1'
  late = ' (too late: TensorFlow was already imported)' if (
      'tensorflow' in sys.modules) else ''
  return (f'oneDNN on: TF_ENABLE_ONEDNN_OPTS=1 set by default{late}; '
          f'TensorFlow turns it off on CPUs without AVX-512, where updates '
          f'then take 1.7x as long. Set TF_ENABLE_ONEDNN_OPTS=0 to compare.')


def cpu_has_bf16():
  """Whether this CPU has bfloat16 matrix instructions (AMX or AVX-512)."""
  try:
    flags = pathlib.Path('/proc/cpuinfo').read_text()
  except OSError:
    return False
  return 'amx_bf16' in flags or 'avx512_bf16' in flags


def resolve_precision(precision, has_gpu, bf16_cpu):
  """(precision to run, message or None): float16 only where it is fast.

  precision 16 means float16 compute on GPUs, as in the original. CPUs run
  float16 far slower than float32, so without a GPU it runs float32 and
  says so. bfloat16 is faster on CPUs with bfloat16 instructions but its
  actor gradients drift from float32's (benchmarks/precision.py), so it is
  never chosen for the user.
  """
  if precision != '16' or has_gpu:
    return precision, None
  hint = (' This CPU has bfloat16 instructions: --precision bf16 is faster, '
          'but its gradients differ from float32 (actor cosine 0.975 at the '
          'full config).' if bf16_cpu else '')
  return '32', (
      f'Precision 16 means float16 on a GPU; there is none here and float16 '
      f'on a CPU is about 10x slower, so this run computes in float32 '
      f'(--precision 32).{hint}')


def setup_tensorflow(config):
  """Seeds TensorFlow and chooses the devices; returns (has_gpu, strategy).

  Several hosts (TF_CONFIG set): MultiWorkerMirroredStrategy. Several
  local GPUs: MirroredStrategy, as the original. One device: no strategy.
  """
  import tensorflow as tf
  import keras
  gpus = tf.config.list_physical_devices('GPU')
  if config.gpu_growth:
    for gpu in gpus:
      tf.config.experimental.set_memory_growth(gpu, True)
  strategy = None
  if os.environ.get('TF_CONFIG'):
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
  elif len(gpus) > 1:
    strategy = tf.distribute.MirroredStrategy()
  if strategy is not None:
    local = len(strategy.extended.worker_devices)
    if config.batch_size % local:
      fail(f'--batch_size {config.batch_size} does not split evenly over '
           f'the {local} devices of this host; use a multiple of {local}')
    print(f'Training on {strategy.num_replicas_in_sync} replicas '
          f'({type(strategy).__name__}); each host samples --batch_size '
          f'{config.batch_size} sequences per update.', flush=True)
  keras.utils.set_random_seed(config.seed)
  return bool(gpus), strategy


ENV_TIMEOUT = 300  # Seconds an environment worker may take to answer.


def make_envs(config, callbacks, mode):
  import wrappers
  seed = config.seed + (0 if mode == 'train' else 10_000)
  return [
      wrappers.make_async_env(
          config.task, config.action_repeat, config.time_limit,
          callbacks=[functools.partial(callbacks, mode)],
          strategy=config.parallel, seed=seed + index, timeout=ENV_TIMEOUT,
          image=config.obs != 'proprio', life_done=mode == 'train')
      for index in range(config.envs)]


# --- Acting -----------------------------------------------------------------

def simulate(policy, envs, strategy, steps=0, episodes=0, state=None,
             on_step=None):
  """Runs `policy(obs, reset, agent_state)` in `envs` for at least `steps`
  agent steps of finished episodes or `episodes` episodes; returns the state
  to continue from (unfinished episodes go on in the next call)."""
  if state is None:
    count = len(envs)
    step, episode = 0, 0
    done, length = np.ones(count, bool), np.zeros(count, np.int64)
    obs, agent_state = [None] * count, None
  else:
    step, episode, done, length, obs, agent_state = state
  while (steps and step < steps) or (episodes and episode < episodes):
    obs, done, agent_state = step_envs(
        policy, envs, strategy, obs, done, agent_state)
    episode += int(done.sum())
    length += 1
    step += int((done * length).sum())
    length *= 1 - done
    if on_step:
      on_step()
  return step - steps, episode - episodes, done, length, obs, agent_state


def step_envs(policy, envs, strategy, obs, done, agent_state):
  """One agent step of all `envs`: resets the ones that are `done`, runs
  the policy on the batch of observations and steps every env with its
  action; returns the new (obs, done, agent_state)."""
  import wrappers
  if done.any():
    indices = np.flatnonzero(done)
    for index, ob in zip(indices, wrappers.reset_all(
        [envs[i] for i in indices], strategy)):
      obs[index] = ob
  batch = {k: np.stack([ob[k] for ob in obs]) for k in obs[0]}
  action, agent_state = policy(batch, done, agent_state)
  results = wrappers.step_all(envs, list(action), strategy)
  obs = [result[0] for result in results]
  done = np.array([result[2] for result in results], bool)
  return obs, done, agent_state


def explore(action, amount, kind, rng):
  """The exploration noise of the original (SPEC section 6)."""
  if kind == 'additive_gaussian':
    return np.clip(rng.normal(action, amount), -1, 1).astype(np.float32)
  if kind == 'completely_random':
    return rng.uniform(-1, 1, action.shape).astype(np.float32)
  if kind == 'epsilon_greedy':
    random = np.eye(action.shape[-1], dtype=np.float32)[
        rng.integers(0, action.shape[-1], action.shape[:-1])]
    pick = rng.uniform(0, 1, action.shape[:-1]) < amount
    return np.where(pick[..., None], random, action).astype(np.float32)
  raise ValueError(f'unknown expl {kind!r}; allowed: {", ".join(CHOICES["expl"])}')


class StopRequested(Exception):
  """SIGINT or SIGTERM asked the run to stop; raised at a safe point."""


class NonFiniteError(Exception):
  """An optimizer's gradients stayed non-finite for NONFINITE_LIMIT updates."""


STOP = threading.Event()
NONFINITE_LIMIT = 100


def _request_stop(signum, frame):
  if STOP.is_set() and signum == signal.SIGINT:
    raise KeyboardInterrupt
  STOP.set()
  print(f'\n{signal.Signals(signum).name}: stopping after the current '
        f'update or environment step (Ctrl-C again stops at once).',
        flush=True)


class Agent:
  """The acting policy, which also trains on schedule (Algorithm 1).

  `save()`, if given, writes a checkpoint after every training burst.
  """

  def __init__(self, config, model, batches, logger, step, progress, rng,
               save=None):
    import tools
    self._c = config
    self._model = model
    self._batches = batches
    self._logger = logger
    self._progress = progress
    self._rng = rng
    self.step = step
    self.updates = 0
    self.train_seconds = 0.0
    self._pending = 0  # Updates left of a burst that a stop cut short.
    self._should_train = tools.Every(config.train_every)
    self._should_log = tools.Every(config.log_every)
    self._should_pretrain = tools.Once()
    self._metrics = tools.Means()
    self._save = save
    self._nonfinite = {}  # Optimizer name: non-finite updates in a row.

  def __call__(self, obs, reset, state=None, training=True):
    if state is None:
      state = self._model.initial_state(len(reset))
    elif reset.any():
      mask = (1 - reset.astype(np.float32))[:, None]
      latent, action = state
      state = ({k: v * mask for k, v in latent.items()}, action * mask)
    # As in the original, evaluation calls train too when training is due, so
    # the first test episode runs after the pretrain updates.
    if self._pending or self._should_train(self.step):
      self.train()
    action, latent = self._model.policy(
        {key: obs[key] for key in self._model.obs_keys}, state[0], state[1],
        training)
    action = self._exploration(action.numpy(), training)
    if training:
      self.step += len(reset) * self._c.action_repeat
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
      last = now
      self._progress.update(self.step, self.updates, self.train_seconds)
      self._check_finite(metrics)
      if STOP.is_set():
        raise StopRequested()
    if log:
      for name, value in self._metrics.result().items():
        self._logger.scalar(name, value)
      self._logger.write(self.step, fps=True, prefix='agent')
    self.train_seconds += time.time() - last
    if burst and self._save:
      self._save()

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

  def _expl_amount(self):
    import tools
    return tools.exploration_amount(
        self.step, self._c.expl_amount, self._c.expl_decay, self._c.expl_min)

  def _exploration(self, action, training):
    if training:
      amount = self._expl_amount()
      self._metrics.add({'expl_amount': amount})
    elif self._c.eval_noise:
      amount = self._c.eval_noise
    else:
      return action
    return explore(action, amount, self._c.expl, self._rng)
  def get_state(self):
    return {
        'train_last': self._should_train._last,
        'log_last': self._should_log._last,
        'updates': self.updates,
        'train_seconds': self.train_seconds,
        'pending': self._pending,
        'rng': self._rng.bit_generator.state,
        'metrics': self._metrics.get_state(),
    }

  def set_state(self, state):
    self._should_train._last = state['train_last']
    self._should_log._last = state['log_last']
    self.updates = state['updates']
    self.train_seconds = state['train_seconds']
    self._pending = state['pending']
    self._rng.bit_generator.state = state['rng']
    self._metrics.set_state(state['metrics'])
    self._should_pretrain()


class Progress:
  """Prints a status line at most every `every` seconds.

  Time left = steps left / collection rate + updates left · seconds per
  update, with `updates_per_step` updates due per environment step; before
  both rates are known, steps left / the overall rate.
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
    self._mark = None

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

  def update(self, step, updates=0, train_seconds=0.0, force=False):
    now = time.time()
    if not force and now - self._last < self._every:
      return
    self._last = now
    print(self.line(step, updates, train_seconds, now), flush=True)

  def line(self, step, updates, train_seconds, now):
    elapsed = max(now - self._start, 1e-9)
    rate = (step - self._start_step) / elapsed
    per_update = train_seconds / updates if updates else 0
    collect = self.collect_steps / self.collect_seconds if self.collect_seconds else 0
    steps_left = max(0, self._total - step)
    if collect and per_update:
      left = steps_left * (1 / collect + self._updates_per_step * per_update)
    else:
      left = steps_left / rate if rate > 0 else float('inf')
    fmt = lambda x: '-' if x is None else f'{x:.1f}'
    return (
        f'[progress] step {step:,}/{self._total:,} | {rate:.1f} steps/s '
        f'overall, {collect:.1f} collecting | updates {updates:,} '
        f'({per_update:.2f} s each) | return train {fmt(self.train_return)} '
        f'test {fmt(self.test_return)} | {_memory(self.replay)}left '
        f'{_duration(left)}')


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
  if seconds == float('inf'):
    return '?'
  hours, rest = divmod(int(seconds), 3600)
  return f'{hours}h{rest // 60:02d}m'


# --- Checkpoints ------------------------------------------------------------

def save_checkpoint(path, model, agent, sampler):
  """Writes the checkpoint atomically; the one it replaces stays as
  `variables.pkl.prev` until the new one is complete."""
  import tools
  state = {
      'version': 2, 'model': model.get_state(), 'agent': agent.get_state(),
      'sampler': sampler.get_state()}
  tools.save_pickle(path, state)


def load_checkpoint(path, model, agent, sampler):
  """Restores the newest checkpoint that loads and fits, else the previous
  one with a warning; `fail`s if neither does."""
  import tools
  problems = []
  for candidate in (path, tools.previous_path(path)):
    if not candidate.exists():
      continue
    try:
      with candidate.open('rb') as file:
        state = pickle.load(file)
      model.set_state(state['model'])
      agent.set_state(state['agent'])
      sampler.set_state(state['sampler'])
    except Exception as error:  # Damaged files fail in many ways.
      problems.append(f'{candidate.name}: {error!r}'[:300])
      print(f'Warning: cannot resume from {candidate}: {problems[-1]}',
            flush=True)
      continue
    if candidate != path:
      print(f'Warning: resumed from the previous checkpoint {candidate}.',
            flush=True)
    return candidate
  fail(f'cannot resume from the checkpoints in {path.parent} '
       f'({"; ".join(problems)}): they belong to another config or an older '
       f'version of this code, or are damaged; use another --logdir or move '
       f'them away')


# --- Main -------------------------------------------------------------------

def main(argv=None):
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  onednn = choose_onednn()
  config = parse_args(argv)
  import wrappers
  try:
    wrappers.check_task(config.task, known=True)
    check_logdir(config, saved_config(config.logdir))
  except ValueError as error:
    fail(error)
  has_gpu, strategy = setup_tensorflow(config)
  precision, note = resolve_precision(config.precision, has_gpu, cpu_has_bf16())
  print(json.dumps(config_dict(config), indent=2))
  print(onednn)
  if note:
    print(note)
  config.precision = precision
  (config.logdir / 'config.json').write_text(
      json.dumps(config_dict(config), indent=2) + '\n')
  command = ' '.join(
      ['python dreamer.py'] + [shlex.quote(arg) for arg in (
          sys.argv[1:] if argv is None else argv)])
  return run(config, command, strategy)


def saved_config(logdir):
  """The config a previous run saved in `logdir`, or None."""
  try:
    return json.loads((logdir / 'config.json').read_text())
  except (OSError, ValueError):
    return None


def run(config, command='python dreamer.py', strategy=None):
  """Algorithm 1 until `config.steps`; returns the exit code.

  SIGINT and SIGTERM stop it at the next update or environment step, with
  the checkpoint saved (0); a failed environment worker saves and returns
  1; persistently non-finite gradients return 1 keeping the checkpoint.
  """
  import models
  import tools
  import wrappers
  datadir = config.logdir / 'episodes'
  removed = tools.remove_temporary_files(config.logdir)
  if removed:
    print(f'Removed {len(removed)} unfinished files of a killed run: '
          f'{", ".join(path.name for path in removed)}', flush=True)
  logger = tools.Logger(config.logdir)
  step = tools.count_steps(datadir, config.action_repeat)
  if not step and not config.prefill:
    fail(f'no episodes in {datadir} and --prefill 0: nothing to train on')
  progress = Progress(
      config.steps, step, config.train_steps / config.train_every)
  pending = []
  collect = lambda mode, episode: pending.append((mode, episode))
  train_envs = make_envs(config, collect, 'train')
  test_envs = make_envs(config, collect, 'test')
  agent = sampler = None

  def on_step():
    while pending:
      mode, episode = pending.pop(0)
      finish_episode(config, datadir, logger, progress, mode, episode)
    if agent:
      progress.track(agent.step, agent.train_seconds)
      progress.update(agent.step, agent.updates, agent.train_seconds)
    if STOP.is_set():
      raise StopRequested()

  checkpoint = config.logdir / 'variables.pkl'
  save = lambda: save_checkpoint(checkpoint, model, agent, sampler)
  handlers = {sig: signal.signal(sig, _request_stop)
              for sig in (signal.SIGINT, signal.SIGTERM)}
  STOP.clear()
  try:
    act_space = train_envs[0].act_space
    prefill = max(0, config.prefill - step)
    print(f'Prefill dataset with {prefill} steps.', flush=True)
    rng = np.random.default_rng(config.seed)
    if prefill:
      random_policy = lambda obs, reset, state: (
          np.stack([act_space.sample(rng) for _ in reset]), None)
      start = time.time()
      simulate(random_policy, train_envs, config.parallel,
               steps=-(-prefill // config.action_repeat), on_step=on_step)
      on_step()
      progress.collected(
          tools.count_steps(datadir, config.action_repeat) - step,
          time.time() - start)
    step = tools.count_steps(datadir, config.action_repeat)
    print(f'Simulating agent for {max(0, config.steps - step)} steps.', flush=True)
    proprio = {key: space.shape
               for key, space in train_envs[0].obs_space.items()
               if key not in ('image', 'reward')}
    try:
      model = models.Dreamer(
          config, act_space.shape[0], proprio=proprio, strategy=strategy)
    except ValueError as error:
      fail(error)
    sampler = tools.EpisodeSampler(
        datadir, config.batch_length, config.dataset_balance,
        rescan=config.train_steps, seed=config.seed,
        memory=replay_bytes(config.replay_memory))
    progress.replay = sampler.memory
    agent = Agent(config, model, tools.batches(sampler, config.batch_size),
                  logger, step, progress, rng, save)
    if checkpoint.exists() or tools.previous_path(checkpoint).exists():
      print('Load checkpoint.', flush=True)
      load_checkpoint(checkpoint, model, agent, sampler)
      progress.update(
          agent.step, agent.updates, agent.train_seconds, force=True)
    else:
      # The original builds its variables with one real update, so 1 +
      # pretrain updates precede the first test episode.
      print('Training for 1 step (initial update).', flush=True)
      agent.train(1)
    state = None
    while step < config.steps:
      print('Start evaluation.', flush=True)
      simulate(functools.partial(agent, training=False), test_envs,
               config.parallel, episodes=1, on_step=on_step)
      on_step()
      print('Start collection.', flush=True)
      state = simulate(agent, train_envs, config.parallel,
                       steps=config.eval_every // config.action_repeat,
                       state=state, on_step=on_step)
      on_step()
      step = tools.count_steps(datadir, config.action_repeat)
      save()
      progress.update(
          agent.step, agent.updates, agent.train_seconds, force=True)
    return 0
  except (StopRequested, KeyboardInterrupt):
    saved = 'episodes are saved'
    if agent is not None:
      save()
      saved = 'episodes and the checkpoint are saved'
    print(f'Stopped: {saved}. Resume with:\n  {command}', flush=True)
    return 0
  except wrappers.WorkerError as error:
    if agent is not None:
      save()
    print(f'error: {error}\nThe checkpoint is saved; once the environment '
          f'works, resume with:\n  {command}', file=sys.stderr, flush=True)
    return 1
  except NonFiniteError as error:
    print(f'error: {error}', file=sys.stderr, flush=True)
    return 1
  finally:
    for sig, handler in handlers.items():
      signal.signal(sig, handler)
    for env in train_envs + test_envs:
      env.close()
    logger.close()


def replay_bytes(gigabytes):
  """The replay cache budget in bytes: `gigabytes`, or half of the RAM if 0."""
  if gigabytes:
    return int(gigabytes * 2 ** 30)
  try:
    return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // 2
  except (ValueError, OSError):
    return 8 * 2 ** 30


def finish_episode(config, datadir, logger, progress, mode, episode):
  """Saves a training episode and writes the summaries of any episode."""
  import tools
  if mode == 'train':
    tools.save_episode(datadir, episode)
  episodes, _ = tools.count_episodes(datadir)
  step = tools.count_steps(datadir, config.action_repeat)
  length = len(episode['reward']) - 1
  ret = float(episode['reward'].sum())
  print(f'{mode.title()} episode of length {length * config.action_repeat} '
        f'with return {ret:.1f}.', flush=True)
  setattr(progress, f'{mode}_return', ret)
  logger.scalar(f'{mode}/return', ret)
  logger.scalar(f'{mode}/length', length)
  logger.scalar('episodes', episodes)
  if mode == 'test' and config.log_images and 'image' in episode:
    logger.video(f'{mode}/video', episode['image'][None])
  logger.write(step, prefix='sim')


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
