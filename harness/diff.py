"""Compares this port with the original Dreamer, number by number.

    python diff_original.py --original PATH [--force] [--config small|full]
        [--variant default|pcont] [--precision 32|16|bf16] [--updates N]
        [--seed S] [--write-reference DIR]

PATH is a checkout of danijar/dreamer; its files are checked by git blob
hash (harness.compat.check_checkout) and an unknown version is refused
unless --force. Both programs get the same weights (our modules'
initialisation at the config, seeded by --seed), the same batch and the same
recorded noise for every random draw (synthetic.py). The original runs in
subprocesses (harness/modules.py, harness/step.py: it needs Keras 2
layers, we Keras 3), ours in this process. One table follows: module
outputs, losses and metrics, intermediates, gradient norms, every
variable's gradient, and with --updates N the losses and weights after
each update; each row with its largest |ours − original| relative to
max|original| and PASS/FAIL against the tolerance of
tests/test_reference_train.py (TOLERANCES below). The last line is a JSON
summary. Exit status 0 within tolerance, 1 outside it, 2 on bad input.

--config small is the golden one (cnn_depth 8, stoch 10, deter 40, units
50, batch 3 × 6, horizon 15, action size 6); full is the default config
(cnn_depth 32, stoch 30, deter 200, units 400, horizon 15) with a batch of
FULL_BATCH sequences instead of 50 × 50 (time).

--precision 16 or bf16 runs each program at that precision and at float32
and prints each one's cosine of its low-precision gradient with its own
float32 one, per optimizer, and cos(ours, original) at the low precision.
A row then passes when ours and the original differ by no more than their
own low-precision errors explain (TRIANGLE, LOW below).
The original has no bfloat16 flag: its Keras policy is set to
mixed_bfloat16 from outside. Its float16 image_loss and model_loss overflow
to inf on a CPU; those rows and the non-finite gradient entries are
reported as such and compared only where finite.

--write-reference DIR also writes the golden files the tests read (see
write_reference); the step's variant flag is then ignored: both run.
"""

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time
import types

import devices

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMALL = dict(cnn_depth=8, stoch_size=10, deter_size=40, num_units=50,
             batch_size=3, batch_length=6, horizon=15)
FULL_BATCH = dict(batch_size=2, batch_length=8)
FULL = dict(cnn_depth=32, stoch_size=30, deter_size=200, num_units=400,
            horizon=15, **FULL_BATCH)
ACTION_SIZE = 6
VARIANTS = {'default': dict(pcont=False, free_nats=3.0, kl_scale=1.0),
            'pcont': dict(pcont=True, free_nats=0.0, kl_scale=1.0)}
# Flags of the original the step depends on; ours have the same names.
STEP_KEYS = (
    'cnn_depth', 'stoch_size', 'deter_size', 'num_units', 'batch_size',
    'batch_length', 'horizon', 'pcont', 'free_nats', 'kl_scale',
    'pcont_scale', 'discount', 'disclam', 'action_init_std', 'grad_clip',
    'action_dist', 'model_lr', 'actor_lr', 'value_lr', 'weight_decay')
COUNT_CASES = {f'full_action_dim_{a}': dict(
    cnn_depth=32, stoch_size=30, deter_size=200, num_units=400, action_dim=a)
    for a in (1, 6, 18)}
MODULE_OUTPUTS = (
    'embed', 'prior_mean', 'prior_std', 'prior_deter', 'post_mean',
    'post_std', 'post_deter', 'decoder_mean', 'reward_mean', 'value_mean',
    'pcont_mean', 'actor_loc', 'actor_scale', 'actor_logprob', 'onehot_probs',
    'lr_returns', 'lr_returns_zero_bootstrap', 'tanh_log_det_jacobian')
SCALARS = (
    'model_loss', 'image_loss', 'reward_loss', 'pcont_loss', 'div', 'kl',
    'actor_loss', 'value_loss', 'prior_ent', 'post_ent')
NORMS = ('model_grad_norm', 'actor_grad_norm', 'value_grad_norm')
INTERMEDIATES = (
    'post_mean', 'post_std', 'post_stoch', 'post_deter', 'prior_mean',
    'prior_std', 'imag_feat', 'imag_action', 'imag_reward', 'imag_value',
    'imag_pcont', 'returns')
