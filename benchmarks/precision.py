"""Lower precisions against float32 on one update: losses and gradients.

    python benchmarks/precision.py            # full default config, A=6
    python benchmarks/precision.py --tiny     # a small config, seconds

Builds the agent in float32 and in each lower precision with the same
weights, feeds both the same batch and the same noise (models.Dreamer's
`gradients`, which applies nothing) and prints, per precision, the relative
difference of each loss and the cosine similarity of each optimizer's whole
gradient (model, actor, value) with float32's. float16 uses the dynamic loss
scale it would train with: halved from 2^15 until the gradients are finite.
The last line is JSON: {precision: {name: figure}}.
"""

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from synthetic import random_batch, recorded_noise  # noqa: E402

LOSSES = ('model_loss', 'image_loss', 'reward_loss', 'actor_loss',
          'value_loss')
# Small enough for seconds, large enough that cosines are not dominated by
# a few weights (the `tiny` config's are).
TINY = dict(cnn_depth=8, deter_size=40, stoch_size=10, num_units=50,
            batch_size=4, batch_length=10, horizon=8)


def cosine(a, b):
  """Cosine similarity of two lists of arrays, flattened and joined."""
  a = np.concatenate([np.ravel(x) for x in a]).astype(np.float64)
  b = np.concatenate([np.ravel(x) for x in b]).astype(np.float64)
  return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def one_update(precision, overrides, action_size, weights, data, noise):
  """(losses, {optimizer: gradients as numpy}, loss scale or None)."""
  import config as config_module
  import models
  import networks
  config = config_module.make_config(precision=precision, **overrides)
  agent = models.Dreamer(config, action_size)
  if weights is not None:
    networks.load_weights(agent.modules, weights)
  scale = agent.model_opt.loss_scale
  for _ in range(40):
    metrics, grads, _ = agent.gradients(data, noise)
    norms = [float(metrics[f'{o.name}_grad_norm']) for o in agent.optimizers]
    if all(np.isfinite(norms)) or scale is None:
      break
    for opt in agent.optimizers:
      opt.loss_scale.assign(opt.loss_scale / 2)
  grads = {k: [np.asarray(g) for g in v] for k, v in grads.items()}
  losses = {k: float(metrics[k]) for k in LOSSES}
  return (losses, grads, None if scale is None else float(scale),
          networks.export_weights(agent.modules))


def compare(precisions, overrides, action_size):
  data = random_batch(_config(overrides), action_size)
  noise = recorded_noise(_config(overrides), action_size)
  ref_losses, ref_grads, _, weights = one_update(
      '32', overrides, action_size, None, data, noise)
  results = {}
  for precision in precisions:
    losses, grads, scale, _ = one_update(
        precision, overrides, action_size, weights, data, noise)
    figures = {f'{k}_rel_diff': abs(losses[k] - ref_losses[k]) / max(
        abs(ref_losses[k]), 1e-12) for k in LOSSES}
    figures.update({f'{k}_grad_cosine': cosine(grads[k], ref_grads[k])
                    for k in ref_grads})
    if scale is not None:
      figures['loss_scale'] = scale
    results[precision] = figures
    print(f'{precision:>4} vs float32: ' + ', '.join(
        f'{k} {v:.6g}' for k, v in figures.items()), flush=True)
  return results


def _config(overrides):
  import config
  return config.make_config(precision='32', **overrides)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--precisions', default='bf16,16')
  parser.add_argument('--action_size', type=int, default=6)
  parser.add_argument('--tiny', action='store_true')
  args = parser.parse_args()
  overrides = dict(TINY) if args.tiny else {}
  results = compare(args.precisions.split(','), overrides, args.action_size)
  print(json.dumps(results))


if __name__ == '__main__':
  main()
