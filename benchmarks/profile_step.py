"""Where one training update's time goes, op by op (TensorFlow's profiler).

    python benchmarks/profile_step.py --configs small
    python benchmarks/profile_step.py --configs small --xla_loops True

Builds the agent as benchmarks/train_step.py does (float32 by default),
warms up, records `--updates` updates with tf.profiler and sums the time
of every executed op by section (encoder, observe loop, decoder, imagination,
the dense heads, the optimizers …), split into forward and backward
(`gradient_tape/…`), and by kind of kernel. Op times are summed over the
inter-op threads, so on 2 cores they add up to about twice the wall time;
the shares are what matters. `ops/update` counts executed kernels: each
costs the executor a few microseconds whatever its size (the per-op
overhead, measured here by `op_overhead`).
"""

import argparse
import collections
import glob
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

# Sections by name scope, first match wins (models.py, networks/).
SECTIONS = (
    ('optimizers', ('_adam', 'global_norm', 'clip_by_global_norm', 'cond')),
    ('diagnostics', ('diagnostics/',)),
    ('observe loop', ('observe/',)),
    ('imagination', ('imagine/',)),
    ('encoder', ('encoder',)),
    ('decoder', ('decoder',)),
    ('dense heads', ('reward', 'value', 'pcont', 'actor')),
)
KINDS = (
    ('convolution', ('Conv2D', 'SpaceToDepth', 'DepthToSpace')),
    ('matmul', ('MatMul',)),
)


def section(name):
  for label, keys in SECTIONS:
    if any(key in name for key in keys):
      return label
  return 'other'


def kind(op_type):
  for label, keys in KINDS:
    if any(key in op_type for key in keys):
      return label
  return 'elementwise/other'


def read_ops(logdir):
  """[(op name, op type, seconds)] and the wall seconds of each `_train`."""
  from tensorflow.tsl.profiler.protobuf import xplane_pb2
  path = sorted(glob.glob(f'{logdir}/plugins/profile/*/*.xplane.pb'))[-1]
  space = xplane_pb2.XSpace()
  space.ParseFromString(pathlib.Path(path).read_bytes())
  plane = next(p for p in space.planes if p.name == '/host:CPU')
  names = plane.event_metadata
  ops, walls = [], []
  for line in plane.lines:
    for event in line.events:
      name = names[event.metadata_id].name
      if line.name == 'python' and name.startswith('_train'):
        walls.append(event.duration_ps / 1e12)
      elif (line.name.startswith('tf_Compute') and ':' in name
            and not name.startswith(('ThreadpoolListener', 'Executor'))):
        op, op_type = name.rsplit(':', 1)
        ops.append((op, op_type, event.duration_ps / 1e12))
  return ops, walls


def op_overhead(length=2000):
  """Seconds per op of a chain of `length` dependent scalar sines (a graph's
  per-op executor cost, arithmetic ≈ 0; sines, which grappler cannot fold
  into one op as it folds a chain of adds)."""
  import tensorflow as tf

  @tf.function
  def chain(x):
    for _ in range(length):
      x = tf.sin(x)
    return x
  x = tf.constant(0.0)
  chain(x).numpy()
  times = []
  for _ in range(7):
    start = time.perf_counter()
    chain(x).numpy()
    times.append(time.perf_counter() - start)
  return statistics.median(times) / length


def report(ops, walls, updates):
  """Prints the tables; returns {section: seconds per update}."""
  total = sum(seconds for _, _, seconds in ops) / updates
  wall = statistics.median(walls) if walls else float('nan')
  print(f'wall {wall:.3f} s/update (median of {len(walls)}), op time '
        f'{total:.3f} s/update over the inter-op threads, '
        f'{len(ops) / updates:.0f} ops/update')
  table = collections.defaultdict(lambda: [0.0, 0.0, 0, 0])
  kinds = collections.defaultdict(lambda: [0.0, 0])
  for op, op_type, seconds in ops:
    backward = op.startswith('gradient_tape/')
    row = table[section(op)]
    row[backward] += seconds / updates
    row[2 + backward] += 1
    kinds[kind(op_type)][0] += seconds / updates
    kinds[kind(op_type)][1] += 1
  print(f'{"section":14s} {"forward ms":>11s} {"backward ms":>12s} '
        f'{"share":>6s} {"ops fwd":>8s} {"ops bwd":>8s}')
  by_time = sorted(table.items(), key=lambda kv: -sum(kv[1][:2]))
  for label, (fwd, bwd, nf, nb) in by_time:
    print(f'{label:14s} {fwd * 1e3:11.1f} {bwd * 1e3:12.1f} '
          f'{(fwd + bwd) / total:6.1%} {nf / updates:8.0f} {nb / updates:8.0f}')
  print(f'{"kernel":18s} {"ms":>8s} {"share":>6s} {"ops":>7s}')
  for label, (seconds, count) in sorted(
      kinds.items(), key=lambda kv: -kv[1][0]):
    print(f'{label:18s} {seconds * 1e3:8.1f} {seconds / total:6.1%} '
          f'{count / updates:7.0f}')
  small = [s for _, _, s in ops if s < 20e-6]
  print(f'ops under 20 µs: {len(small) / updates:.0f}/update, '
        f'{sum(small) / updates * 1e3:.1f} ms of op time')
  return {label: sum(row[:2]) for label, row in table.items()}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--configs', nargs='*', default=['small'])
  parser.add_argument('--precision', default='32')
  parser.add_argument('--updates', type=int, default=3)
  parser.add_argument('--top', type=int, default=0,
                      help='also list the N heaviest ops')
  args = parser.parse_args()
  from benchmarks.machine import setup
  print(setup(), flush=True)
  import tensorflow as tf
  import config as config_module
  import models
  from synthetic import random_batch
  config = config_module.make_config(
      precision=args.precision, jit=False, configs=args.configs)
  agent = models.Dreamer(config, 6)
  data = random_batch(config, 6)
  for _ in range(2):
    agent.train(data)['model_loss'].numpy()
  with tempfile.TemporaryDirectory(prefix='profile-step-') as logdir:
    tf.profiler.experimental.start(logdir)
    for _ in range(args.updates):
      agent.train(data)['model_loss'].numpy()
    tf.profiler.experimental.stop()
    ops, walls = read_ops(logdir)
  report(ops, walls, args.updates)
  if args.top:
    heavy = collections.Counter()
    for op, op_type, seconds in ops:
      heavy[f'{op} ({op_type})'] += seconds / args.updates
    for name, seconds in heavy.most_common(args.top):
      print(f'{seconds * 1e3:8.1f} ms  {name}')
  print(f'per-op executor cost: {op_overhead() * 1e6:.1f} µs '
        '(chain of dependent scalar ops)')


if __name__ == '__main__':
  main()
