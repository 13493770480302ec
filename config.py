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
import typing

import kept


class Flag(typing.NamedTuple):
  """One config key: its default, one line of help, and what is allowed
  (`choices`, or a numeric range from `low` to `high`, ends included)."""
  default: object
  help: str
  choices: tuple = None
  low: float = None
  high: float = None


# The order is the order of `--help`.
FLAGS = {
    # General.
    'logdir': Flag(
        pathlib.Path('.'),
        'folder of the run (required): config.json, episodes/, metrics.jsonl,'
        ' checkpoint.npz; a run there resumes'),
    'seed': Flag(
        0,
        'seeds Python, NumPy, TensorFlow, the sampler and the environments '
        '(the original never used it)'),
    'steps': Flag(
        int(5e6),
        'environment steps to train for, prefill included',
        low=1),
    'eval_every': Flag(
        int(1e4),
        'environment steps of collection between two evaluations (and '
        'checkpoints)',
        low=1),
    'log_every': Flag(
        int(1e3),
        'environment steps between two writes of the training metrics; 0: '
        'after every burst',
        low=0),
    'log_scalars': Flag(True, 'write the training metrics'),
    'log_images': Flag(
        True,
        'write GIFs of test episodes and of the open-loop predictions '
        '(agent/openl)'),
    'keep_checkpoints': Flag(
        '',
        '(ours) environment steps at which a copy of the checkpoint is kept '
        'as kept/checkpoint-STEP.npz, comma-separated (e.g. 5000,25000); a '
        'step already passed keeps the first checkpoint after it, under that'
        ' later step'),
    'gpu_growth': Flag(True, 'let TensorFlow allocate GPU memory as needed'),
    'precision': Flag(
        '16',
        '16: float16 on GPUs (float32 on a CPU, said at start), 32: float32, '
        'bf16: bfloat16 (ours)',
        choices=('16', '32', 'bf16')),
    'jit': Flag(False, '(ours) compile the update with XLA'),
    # Environment.
    'task': Flag(
        'dmc_walker_walk',
        'dmc_DOMAIN_TASK (DeepMind Control, e.g. dmc_cheetah_run), '
        'atari_GAME (e.g. atari_pong), gym_ID (Gymnasium, e.g. '
        'gym_HalfCheetah-v5) or MODULE:FUNCTION (a function returning a '
        'gymnasium.Env; PYTHONPATH=. for your own file)'),
    'envs': Flag(
        1,
        'environments of each kind (training, test) stepped at once',
        low=1),
    'parallel': Flag(
        'none',
        'none: step the environment workers one after another; process or '
        'thread: all at once',
        choices=('none', 'thread', 'process')),
    'action_repeat': Flag(
        2,
        'environment steps per agent action, rewards summed',
        low=1),
    'time_limit': Flag(1000, 'environment steps per episode at most', low=1),
    'prefill': Flag(
        5000,
        'environment steps of uniform random actions before training '
        '(episodes already on disk count)',
        low=0),
    'eval_noise': Flag(0.0, 'exploration amount while evaluating', low=0),
    'clip_rewards': Flag(
        'none',
        'none or tanh: what the rewards pass through before the model sees '
        'them',
        choices=('none', 'tanh')),
    'obs': Flag(
        'image',
        '(ours) what the model observes: image, proprio (the state arrays) or'
        ' both',
        choices=('image', 'proprio', 'both')),
    # Model.
    'deter_size': Flag(
        200,
        'size of the RSSM deterministic (GRU) state `deter`',
        low=1),
    'stoch_size': Flag(30, 'size of the RSSM stochastic state `stoch`', low=1),
    'num_units': Flag(400, 'units of every dense layer', low=1),
    'dense_act': Flag(
        'elu',
        'activation of the dense layers',
        choices=('elu', 'relu', 'swish', 'leaky_relu')),
    'cnn_act': Flag(
        'relu',
        'activation of the convolutions',
        choices=('elu', 'relu', 'swish', 'leaky_relu')),
    'cnn_depth': Flag(
        32,
        'filters of the first convolution (x2, x4, x8 after)',
        low=1),
    'pcont': Flag(
        False,
        'learn a discount head (pcont) and imagine with it, as the paper does'
        ' for Atari'),
    'free_nats': Flag(
        3.0,
        'the KL term counts only above this many nats (of its batch mean)',
        low=0),
    'kl_scale': Flag(1.0, 'weight of the KL term in the model loss', low=0),
    'pcont_scale': Flag(
        10.0,
        'weight of the pcont log-likelihood in the model loss',
        low=0),
    'weight_decay': Flag(
        0.0,
        'weights matching --weight_decay_pattern are multiplied by 1 - '
        'weight_decay before each update',
        low=0, high=1),
    'weight_decay_pattern': Flag(
        r'.*',
        'regular expression searched in OPTIMIZER/MODULE/LAYER/WEIGHT names, '
        'e.g. model/encoder/h1/kernel'),
    'latent_noise': Flag(
        'shared',
        '(ours) shared: one latent noise vector per step for the whole batch,'
        ' as the original; independent: one per sequence',
        choices=('shared', 'independent')),
    # Training.
    'batch_size': Flag(50, 'sequences per training batch', low=1),
    'batch_length': Flag(50, 'agent steps per training sequence', low=2),
    'train_every': Flag(
        1000,
        'environment steps between two training bursts; 0: at every agent '
        'step',
        low=0),
    'train_steps': Flag(100, 'updates per training burst', low=1),
    'pretrain': Flag(
        100,
        'updates of the first burst, after the prefill',
        low=0),
    'model_lr': Flag(6e-4, 'Adam learning rate of the world model', low=0),
    'value_lr': Flag(8e-5, 'Adam learning rate of the value head', low=0),
    'actor_lr': Flag(8e-5, 'Adam learning rate of the actor', low=0),
    'grad_clip': Flag(
        100.0,
        'gradients are clipped to this global norm (per optimizer); 0: not '
        'clipped',
        low=0),
    'dataset_balance': Flag(
        False,
        'start more training sequences near the end of episodes'),
    'replay_memory': Flag(
        0.0,
        '(ours) GB of episodes kept in memory, older ones read from disk when'
        ' sampled; 0: half the RAM',
        low=0),
    # Behavior.
    'discount': Flag(
        0.99,
        'discount of the imagined rewards (without pcont)',
        low=0, high=1),
    'disclam': Flag(
        0.95,
        'lambda of the lambda-returns that train actor and value',
        low=0, high=1),
    'horizon': Flag(15, 'imagined steps from every posterior state', low=1),
    'action_dist': Flag(
        'tanh_normal',
        'tanh_normal (continuous actions) or onehot (discrete, e.g. Atari)',
        choices=('tanh_normal', 'onehot')),
    'action_init_std': Flag(
        5.0,
        "initial scale of the actor's pre-tanh Normal",
        low=1e-06),
    'action_mean_scale': Flag(
        5.0,
        "(ours) bound of the actor's pre-tanh mean: loc = scale * tanh(m / "
        'scale) (the original fixes it at 5)',
        low=1e-06),
    'expl': Flag(
        'additive_gaussian',
        'exploration while collecting: additive_gaussian, completely_random '
        'or epsilon_greedy',
        choices=('additive_gaussian', 'completely_random', 'epsilon_greedy')),
    'expl_amount': Flag(
        0.3,
        'exploration amount: Gaussian scale or epsilon',
        low=0),
    'expl_decay': Flag(
        0.0,
        'environment steps over which the amount halves; 0: constant',
        low=0),
    'expl_min': Flag(0.0, 'lowest exploration amount when it decays', low=0),
}

