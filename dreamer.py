"""Dreamer: config, agent and the training loop (Algorithm 1 of the paper).

    python dreamer.py --logdir runs/cheetah --task dmc_cheetah_run

TensorFlow is imported inside functions, not at the top: environment worker
processes are started with `spawn`, which re-imports this file, and they must
never load TensorFlow (see wrappers.py).
"""

import argparse
import functools
import json
import os
import pathlib
import pickle
import sys
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
  `jit` and `latent_noise` (README, "Differences from the original")."""
  return dict(
      configs=[],
      # General.
      logdir=pathlib.Path('.'), seed=0, steps=int(5e6), eval_every=int(1e4),
      log_every=int(1e3), log_scalars=True, log_images=True, gpu_growth=True,
      precision='16', jit=False,
      # Environment.
      task='dmc_walker_walk', envs=1, parallel='none', action_repeat=2,
      time_limit=1000, prefill=5000, eval_noise=0.0, clip_rewards='none',
      # Model.
      deter_size=200, stoch_size=30, num_units=400, dense_act='elu',
      cnn_act='relu', cnn_depth=32, pcont=False, free_nats=3.0, kl_scale=1.0,
      pcont_scale=10.0, weight_decay=0.0, weight_decay_pattern=r'.*',
      latent_noise='shared',
      # Training.
      batch_size=50, batch_length=50, train_every=1000, train_steps=100,
      pretrain=100, model_lr=6e-4, value_lr=8e-5, actor_lr=8e-5,
      grad_clip=100.0, dataset_balance=False,
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


def check_config(config):
  for key, allowed in CHOICES.items():
    if str(config[key]) not in allowed:
      raise ValueError(
          f'--{key} {config[key]!r} is not allowed; choose one of: '
          f'{", ".join(allowed)}')
  for key in ('steps', 'envs', 'action_repeat', 'batch_size', 'batch_length',
              'horizon', 'train_steps', 'time_limit'):
    if config[key] < 1:
      raise ValueError(f'--{key} must be at least 1, got {config[key]}')
  if config['batch_length'] < 2:
    raise ValueError('--batch_length must be at least 2')


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
      value = float(text)
      if value != int(value):
        raise argparse.ArgumentTypeError(f'expected an integer, got {text!r}')
      return int(value)
    return parse_int
  if isinstance(default, pathlib.Path):
    return lambda text: pathlib.Path(text).expanduser()
  return type(default)


def parse_args(argv=None):
  """Parses `--key value` flags; unknown flags and bad values exit with usage.

  `--configs NAME ...` first overlays named configs on the defaults; the
  other flags then override single keys.
  """
  parser = argparse.ArgumentParser(
      description='Dreamer on DeepMind Control from pixels.',
      allow_abbrev=False)
  parser.add_argument(
      '--configs', nargs='+', default=[], metavar='NAME',
      help=f'named overlays of the defaults: {", ".join(CONFIGS)}')
  first = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
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
  float16 far slower than float32, so without a GPU it runs bfloat16 where
  the CPU has bfloat16 instructions, else float32, and says so.
  """
  if precision != '16' or has_gpu:
    return precision, None
  fallback = 'bf16' if bf16_cpu else '32'
  name = {'bf16': 'bfloat16', '32': 'float32'}[fallback]
  return fallback, (
      f'Precision 16 means float16 on a GPU; there is none here and float16 '
      f'on a CPU is about 10x slower, so this run computes in {name} '
      f'(--precision {fallback}). Pass --precision 32 for float32.')


def setup_tensorflow(config):
  import tensorflow as tf
  import keras
  gpus = tf.config.list_physical_devices('GPU')
  if config.gpu_growth:
    for gpu in gpus:
      tf.config.experimental.set_memory_growth(gpu, True)
  keras.utils.set_random_seed(config.seed)
  return bool(gpus)


def make_envs(config, callbacks, mode):
  import wrappers
  seed = config.seed + (0 if mode == 'train' else 10_000)
  return [
      wrappers.make_async_env(
          config.task, config.action_repeat, config.time_limit,
          callbacks=[functools.partial(callbacks, mode)],
          strategy=config.parallel, seed=seed + index)
      for index in range(config.envs)]


# --- Acting -----------------------------------------------------------------

def simulate(policy, envs, strategy, steps=0, episodes=0, state=None,
             on_step=None):
  """Runs `policy(obs, reset, agent_state)` in `envs` for at least `steps`
  agent steps of finished episodes or `episodes` episodes; returns the state
  to continue from (unfinished episodes go on in the next call)."""
  import wrappers
  if state is None:
    count = len(envs)
    step, episode = 0, 0
    done, length = np.ones(count, bool), np.zeros(count, np.int64)
    obs, agent_state = [None] * count, None
  else:
    step, episode, done, length, obs, agent_state = state
  while (steps and step < steps) or (episodes and episode < episodes):
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
    episode += int(done.sum())
    length += 1
    step += int((done * length).sum())
    length *= 1 - done
    if on_step:
      on_step()
  return step - steps, episode - episodes, done, length, obs, agent_state


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