OPTIMIZERS = ('model', 'actor', 'value')
# Tolerances. float32 (tests/test_reference_train.py): values
# |d| ≤ 1e-4·|ref| + 1e-5; gradients per variable |d| ≤ 1e-3·|ref| +
# 1e-4·max|ref| + 1e-9. After K updates (tests/test_reference_updates.py,
# which explains them): weights per variable ‖d‖ ≤ WEIGHT_L2·‖w_K − w_0‖
# and max|d| ≤ WEIGHT_MAX·max|w_K − w_0| (the original's change); losses
# |d| ≤ AFTER_RTOL·|ref| + AFTER_ATOL. Low precision, per row, over the
# entries where the original is finite: ‖ours − orig‖ ≤ TRIANGLE·(‖ours −
# ours32‖ + ‖orig − orig32‖) + LOW·‖orig‖: the two may differ by what
# their own low-precision errors explain (ours32 and orig32 agree to the
# float32 tolerance), and by LOW of the original beside. At bfloat16 the
# original's own error dominates: its float16/bfloat16 world-model
# gradient is 0.968 (cosine) from its float32 one at the small config,
# ours 0.9998 (ours computes the losses in float32).
WEIGHT_L2 = 5e-2
WEIGHT_MAX = 0.5
AFTER_RTOL, AFTER_ATOL = 5e-3, 1e-5
LOW = {'16': 1e-2, 'bf16': 2e-2}
TRIANGLE = 1.5


class BadInput(Exception):
  """Bad flags or paths: one line on stderr, exit status 2."""


class Parser(argparse.ArgumentParser):

  def error(self, message):
    raise BadInput(message)


def parse(argv):
  parser = Parser(prog='diff_original.py', description=__doc__.split('\n')[0])
  parser.add_argument('--original', required=True,
                      help='checkout of danijar/dreamer')
  parser.add_argument('--force', action='store_true',
                      help='run a checkout whose files are not known')
  parser.add_argument('--config', choices=('small', 'full'), default='small')
  parser.add_argument('--variant', choices=tuple(VARIANTS), default='default')
  parser.add_argument('--precision', choices=('32', '16', 'bf16'),
                      default='32')
  parser.add_argument('--updates', type=int, default=0)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--write-reference', type=pathlib.Path, default=None)
  args = parser.parse_args(argv)
  if args.updates < 0:
    raise BadInput(f'--updates {args.updates}: not a count')
  path = pathlib.Path(args.original)
  if not path.is_dir():
    raise BadInput(f'--original {path}: no such directory')
  if args.write_reference and (args.config != 'small' or
                               args.precision != '32'):
    raise BadInput('--write-reference writes the small config at float32 '
                   '(and its own float16 step): drop --config/--precision')
  return args


# --- inputs ---------------------------------------------------------------

def our_config(size, variant, precision):
  from config import make_config
  return make_config(precision=precision, **size, **VARIANTS[variant])


def make_weights(size, seed):
  """Our modules' initialisation at `size`, seeded: every module of the
  pcont variant plus a one-hot actor, as {MODULE/LAYER/WEIGHT: array}."""
  import keras
  import models
  import networks
  keras.utils.set_random_seed(seed)
  config = our_config(size, 'pcont', '32')
  agent = models.Dreamer(config, ACTION_SIZE)
  weights = networks.export_weights(agent.modules)
  onehot = networks.ActionDecoder(
      agent.rssm.feat_size, ACTION_SIZE, 4, config.num_units, 'onehot',
      name='actor_onehot')
  weights.update(networks.export_weights({'actor_onehot': onehot}))
  return weights


def make_batch(config, seed):
  import synthetic
  batch = synthetic.random_batch(config, ACTION_SIZE, seed)
  batch['discount'][1 % config.batch_size, -1] = 0.0  # a terminal step
  return batch


