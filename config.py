"""The config: every key with its default and one line of help, the named
overlays, the allowed values, the flag parser and its one-line errors, and
the checks of a logdir before a run starts or resumes.

    python dreamer.py --help        # this file's FLAGS, one line each

The defaults are the original's; keys the original does not have are marked
"(ours)" in their help (README, "Differences from the original").
"""

import argparse
import json
import math
import pathlib
import re
import sys
import types

# key: (default, help). The order is the order of `--help`.
FLAGS = {
    # General.
    'logdir': (pathlib.Path('.'), 'folder of the run (required): config.json, '
               'episodes/, metrics.jsonl, checkpoint.npz; a run there resumes'),
    'seed': (0, 'seeds Python, NumPy, TensorFlow, the sampler and the '
             'environments (the original never used it)'),
    'steps': (int(5e6), 'environment steps to train for, prefill included'),
    'eval_every': (int(1e4), 'environment steps of collection between two '
                   'evaluations (and checkpoints)'),
    'log_every': (int(1e3), 'environment steps between two writes of the '
                  'training metrics; 0: after every burst'),
    'log_scalars': (True, 'write the training metrics'),
    'log_images': (True, 'write GIFs of test episodes and of the open-loop '
                   'predictions (agent/openl)'),
    'gpu_growth': (True, 'let TensorFlow allocate GPU memory as needed'),
    'precision': ('16', '16: float16 on GPUs (float32 on a CPU, said at '
                  'start), 32: float32, bf16: bfloat16 (ours)'),
    'jit': (False, '(ours) compile the update with XLA'),
    # Environment.
    'task': ('dmc_walker_walk', 'dmc_DOMAIN_TASK (DeepMind Control, e.g. '
             'dmc_cheetah_run) or atari_GAME (e.g. atari_pong)'),
    'envs': (1, 'environments of each kind (training, test) stepped at once'),
    'parallel': ('none', 'none: step the environment workers one after '
                 'another; process or thread: all at once'),
    'action_repeat': (2, 'environment steps per agent action, rewards summed'),
    'time_limit': (1000, 'environment steps per episode at most'),
    'prefill': (5000, 'environment steps of uniform random actions before '
                'training (episodes already on disk count)'),
    'eval_noise': (0.0, 'exploration amount while evaluating'),
    'clip_rewards': ('none', 'none or tanh: what the rewards pass through '
                     'before the model sees them'),
    'obs': ('image', '(ours) what the model observes: image, proprio (the '
            'state arrays) or both'),
    # Model.
    'deter_size': (200, 'size of the RSSM deterministic (GRU) state `deter`'),
    'stoch_size': (30, 'size of the RSSM stochastic state `stoch`'),
    'num_units': (400, 'units of every dense layer'),
    'dense_act': ('elu', 'activation of the dense layers'),
    'cnn_act': ('relu', 'activation of the convolutions'),
    'cnn_depth': (32, 'filters of the first convolution (x2, x4, x8 after)'),
    'pcont': (False, 'learn a discount head (pcont) and imagine with it, '
              'as the paper does for Atari'),
    'free_nats': (3.0, 'the KL term counts only above this many nats (of '
                  'its batch mean)'),
    'kl_scale': (1.0, 'weight of the KL term in the model loss'),
    'pcont_scale': (10.0, 'weight of the pcont log-likelihood in the model '
                    'loss'),
    'weight_decay': (0.0, 'weights matching --weight_decay_pattern are '
                     'multiplied by 1 - weight_decay before each update'),
    'weight_decay_pattern': (r'.*', 'regular expression searched in '
                             'OPTIMIZER/MODULE/LAYER/WEIGHT names, e.g. '
                             'model/encoder/h1/kernel'),
    'latent_noise': ('shared', '(ours) shared: one latent noise vector per '
                     'step for the whole batch, as the original; '
                     'independent: one per sequence'),
    # Training.
    'batch_size': (50, 'sequences per training batch'),
    'batch_length': (50, 'agent steps per training sequence'),
    'train_every': (1000, 'environment steps between two training bursts; '
                    '0: at every agent step'),
    'train_steps': (100, 'updates per training burst'),
    'pretrain': (100, 'updates of the first burst, after the prefill'),
    'model_lr': (6e-4, 'Adam learning rate of the world model'),
    'value_lr': (8e-5, 'Adam learning rate of the value head'),
    'actor_lr': (8e-5, 'Adam learning rate of the actor'),
    'grad_clip': (100.0, 'gradients are clipped to this global norm (per '
                  'optimizer); 0: not clipped'),
    'dataset_balance': (False, 'start more training sequences near the end '
                        'of episodes'),
    'replay_memory': (0.0, '(ours) GB of episodes kept in memory, older ones '
                      'read from disk when sampled; 0: half the RAM'),
    # Behavior.
    'discount': (0.99, 'discount of the imagined rewards (without pcont)'),
    'disclam': (0.95, 'lambda of the lambda-returns that train actor and '
                'value'),
    'horizon': (15, 'imagined steps from every posterior state'),
    'action_dist': ('tanh_normal', 'tanh_normal (continuous actions) or '
                    'onehot (discrete, e.g. Atari)'),
    'action_init_std': (5.0, 'initial scale of the actor\'s pre-tanh Normal'),
    'expl': ('additive_gaussian', 'exploration while collecting: '
             'additive_gaussian, completely_random or epsilon_greedy'),
    'expl_amount': (0.3, 'exploration amount: Gaussian scale or epsilon'),
    'expl_decay': (0.0, 'environment steps over which the amount halves; '
                   '0: constant'),
    'expl_min': (0.0, 'lowest exploration amount when it decays'),
}

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

