"""Seconds per training update of the ORIGINAL Dreamer's own train step.

    python benchmarks/original_train_step.py --original PATH --configs small
    python benchmarks/train_step.py --precision 32 --configs small   # ours

Builds the original's agent (its `dreamer.Dreamer`, through
harness.compat, files unchanged) at its default config with the named
configs of config.py applied (the same flag names), float32, on a random
batch of the config's shapes (synthetic.random_batch, as ours), then times
its `train` (world model + actor + value, its own sampling) after warm-up
and prints the median. oneDNN is chosen as for ours. The last line is JSON
{"float32": median seconds}, as benchmarks/train_step.py prints for ours.
"""

import argparse
import json
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from harness import step  # noqa: E402  (first: it selects Keras 2)


def measure(original, overrides, repeats, warmup, action_size):
  """Median seconds of the original agent's train(data), and the minimum."""
  from synthetic import random_batch
  o = step.use(original)
  config = step.make_config(o, overrides)
  batch = random_batch(config, action_size)
  with tempfile.TemporaryDirectory(prefix='original-bench-') as folder:
    agent = step.build_agent(
        o, config, batch, action_size, pathlib.Path(folder))
  data = step.preprocess(o, batch, config)
  block = lambda: agent._metrics['model_loss'].result().numpy()
  for _ in range(warmup):
    agent.train(data)
    block()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    agent.train(data)
    block()
    times.append(time.perf_counter() - start)
  return statistics.median(times), min(times)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--original', required=True, metavar='PATH',
                      help='checkout of danijar/dreamer')
  parser.add_argument('--force', action='store_true',
                      help='run a checkout whose files differ from 56d4d44')
  parser.add_argument('--configs', nargs='*', default=[],
                      help='named configs of config.py, e.g. small')
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--action_size', type=int, default=6)
  args = parser.parse_args()
  import config
  from harness import compat
  from benchmarks.machine import setup
  unknown = [name for name in args.configs if name not in config.CONFIGS]
  if unknown:
    parser.error(f'unknown config {unknown[0]!r}; allowed: '
                 f'{", ".join(config.CONFIGS)}')
  try:
    commit = compat.check_checkout(args.original, args.force)
  except ValueError as error:
    parser.exit(2, f'{parser.prog}: error: {error}\n')
  print(setup(), flush=True)
  overrides = {'precision': 32}
  for name in args.configs:
    overrides.update(config.CONFIGS[name])
  original = compat.load_original(args.original)
  median, fastest = measure(original, overrides, args.repeats, args.warmup,
                            args.action_size)
  print(f'original {commit or "(forced)"} float32 median {median:.3f} s  '
        f'min {fastest:.3f} s  ({args.repeats} updates)', flush=True)
  print(json.dumps({'float32': round(median, 4)}))


if __name__ == '__main__':
  main()