def make_module_inputs(size, batch, seed):
  """Inputs of the module-by-module comparison (harness/modules.py)."""
  import numpy as np
  rng = np.random.default_rng(seed + 1)
  b, t, s, d = (size['batch_size'], size['batch_length'], size['stoch_size'],
                size['deter_size'])
  normal = lambda *shape: rng.normal(size=shape).astype(np.float32)
  io = {'image_uint8': batch['image'],
        'image': (batch['image'].astype(np.float32) / 255 - 0.5).astype(
            np.float32),
        'prev_mean': normal(b, s), 'prev_std': np.exp(
            0.3 * normal(b, s)).astype(np.float32),
        'prev_stoch': normal(b, s), 'prev_deter': np.tanh(normal(b, d)),
        'prev_action': rng.uniform(-1, 1, (b, ACTION_SIZE)).astype(np.float32),
        'feat': normal(b, t, s + d),
        'actions': rng.uniform(-0.99, 0.99, (b, t, ACTION_SIZE)).astype(
            np.float32),
        'lr_reward': normal(15, 7), 'lr_value': normal(15, 7),
        'lr_pcont': np.full((15, 7), 0.99, np.float32),
        'lr_bootstrap': normal(7), 'lr_lambda': np.float32(0.95),
        'tanh_x': np.linspace(-6, 6, 25).astype(np.float32)}
  io['lr_pcont'][:, 3] = rng.uniform(0, 1, 15).astype(np.float32)
  return io


# --- the original, in subprocesses ----------------------------------------

def start(module, original, request, folder, name, force):
  """Starts `python -m harness.MODULE` on `request` (from the repository's
  root, so that it imports the harness); returns (process, output path,
  log)."""
  import numpy as np
  folder = pathlib.Path(folder)
  np.savez(folder / f'{name}_in.npz', **request)
  out = folder / f'{name}_out.npz'
  log = open(folder / f'{name}.log', 'w')
  command = [sys.executable, '-m', f'harness.{module}',
             '--original', str(pathlib.Path(original).resolve()),
             '--request', str(folder / f'{name}_in.npz'), '--out', str(out)]
  if force:
    command.append('--force')
  process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                             cwd=ROOT)
  return process, out, folder / f'{name}.log'


def finish(job):
  import numpy as np
  process, out, log = job
  process.wait()
  if process.returncode != 0:
    text = pathlib.Path(log).read_text()
    raise RuntimeError(f'the original failed:\n{text[-3000:]}')
  with np.load(out) as data:
    return dict(data)


def step_request(config, weights, batch, noise, updates, policy=None):
  import numpy as np
  overrides = {k: getattr(config, k) for k in STEP_KEYS}
  overrides['precision'] = 16 if config.precision == '16' else 32
  request = {'config': np.array(json.dumps(overrides)),
             'updates': np.array(updates)}
  request.update(batch)
  request.update(noise)
  request.update({f'weights/{k}': v for k, v in weights.items()})
  if policy:
    request['policy'] = np.array(policy)
  return request


def modules_request(size, weights, io, counts=False):
  import numpy as np
  config = {k: size[k] for k in ('cnn_depth', 'stoch_size', 'deter_size',
                                 'num_units')}
  request = {'config': np.array(json.dumps(dict(config,
                                                action_size=ACTION_SIZE)))}
  request.update({k: v for k, v in io.items() if k != 'image_uint8'})
  request.update({f'weights/{k}': v for k, v in weights.items()})
  if counts:
    request['counts'] = np.array(json.dumps(COUNT_CASES))
  return request


# --- ours -------------------------------------------------------------------

def our_modules(size):
  """Our standalone modules at `size` (float32), named as the weights."""
  import networks
  encoder = networks.ConvEncoder(size['cnn_depth'])
  rssm = networks.RSSM(ACTION_SIZE, encoder.embed_size, size['stoch_size'],
                       size['deter_size'], size['deter_size'])
  feat, units = rssm.feat_size, size['num_units']
  return {
      'encoder': encoder, 'rssm': rssm,
      'decoder': networks.ConvDecoder(feat, size['cnn_depth']),
      'reward': networks.DenseDecoder(feat, (), 2, units, name='reward'),
      'value': networks.DenseDecoder(feat, (), 3, units, name='value'),
      'pcont': networks.DenseDecoder(feat, (), 3, units, 'binary',
                                     name='pcont'),
      'actor': networks.ActionDecoder(feat, ACTION_SIZE, 4, units),
      'actor_onehot': networks.ActionDecoder(
          feat, ACTION_SIZE, 4, units, 'onehot', name='actor_onehot')}