class Agent:
  """The acting policy, which also trains on schedule (Algorithm 1)."""

  def __init__(self, config, model, batches, logger, step, progress, rng):
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
        obs['image'], state[0], state[1], training)
    action = self._exploration(action.numpy(), training)
    if training:
      self.step += len(reset) * self._c.action_repeat
    return action, (latent, action)

  def train(self, count=None):
    """The updates due now: pretrain or train_steps, or the rest of a burst
    a stop cut short, or `count`. Metrics are averaged over every update
    since the last write, as the original's running means are."""
    log = count is None and self._should_log(self.step)
    if count is None:
      if not self._pending:
        self._pending = (
            self._c.pretrain if self._should_pretrain()
            else self._c.train_steps)
      count = self._pending
      print(f'Training for {count} steps.', flush=True)
    last = time.time()
    for index in range(count):
      data = next(self._batches)
      metrics = self._model.train(data)
      if self._c.log_scalars:
        self._metrics.add({k: float(v) for k, v in metrics.items()})
      if log and index == 0 and self._c.log_images:
        self._logger.video('openl', self._model.openl(data).numpy())
      # Counted together, so a checkpoint taken mid-burst stays consistent.
      self.updates += 1
      self._pending = max(0, self._pending - 1)
      now = time.time()
      self.train_seconds += now - last
      last = now
      self._progress.update(self.step, self.updates, self.train_seconds)
    if log:
      for name, value in self._metrics.result().items():
        self._logger.scalar(name, value)
      self._logger.write(self.step, fps=True, prefix='agent')
    self.train_seconds += time.time() - last

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
        f'test {fmt(self.test_return)} | left {_duration(left)}')


def _duration(seconds):
  if seconds == float('inf'):
    return '?'
  hours, rest = divmod(int(seconds), 3600)
  return f'{hours}h{rest // 60:02d}m'


# --- Checkpoints ------------------------------------------------------------

def save_checkpoint(path, model, agent, sampler):
  state = {
      'version': 1, 'model': model.get_state(), 'agent': agent.get_state(),
      'sampler': sampler.get_state()}
  tmp = path.with_name(path.name + '.tmp')
  with tmp.open('wb') as file:
    pickle.dump(state, file, protocol=pickle.HIGHEST_PROTOCOL)
  os.replace(tmp, path)


def load_checkpoint(path, model, agent, sampler):
  try:
    with path.open('rb') as file:
      state = pickle.load(file)
    model.set_state(state['model'])
    agent.set_state(state['agent'])
    sampler.set_state(state['sampler'])
  except (OSError, pickle.UnpicklingError, EOFError, KeyError, ValueError) as e:
    raise SystemExit(
        f'cannot resume from {path}: {e!r}. It belongs to a different config '
        f'or an older version of this code, or is damaged; use another '
        f'--logdir or move the file away.')


# --- Main -------------------------------------------------------------------

def main(argv=None):
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  onednn = choose_onednn()
  config = parse_args(argv)
  import wrappers
  try:
    wrappers.check_task(config.task)
  except ValueError as error:
    raise SystemExit(f'error: {error}')
  config.logdir.mkdir(parents=True, exist_ok=True)
  has_gpu = setup_tensorflow(config)
  precision, note = resolve_precision(config.precision, has_gpu, cpu_has_bf16())
  print(json.dumps(config_dict(config), indent=2))
  print(onednn)
  if note:
    print(note)
  config.precision = precision
  (config.logdir / 'config.json').write_text(
      json.dumps(config_dict(config), indent=2) + '\n')
  run(config)


def run(config):
  import models
  import tools
  datadir = config.logdir / 'episodes'
  logger = tools.Logger(config.logdir)
  step = tools.count_steps(datadir, config.action_repeat)
  progress = Progress(
      config.steps, step, config.train_steps / config.train_every)
  pending = []
  train_envs = make_envs(config, lambda mode, ep: pending.append((mode, ep)), 'train')
  test_envs = make_envs(config, lambda mode, ep: pending.append((mode, ep)), 'test')

  def on_step():
    while pending:
      mode, episode = pending.pop(0)
      finish_episode(config, datadir, logger, progress, mode, episode)
    if agent:
      progress.track(agent.step, agent.train_seconds)
      progress.update(agent.step, agent.updates, agent.train_seconds)

  agent = None
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
    model = models.Dreamer(config, act_space.shape[0])
    sampler = tools.EpisodeSampler(
        datadir, config.batch_length, config.dataset_balance,
        rescan=config.train_steps, seed=config.seed)
    agent = Agent(config, model, tools.batches(sampler, config.batch_size),
                  logger, step, progress, rng)
    checkpoint = config.logdir / 'variables.pkl'
    if checkpoint.exists():
      print('Load checkpoint.', flush=True)
      load_checkpoint(checkpoint, model, agent, sampler)
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
      save_checkpoint(checkpoint, model, agent, sampler)
      progress.update(
          agent.step, agent.updates, agent.train_seconds, force=True)
  except KeyboardInterrupt:
    if agent is not None:
      save_checkpoint(config.logdir / 'variables.pkl', model, agent, sampler)
    raise SystemExit(
        'Interrupted. Episodes and the checkpoint are saved; run the same '
        'command to resume.')
  finally:
    for env in train_envs + test_envs:
      env.close()
    logger.close()


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
  if mode == 'test' and config.log_images:
    logger.video(f'{mode}/video', episode['image'][None])
  logger.write(step, prefix='sim')


if __name__ == '__main__':
  main(sys.argv[1:])