# Named overlays of the defaults, applied in order by `--configs NAME ...`
# before the other flags (as the original's later versions do).
CONFIGS = {
    'small': dict(cnn_depth=16, num_units=200, deter_size=100, batch_size=16),
    'tiny': dict(cnn_depth=4, deter_size=16, stoch_size=4, num_units=16,
                 batch_size=3, batch_length=6, horizon=5, precision='32'),
}
CONFIG_HELP = {
    'small': 'a network and batch that fit a 2-core CPU (README, "Results")',
    'tiny': 'the smallest networks: a smoke test in seconds, learns nothing',
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


def defaults():
  """Every config key with its default, and `configs` (the overlays)."""
  return dict(configs=[], **{key: value for key, (value, _) in FLAGS.items()})


def make_config(**overrides):
  """The defaults, the named `configs` overlays, then `overrides`; a
  ValueError names the first key that is unknown or not allowed."""
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


def config_dict(config):
  """The config as JSON-ready values."""
  return {k: str(v) if isinstance(v, pathlib.Path) else v
          for k, v in vars(config).items()}


# --- Flags ------------------------------------------------------------------

def fail(message, prog='dreamer.py'):
  """Ends the program with one line naming the problem, and exit code 2.

  Characters that are not printable (line breaks among them, also in the
  user's input) are escaped, so the message stays one line.
  """
  line = ''.join(
      char if char.isprintable() else repr(char)[1:-1] for char in str(message))
  print(f'{prog}: error: {line}', file=sys.stderr, flush=True)
  raise SystemExit(2)


class _Formatter(argparse.HelpFormatter):

  def __init__(self, prog, **kwargs):
    super().__init__(prog, max_help_position=30, **kwargs)


class Parser(argparse.ArgumentParser):
  """argparse whose errors are one line (see `fail`), without the usage,
  and whose help gives each flag one line on a wide terminal."""

  def __init__(self, prog='dreamer.py', **kwargs):
    kwargs.setdefault('formatter_class', _Formatter)
    super().__init__(prog=prog, allow_abbrev=False, **kwargs)

  def error(self, message):
    fail(f'{message} (python {self.prog} --help lists the flags)', self.prog)


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


def _metavar(default):
  if isinstance(default, pathlib.Path):
    return 'PATH'
  return type(default).__name__.upper()


def _flag_help(key, value):
  """One line: the help, the allowed values and the default."""
  text = FLAGS[key][1]
  if key in CHOICES and not any(c in text for c in CHOICES[key][1:]):
    text += f' ({"|".join(CHOICES[key])})'
  if key != 'logdir':
    text += f' [default: {value}]'
  return text.replace('%', '%%')


def parse_args(argv=None):
  """Parses `--key value` flags; unknown flags and bad values `fail`.

  `--configs NAME ...` first overlays named configs on the defaults; the
  other flags then override single keys.
  """
  parser = Parser(
      description='Dreamer (Hafner et al., ICLR 2020) on DeepMind Control '
      'and Atari. Flags are the original\'s; booleans are True or False.')
  first = Parser(add_help=False)
  first.add_argument('--configs', nargs='+', default=[])
  names = first.parse_known_args(argv)[0].configs
  try:
    base = vars(make_config(configs=names))
  except ValueError as error:
    parser.error(str(error))
  add_config_flags(parser, base)
  args = parser.parse_args(argv)
  try:
    return make_config(**vars(args))
  except ValueError as error:
    parser.error(str(error))


def add_config_flags(parser, base, skip=()):
  """Adds `--configs` and a `--KEY` flag for every config key but `skip`,
  with the defaults of `base` (a config's values); `logdir` is required."""
  overlays = '; '.join(f'{name}: {text}' for name, text in CONFIG_HELP.items())
  parser.add_argument(
      '--configs', nargs='+', default=list(base['configs']), metavar='NAME',
      help=f'named overlays of the defaults, before the other flags: '
      f'{overlays}')
  for key, value in base.items():
    if key != 'configs' and key not in skip:
      parser.add_argument(
          f'--{key}', type=_parser_type(value), default=value,
          required=(key == 'logdir'), metavar=_metavar(value),
          help=_flag_help(key, value))


# --- The logdir -------------------------------------------------------------

def saved_config(logdir):
  """The config a previous run saved in `logdir`, or None."""
  try:
    return json.loads((logdir / 'config.json').read_text())
  except (OSError, ValueError):
    return None


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