def our_module_outputs(size, weights, io):
  import numpy as np
  import networks
  import tools
  m = our_modules(size)
  networks.load_weights(m, weights)
  prev = {k: io[f'prev_{k}'] for k in ('mean', 'std', 'stoch', 'deter')}
  prior = m['rssm'].img_step(prev, io['prev_action'])
  embed = m['encoder'](io['image'])
  post, _ = m['rssm'].obs_step(prev, io['prev_action'], embed[:, 0])
  loc, scale = m['actor'].tanh_normal_params(io['feat'])
  args = (io['lr_reward'], io['lr_value'], io['lr_pcont'])
  out = {
      'embed': embed,
      'decoder_mean': m['decoder'](io['feat']).mean(),
      'reward_mean': m['reward'](io['feat']).mean(),
      'value_mean': m['value'](io['feat']).mean(),
      'pcont_mean': m['pcont'](io['feat']).mean(),
      'actor_loc': loc, 'actor_scale': scale,
      'actor_logprob': m['actor'](io['feat']).log_prob(io['actions']),
      'onehot_probs': m['actor_onehot'](io['feat']).probs_parameter(),
      'lr_returns': tools.lambda_return(
          *args, io['lr_bootstrap'], io['lr_lambda']),
      'lr_returns_zero_bootstrap': tools.lambda_return(
          *args, None, io['lr_lambda']),
      'tanh_log_det_jacobian': networks.TanhBijector().forward_log_det_jacobian(
          io['tanh_x'], event_ndims=0)}
  for key in ('mean', 'std', 'deter'):
    out[f'prior_{key}'] = prior[key]
    out[f'post_{key}'] = post[key]
  return {k: np.asarray(v, np.float32) for k, v in out.items()}


def our_step(config, weights, batch, noise, updates):
  """Our step as harness/step.py reports it: metrics, intermediates and
  grad/LOSS/NAME without applying, then after/K/... for K = 1..updates."""
  import numpy as np
  import models
  import networks
  agent = models.Dreamer(config, ACTION_SIZE)
  networks.load_weights(agent.modules, weights)
  metrics, grads, outs = agent.gradients(batch, noise)
  result = {k: np.asarray(v, np.float32) for k, v in {**metrics, **outs}.items()}
  for opt in agent.optimizers:
    for name, grad in zip(opt.names, grads[opt.name]):
      result[f'grad/{opt.name}/{name}'] = np.asarray(grad, np.float32)
  for k in range(1, updates + 1):
    metrics = agent.train(batch, noise)
    result.update({f'after/{k}/{n}': np.asarray(v, np.float32)
                   for n, v in metrics.items()})
    result.update({f'after/{k}/{n}': v for n, v in
                   networks.export_weights(agent.modules).items()})
  return result


# --- comparing --------------------------------------------------------------

def deviation(ours, ref, kind, initial=None, ours32=None, ref32=None):
  """(largest |d| / max|ref|, largest |d| / bound): the row's figure and its
  ratio to the tolerance (≤ 1 passes). Non-finite reference entries are
  left out (they are counted by the caller)."""
  import numpy as np
  ours = np.asarray(ours, np.float64)
  ref = np.asarray(ref, np.float64)
  if ours.shape != ref.shape:
    return float('inf'), float('inf')
  keep = np.isfinite(ref)
  if not keep.any():
    return float('nan'), 0.0
  o, r = ours[keep], ref[keep]
  d = np.abs(o - r)
  d[~np.isfinite(d)] = np.inf
  scale = np.abs(r).max()
  if kind == 'grad':
    bound = 1e-3 * np.abs(r) + 1e-4 * scale + 1e-9
  elif kind == 'weight':  # relative to the change the updates made
    step = r - np.asarray(initial, np.float64)[keep]
    scale = np.abs(step).max()
    l2 = np.linalg.norm(o - r) / (WEIGHT_L2 * np.linalg.norm(step) + 1e-12)
    ratio = max(l2, float(d.max() / (WEIGHT_MAX * scale + 1e-12)))
    return (float(d.max() / scale) if scale else float(d.max())), ratio
  elif kind == 'after':
    bound = AFTER_RTOL * np.abs(r) + AFTER_ATOL
  elif kind in LOW:
    own = 0.0
    if ours32 is not None and ref32 is not None:
      own = (np.linalg.norm(o - np.asarray(ours32, np.float64)[keep]) +
             np.linalg.norm(r - np.asarray(ref32, np.float64)[keep]))
    bound = TRIANGLE * own + LOW[kind] * np.linalg.norm(r) + 1e-12
    ratio = np.linalg.norm(o - r) / bound
    if not np.isfinite(o).all():
      ratio = float('inf')
    return (float(d.max() / scale) if scale else float(d.max())), float(ratio)
  else:
    bound = 1e-4 * np.abs(r) + 1e-5
  rel = float(d.max() / scale) if scale else float(d.max())
  return rel, float((d / bound).max())


