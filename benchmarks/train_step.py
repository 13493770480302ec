"""Seconds per training update (world model + actor + value).

    python benchmarks/train_step.py                 # every precision here
    python benchmarks/train_step.py --precision 32 --jit False

Builds the agent at the full default config (or --tiny for a smoke run, or
`--configs small`) on random data of the right shapes, times the compiled
update after warm-up and prints the median, the CPU and oneDNN state, and
the fraction of this machine's measured matmul peak (2,048², same dtype)
that the update reaches, by the math's FLOPs (benchmarks/flops.py). The last line is JSON: {precision name: median
seconds}.
"""

import argparse
import json
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

NAMES = {'32': 'float32', '16': 'float16', 'bf16': 'bfloat16'}


def measure(precision, jit, repeats, warmup, tiny, action_size, configs=()):
  import config as config_module
  import models
  from benchmarks.flops import update_flops
  from benchmarks.machine import matmul_peak
  from synthetic import random_batch
  configs = list(configs) + (['tiny'] if tiny else [])
  overrides = dict(precision=precision, jit=jit, configs=configs)
  config = config_module.make_config(**overrides)
  agent = models.Dreamer(config, action_size)
  data = random_batch(config, action_size)
  start = time.perf_counter()
  for _ in range(warmup):
    _block(agent.train(data))
  compile_seconds = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    _block(agent.train(data))
    times.append(time.perf_counter() - start)
  median = statistics.median(times)
  flops = update_flops(config, action_size, data)
  rate = flops / median / 1e9
  peak = matmul_peak(NAMES[precision])
  print(f'{NAMES[precision]:9s} jit={jit!s:5s} warm-up {compile_seconds:6.1f} s  '
        f'median {median:.3f} s  min {min(times):.3f} s  '
        f'({repeats} updates)  {flops / 1e9:.1f} GFLOP/update  '
        f'{rate:.0f} GFLOP/s = {rate / peak:.0%} of the {peak:.0f} GFLOP/s '
        f'{NAMES[precision]} matmul peak', flush=True)
  return median


def _block(metrics):
  for value in metrics.values():
    value.numpy()


def supported_precisions():
  import tensorflow as tf
  if tf.config.list_physical_devices('GPU'):
    return ['32', '16', 'bf16']
  return ['32', 'bf16']


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--precision', choices=list(NAMES), default=None)
  parser.add_argument('--jit', choices=['True', 'False'], default=None,
                      help="XLA; default: the config's default")
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--action_size', type=int, default=6)
  parser.add_argument('--tiny', action='store_true',
                      help='small networks and batch: a smoke test only')
  parser.add_argument('--configs', nargs='*', default=[],
                      help="named configs of config.py, e.g. small")
  args = parser.parse_args()
  from benchmarks.machine import setup
  print(setup(), flush=True)
  import config
  jit = config.defaults()['jit'] if args.jit is None else args.jit == 'True'
  precisions = [args.precision] if args.precision else supported_precisions()
  results = {}
  for precision in precisions:
    results[NAMES[precision]] = round(measure(
        precision, jit, args.repeats, args.warmup, args.tiny,
        args.action_size, args.configs), 4)
  print(json.dumps(results))


if __name__ == '__main__':
  main()
