"""Runs the ORIGINAL Dreamer's modules one by one on given inputs, and
counts their parameters, in a process of its own (like harness/step.py).

    python -m harness.modules --original PATH --request IN.npz \
        --out OUT.npz [--force]

IN.npz:
  config        JSON {cnn_depth, stoch_size, deter_size, num_units,
                action_size}: the modules are built as the original's
                Dreamer builds them (dense_act elu, cnn_act relu,
                action_init_std 5, RSSM hidden size = deter size)
  weights/NAME  every weight, in our naming MODULE/LAYER/WEIGHT, of encoder,
                rssm, decoder, reward, value, pcont, actor (tanh_normal)
                and actor_onehot
  image (B, T, 64, 64, 3) float32, already x / 255 − 0.5
  prev_mean, prev_std, prev_stoch (B, S), prev_deter (B, D), prev_action
                (B, A): a previous RSSM state and action
  feat (B, T, S + D); actions (B, T, A) in (−1, 1)
  lr_reward, lr_value, lr_pcont (H, N), lr_bootstrap (N,), lr_lambda ()
  tanh_x (K,)
  counts        optional JSON {case: {cnn_depth, stoch_size, deter_size,
                num_units, action_dim}}: parameter counts to report

OUT.npz: the outputs of reference_io.npz (see tests/reference/README.md):
  embed, prior_mean/std/deter (image step), post_mean/std/deter
  (observation step with embed[:, 0]), decoder_mean, reward_mean,
  value_mean, pcont_mean, actor_loc, actor_scale, actor_logprob,
  onehot_probs, lr_returns, lr_returns_zero_bootstrap,
  tanh_log_det_jacobian; param_counts (JSON, when asked); commit.

The samples the RSSM steps draw are not read: only means, stds and deters
are returned. No random draw enters any output.
"""

import argparse
import json
import os
import sys
import time

os.environ['TF_USE_LEGACY_KERAS'] = '1'  # before TensorFlow: Keras 2 layers
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import numpy as np  # noqa: E402

from harness import compat, step  # noqa: E402

INPUTS = (
    'image', 'prev_mean', 'prev_std', 'prev_stoch', 'prev_deter',
    'prev_action', 'feat', 'actions', 'lr_reward', 'lr_value', 'lr_pcont',
    'lr_bootstrap', 'lr_lambda', 'tanh_x')


def build(o, c):
  """{our module name: the original's module} at config `c`, every layer
  created by one call on zeros (the original's layers are made lazily);
  `o` is the original (step.Original)."""
  tf = o.tf
  elu, relu = tf.nn.elu, tf.nn.relu
  m = o.models
  size = c['action_size']
  modules = {
      'encoder': m.ConvEncoder(c['cnn_depth'], relu),
      'rssm': m.RSSM(c['stoch_size'], c['deter_size'], c['deter_size'], elu),
      'decoder': m.ConvDecoder(c['cnn_depth'], relu),
      'reward': m.DenseDecoder((), 2, c['num_units'], act=elu),
      'value': m.DenseDecoder((), 3, c['num_units'], act=elu),
      'pcont': m.DenseDecoder((), 3, c['num_units'], 'binary', act=elu),
      'actor': m.ActionDecoder(size, 4, c['num_units'], 'tanh_normal', elu,
                               init_std=5),
      'actor_onehot': m.ActionDecoder(size, 4, c['num_units'], 'onehot', elu),
  }
  feat = tf.zeros((1, c['stoch_size'] + c['deter_size']))
  modules['encoder']({'image': tf.zeros((1, 64, 64, 3))})
  state = modules['rssm'].initial(1)
  modules['rssm'].obs_step(state, tf.zeros((1, size)),
                           tf.zeros((1, 32 * c['cnn_depth'])))
  for name in ('decoder', 'reward', 'value', 'pcont', 'actor',
               'actor_onehot'):
    modules[name](feat)
  return modules