def cosine(a, b):
  """cos of two lists of arrays, over the entries finite in both; and the
  number of entries left out."""
  import numpy as np
  a = np.concatenate([np.ravel(x).astype(np.float64) for x in a])
  b = np.concatenate([np.ravel(x).astype(np.float64) for x in b])
  keep = np.isfinite(a) & np.isfinite(b)
  a, b = a[keep], b[keep]
  norm = np.linalg.norm(a) * np.linalg.norm(b)
  return (float(a @ b / norm) if norm else float('nan')), int((~keep).sum())


class Table:

  def __init__(self):
    self.rows = []

  def add(self, category, name, ours, ref, kind='value', initial=None,
          note='', ours32=None, ref32=None):
    import numpy as np
    if ref is None or ours is None:
      missing = 'original' if ref is None else 'ours'
      self.rows.append(dict(category=category, name=name, rel=float('inf'),
                            ratio=float('inf'), ok=False, skipped=False,
                            note=f'missing on {missing} side'))
      return
    rel, ratio = deviation(ours, ref, kind, initial, ours32, ref32)
    size = np.size(ref)
    bad = int(size - np.isfinite(np.asarray(ref, np.float64)).sum())
    mine = int(np.size(ours) - np.isfinite(np.asarray(ours, np.float64)).sum())
    notes = [note] if note else []
    if bad:
      notes.append(f'original non-finite at {bad}/{size} entries'
                   f' ({"compared where finite" if bad < size else "skipped"})')
    if mine:
      notes.append(f'ours non-finite at {mine}/{np.size(ours)}')
    self.rows.append(dict(category=category, name=name, rel=rel, ratio=ratio,
                          ok=bool(ratio <= 1.0), skipped=bad == size,
                          note='; '.join(notes)))

  def print(self, out=sys.stdout):
    width = max(len(r['name']) for r in self.rows)
    cat = max(len(r['category']) for r in self.rows)
    print(f'{"category":<{cat}}  {"row":<{width}}  {"max|d|/max|orig|":>16}'
          f'  {"d/tol":>8}  result   (weight rows: max|d| / max|w_K - w_0|'
          f' of the original)', file=out)
    for r in self.rows:
      print(f'{r["category"]:<{cat}}  {r["name"]:<{width}}  {r["rel"]:16.3e}'
            f'  {r["ratio"]:8.3f}  '
            f'{"SKIP" if r["skipped"] else "PASS" if r["ok"] else "FAIL"}'
            f'{"  " + r["note"] if r["note"] else ""}', file=out)

  def summary(self):
    worst = max(self.rows, key=lambda r: (
        r['ratio'] if r['ratio'] == r['ratio'] else float('inf')))
    by_category = {}
    for r in self.rows:
      entry = by_category.setdefault(r['category'], {'rows': 0, 'max_rel': 0.0})
      entry['rows'] += 1
      if r['rel'] == r['rel']:
        entry['max_rel'] = max(entry['max_rel'], r['rel'])
    return {'rows': len(self.rows),
            'passed': sum(r['ok'] and not r['skipped'] for r in self.rows),
            'skipped': sum(r['skipped'] for r in self.rows),
            'failed': sum(not r['ok'] for r in self.rows),
            'worst': {k: worst[k] for k in ('category', 'name', 'rel',
                                            'ratio')},
            'max_rel_by_category': by_category,
            'pass': all(r['ok'] for r in self.rows)}