# Keys the original does not have: their help starts with "(ours)".
OURS = tuple(key for key, flag in FLAGS.items()
             if flag.help.startswith('(ours)'))
# Of those, what the original's program (original_train.py) takes too.
HARNESS_KEYS = ('keep_checkpoints',)

# Allowed values by key, read from FLAGS (the networks check theirs).
CHOICES = {key: flag.choices for key, flag in FLAGS.items() if flag.choices}

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
  return dict(configs=[], **{key: flag.default for key, flag in FLAGS.items()})


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
  for key, flag in FLAGS.items():
    value = config[key]
    if flag.choices and str(value) not in flag.choices:
      raise ValueError(
          f'--{key} {value!r} is not allowed; choose one of: '
          f'{", ".join(flag.choices)}')
    if flag.low is not None and not _in_range(value, flag.low, flag.high):
      allowed = (f'at least {flag.low}' if flag.high is None
                 else f'in [{flag.low}, {flag.high}]')
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
  kept.parse(config['keep_checkpoints'])
  try:
    re.compile(config['weight_decay_pattern'])
  except re.error as error:
    raise ValueError(
        f'--weight_decay_pattern {config["weight_decay_pattern"]!r} is not '
        f'a regular expression: {error}')


def _in_range(value, low, high):
  return math.isfinite(value) and value >= low and (
      high is None or value <= high)


def describe_config(config):
  """One line: the flags that differ from the defaults (after --configs)
  and where all keys are saved."""
  now = config_dict(config)
  base = config_dict(make_config(configs=config.configs))
  changed = ' '.join(f'--{key} {value}' for key, value in now.items()
                     if key not in ('configs', 'logdir') and value != base[key])
  configs = f'--configs {" ".join(config.configs)} ' if config.configs else ''
  return (f'Config: {configs}{changed or "(defaults)"}; every key in '
          f'{config.logdir / "config.json"}')


def config_dict(config):
  """The config as JSON-ready values."""
  return {k: str(v) if isinstance(v, pathlib.Path) else v
          for k, v in vars(config).items()}


def original_flags(config, skip=('logdir', 'task', 'seed')):
  """The flags of the original's program (original_train.py: the
  original's define_config, and HARNESS_KEYS) that give `config`: `--KEY
  VALUE` for each key not at its default, but `skip`. ValueError (one
  line) for a key of ours that is set, which the original does not have,
  and for --precision bf16."""
  base = config_dict(make_config())
  flags = []
  for key, value in config_dict(config).items():
    if key in skip or key == 'configs' or value == base[key]:
      continue
    if key in OURS and key not in HARNESS_KEYS:
      raise ValueError(
          f'--{key} is ours: the original\'s program has no such flag '
          f'(leave it at its default, {base[key]!r}, for --original)')
    if key == 'precision' and value not in ('16', '32'):
      raise ValueError(
          f'--precision {value} is ours: the original\'s program takes 16 '
          f'or 32')
    flags += [f'--{key}', str(value)]
  return flags


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
  text, choices = FLAGS[key].help, FLAGS[key].choices
  if choices and not any(c in text for c in choices[1:]):
    text += f' ({"|".join(choices)})'
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