def counts_of(modules):
  return {name: int(sum(np.prod(v.shape) for v in module.variables))
          for name, module in modules.items()}


def compute(o, config, weights, io, cases):
  """OUT.npz's arrays: the outputs of the original's modules (`o`, a
  step.Original) at `config` with `weights` on the inputs `io`, and the
  parameter counts of each of `cases`."""
  tf = o.tf
  modules = build(o, config)
  step.assign_weights(modules, weights)
  m = {k: v for k, v in modules.items()}
  prev = {k: tf.constant(io[f'prev_{k}'])
          for k in ('mean', 'std', 'stoch', 'deter')}
  action = tf.constant(io['prev_action'])
  embed = m['encoder']({'image': tf.constant(io['image'])})
  prior = m['rssm'].img_step(prev, action)
  post, _ = m['rssm'].obs_step(prev, action, embed[:, 0])
  feat = tf.constant(io['feat'])
  actor = m['actor'](feat)
  normal = actor._dist.distribution.distribution  # SampleDist(Indep(Trans))
  args = [tf.constant(io[k]) for k in ('lr_reward', 'lr_value', 'lr_pcont')]
  lam = float(io['lr_lambda'])
  out = {
      'embed': embed,
      'decoder_mean': m['decoder'](feat).mean(),
      'reward_mean': m['reward'](feat).mean(),
      'value_mean': m['value'](feat).mean(),
      'pcont_mean': m['pcont'](feat).mean(),
      'actor_loc': normal.loc,
      'actor_scale': normal.scale,
      'actor_logprob': actor.log_prob(tf.constant(io['actions'])),
      'onehot_probs': m['actor_onehot'](feat).mean(),
      'lr_returns': o.tools.lambda_return(
          *args, tf.constant(io['lr_bootstrap']), lambda_=lam, axis=0),
      'lr_returns_zero_bootstrap': o.tools.lambda_return(
          *args, None, lambda_=lam, axis=0),
      'tanh_log_det_jacobian': o.tools.TanhBijector().forward_log_det_jacobian(
          tf.constant(io['tanh_x']), event_ndims=0),
  }
  for key in ('mean', 'std', 'deter'):
    out[f'prior_{key}'] = prior[key]
    out[f'post_{key}'] = post[key]
  out = {k: np.asarray(v, np.float32) for k, v in out.items()}
  counts = {'small': counts_of(modules)}
  for case, c in cases.items():
    built = build(o, dict(c, action_size=c['action_dim']))
    counts[case] = counts_of(built)
  out['param_counts'] = np.array(json.dumps(counts))
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(
      prog='python -m harness.modules', description=__doc__.split('\n')[0])
  parser.add_argument('--original', required=True)
  parser.add_argument('--request', required=True)
  parser.add_argument('--out', required=True)
  parser.add_argument('--force', action='store_true')
  args = parser.parse_args(argv)
  start = time.time()
  try:
    commit = compat.check_checkout(args.original, args.force)
  except ValueError as error:
    sys.exit(f'harness.modules: {error}')
  o = step.use(compat.load_original(args.original))
  with np.load(args.request) as request:
    request = dict(request)
  config = json.loads(str(request['config']))
  cases = json.loads(str(request['counts'])) if 'counts' in request else {}
  weights = {k[len('weights/'):]: v for k, v in request.items()
             if k.startswith('weights/')}
  missing = [k for k in INPUTS if k not in request]
  if missing:
    sys.exit(f'harness.modules: {args.request}: missing '
             f'{", ".join(missing)}')
  out = compute(o, config, weights, {k: request[k] for k in INPUTS}, cases)
  out['commit'] = np.array(commit or 'unknown (forced)')
  np.savez_compressed(args.out, **out)
  print(f'harness.modules: wrote {args.out} ({len(out)} arrays) in '
        f'{time.time() - start:.1f} s')


if __name__ == '__main__':
  main()