def step_rows(table, variant, ours, ref, kind=None, weights=None, names=(),
              ours32=None, ref32=None):
  """Rows of one step (and its updates) of `variant`; at low precision
  `kind` ('16', 'bf16') with both programs' float32 step."""
  tag = f'{variant}' + (f' {kind}' if kind else '')
  value_kind = kind or 'value'
  ours32, ref32 = ours32 or {}, ref32 or {}
  add = lambda category, key, row, k: table.add(
      category, row, ours.get(key), ref.get(key), k,
      ours32=ours32.get(key), ref32=ref32.get(key))
  for key in SCALARS:
    if key in ref or key in ours:
      add(f'loss {tag}', key, key, value_kind)
  for key in NORMS:
    add(f'norm {tag}', key, key, value_kind)
  for key in INTERMEDIATES:
    add(f'intermediate {tag}', key, key, value_kind)
  for key in sorted(k for k in ref if k.startswith('grad/')):
    add(f'gradient {tag}', key, key[len('grad/'):], kind or 'grad')
  extra = sorted(k for k in ours if k.startswith('grad/') and k not in ref)
  for key in extra:
    table.add(f'gradient {tag}', key[len('grad/'):], ours[key], None)
  updates = sorted({int(k.split('/')[1]) for k in ref if
                    k.startswith('after/')})
  for k in updates:
    for key in SCALARS + NORMS:
      name = f'after/{k}/{key}'
      if name in ref:
        table.add(f'after {k} {tag}', key, ours.get(name), ref[name], 'after')
    for name in names:
      key = f'after/{k}/{name}'
      table.add(f'after {k} {tag}', f'weight {name}', ours.get(key),
                ref.get(key), 'weight', weights[name])


# --- the run ------------------------------------------------------------------

def run(args):
  """The whole comparison: the checkout checked, the inputs made, the
  original launched and ours computed meanwhile, the table (and at low
  precision the cosines), the golden files when asked, the JSON summary.
  Returns the exit status: 0 within tolerance, 1 outside it."""
  commit = check_original(args)
  clock = time.time()
  announce(args)
  inputs = make_inputs(args)
  with tempfile.TemporaryDirectory(prefix='diff-original-') as folder:
    jobs = launch(args, inputs, folder)
    ours = compute_ours(args, inputs)
    theirs = {name: finish(job) for name, job in jobs.items()}
  table = make_table(args, inputs, ours, theirs)
  table.print()
  summary = table.summary()
  if args.precision != '32':
    summary['cosines'] = print_cosines(args, inputs.variants, ours, theirs)
    print_nonfinite(args, inputs.variants, ours, theirs)
  if args.write_reference:
    write_reference(args, inputs.size, inputs.weights, inputs.batch,
                    inputs.io, inputs.noises, theirs, commit)
  summary.update(commit=commit, config=args.config, precision=args.precision,
                 variants=inputs.variants, updates=args.updates,
                 seed=args.seed, seconds=round(time.time() - clock, 1),
                 original_seconds={k: json.loads(str(v['seconds']))
                                   for k, v in theirs.items()
                                   if 'seconds' in v})
  print(json.dumps(summary, sort_keys=True))
  return 0 if summary['pass'] else 1


def check_original(args):
  """The checkout's commit (None when unknown and --force), printed; raises
  BadInput when unknown without --force. Imports TensorFlow, quietly."""
  from harness import compat
  try:
    commit = compat.check_checkout(args.original, args.force)
  except ValueError as error:
    raise BadInput(str(error)) from None
  with devices.quiet_start():  # TensorFlow's start-up lines, filtered
    import tensorflow  # noqa: F401
  print(f'original: {args.original} is commit {commit}' if commit else
        f'original: {args.original} is not a known commit; run anyway '
        f'(--force)')
  return commit


def announce(args):
  """Prints how the run departs from the defaults it names: the full
  config's smaller batch, the original's bfloat16 set from outside."""
  if args.config == 'full':
    print(f'full config: batch {FULL_BATCH["batch_size"]} × '
          f'{FULL_BATCH["batch_length"]} instead of 50 × 50 (time)')
  if args.precision == 'bf16':
    print('bfloat16: the original has no such flag; its Keras policy is set '
          'to mixed_bfloat16 from outside (its precision flag stays 32; the '
          'batch\'s floats are cast to bfloat16 before its preprocess, as its '
          'Collect stores them in the precision\'s type)')


def make_inputs(args):
  """What both programs get: size, variants (both with --write-reference),
  weights, batch, module inputs `io`, and per variant its config at the
  asked precision and its recorded noise."""
  import synthetic
  size = dict(SMALL if args.config == 'small' else FULL)
  variants = list(VARIANTS) if args.write_reference else [args.variant]
  weights = make_weights(size, args.seed)
  batch = make_batch(our_config(size, 'default', '32'), args.seed)
  configs = {v: our_config(size, v, args.precision) for v in variants}
  return types.SimpleNamespace(
      size=size, variants=variants, weights=weights, batch=batch,
      io=make_module_inputs(size, batch, args.seed), configs=configs,
      noises={v: synthetic.recorded_noise(configs[v], ACTION_SIZE, args.seed)
              for v in variants})


def launch(args, inputs, folder):
  """Starts the original's processes in `folder`: its modules, its step of
  each variant (and at low precision the float32 step beside), and with
  --write-reference the updates and the float16 step; {name: job}."""
  size, weights, batch = inputs.size, inputs.weights, inputs.batch
  jobs = {'modules': start(
      'modules', args.original,
      modules_request(size, weights, inputs.io, bool(args.write_reference)),
      folder, 'modules', args.force)}
  policy = 'mixed_bfloat16' if args.precision == 'bf16' else None
  for variant in inputs.variants:
    noise = inputs.noises[variant]
    jobs[variant] = start(
        'step', args.original,
        step_request(inputs.configs[variant], weights, batch, noise,
                     args.updates, policy), folder, variant, args.force)
    if args.precision != '32':
      jobs[f'{variant} 32'] = start(
          'step', args.original,
          step_request(our_config(size, variant, '32'), weights, batch,
                       noise, 0), folder, f'{variant}_32', args.force)
  if args.write_reference:  # 10 updates and a float16 step (pcont: all on)
    reference_jobs(jobs, size, weights, batch, inputs.noises, args, folder)
  return jobs


def compute_ours(args, inputs):
  """Ours on the same inputs, keyed as launch's jobs (but the reference
  ones): 'modules', each variant, and at low precision 'VARIANT 32'."""
  ours = {'modules': our_module_outputs(inputs.size, inputs.weights,
                                        inputs.io)}
  for variant in inputs.variants:
    noise = inputs.noises[variant]
    ours[variant] = our_step(inputs.configs[variant], inputs.weights,
                             inputs.batch, noise, args.updates)
    if args.precision != '32':
      ours[f'{variant} 32'] = our_step(
          our_config(inputs.size, variant, '32'), inputs.weights,
          inputs.batch, noise, 0)
  return ours


def make_table(args, inputs, ours, theirs):
  """The Table of every row: module outputs, then each variant's step."""
  table = Table()
  for key in MODULE_OUTPUTS:
    table.add('module', key, ours['modules'][key], theirs['modules'][key])
  low = args.precision != '32'
  for variant in inputs.variants:
    step_rows(table, variant, ours[variant], theirs[variant],
              args.precision if low else None, inputs.weights,
              [n for n in sorted(inputs.weights) if any(
                  f'grad/{o}/{n}' in theirs[variant] for o in OPTIMIZERS)],
              ours.get(f'{variant} 32'), theirs.get(f'{variant} 32'))
  return table


def print_cosines(args, variants, ours, theirs):
  """Prints, per variant and optimizer, the cosines of the low-precision
  gradient with each program's own float32 one and between the programs;
  returns them as {VARIANT/OPTIMIZER: {...}} for the summary."""
  cosines = {}
  print(f'\ncosines of the {args.precision} gradient, per optimizer '
        f'(over entries finite in both)')
  print(f'{"variant":<8} {"optimizer":<9} {"ours vs ours32":>15} '
        f'{"orig vs orig32":>15} {"ours vs orig":>13}  note')
  for variant in variants:
    for opt in OPTIMIZERS:
      keys = sorted(k for k in theirs[variant]
                    if k.startswith(f'grad/{opt}/'))
      pick = lambda d: [d[k] for k in keys]
      c_ours = cosine(pick(ours[variant]), pick(ours[f'{variant} 32']))
      c_orig = cosine(pick(theirs[variant]), pick(theirs[f'{variant} 32']))
      c_both = cosine(pick(ours[variant]), pick(theirs[variant]))
      note = ''
      if c_orig[1] or c_both[1]:
        note = (f'original non-finite at {max(c_orig[1], c_both[1])} '
                f'entries, left out')
      print(f'{variant:<8} {opt:<9} {c_ours[0]:15.7f} {c_orig[0]:15.7f} '
            f'{c_both[0]:13.7f}  {note}')
      cosines[f'{variant}/{opt}'] = {
          'ours_vs_ours32': c_ours[0], 'orig_vs_orig32': c_orig[0],
          'ours_vs_orig': c_both[0], 'nonfinite_left_out': c_orig[1]}
  return cosines


def print_nonfinite(args, variants, ours, theirs):
  """Prints, per variant, the original's losses that came out non-finite
  at the low precision, beside ours."""
  import numpy as np
  for variant in variants:
    inf = [k for k in SCALARS if k in theirs[variant]
           and not np.isfinite(theirs[variant][k])]
    if inf:
      print(f'{variant}: the original\'s {", ".join(inf)} at precision '
            f'{args.precision} are non-finite (float16 overflow of the '
            f'summed image log-likelihood on CPU); ours: ' + ', '.join(
                f'{k} {float(ours[variant][k]):.6g}' for k in inf))


REFERENCE_UPDATES = 10


def reference_jobs(jobs, size, weights, batch, noises, args, folder):
  """Adds to `jobs` what only the golden files need: REFERENCE_UPDATES
  updates and a float16 step, both of the pcont variant."""
  jobs['updates'] = start(
      'step', args.original,
      step_request(our_config(size, 'pcont', '32'), weights, batch,
                   noises['pcont'], REFERENCE_UPDATES), folder, 'updates',
      args.force)
  jobs['float16'] = start(
      'step', args.original,
      step_request(our_config(size, 'pcont', '16'), weights, batch,
                   noises['pcont'], 0), folder, 'float16', args.force)


def write_reference(args, size, weights, batch, io, noises, theirs, commit):
  """Writes the golden files into --write-reference (reference_files)."""
  from harness import reference_files
  reference_files.write(
      args.write_reference, size=size, action_size=ACTION_SIZE,
      weights=weights, batch=batch, io=io, noises=noises, theirs=theirs,
      commit=commit, command=reference_command(args),
      machine=f'{platform.machine()} {platform.processor() or ""} '
              f'{os.cpu_count()} cores, {platform.system()} '
              f'{platform.release()}, Python {platform.python_version()}',
      configs={v: our_config(size, v, '32') for v in VARIANTS},
      updates=REFERENCE_UPDATES, count_cases=COUNT_CASES)
  print(f'wrote the reference files into {args.write_reference}')


def reference_command(args):
  """The command that wrote the golden files, as their README records it:
  the checkout as PATH_TO_DANIJAR_DREAMER, the folder relative to the
  repository (DIR when outside it): no path of the machine that ran it."""
  folder = pathlib.Path(args.write_reference).resolve()
  folder = folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else 'DIR'
  flags = ['--original', 'PATH_TO_DANIJAR_DREAMER', '--write-reference',
           str(folder)]
  if args.seed:
    flags += ['--seed', str(args.seed)]
  if args.updates:
    flags += ['--updates', str(args.updates)]
  if args.force:
    flags.append('--force')
  return ' '.join(['python', 'diff_original.py'] + flags)


def main(argv=None):
  try:
    args = parse(sys.argv[1:] if argv is None else argv)
    return run(args)
  except BadInput as error:
    print(f'diff_original.py: {error}', file=sys.stderr)
    return 2


if __name__ == '__main__':
  sys.exit(main())
