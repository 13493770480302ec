"""Seconds per update of our train step and the original's, side by side.

    python benchmarks/versus_original.py --original PATH --configs small
    python benchmarks/versus_original.py --programs ours ours:/tmp/old-tree

Each program runs in a process of its own (Keras 3 and the original's
tf_keras cannot share one), built and warmed up as benchmarks/train_step.py
and benchmarks/original_train_step.py build theirs: float32, the named
configs of config.py applied to both, one random batch of those shapes.
Then the processes take turns, one update each per round, so that both see
the same machine state (on a shared machine the load drifts); each update
is timed in its own process. Prints each program's median, min and max,
the ratio of the medians and the median of the per-round ratios (each
other program's seconds / the first's), the load average before and after,
the CPU, the process CPU time per update (all threads: a steadier figure
than wall time when other processes share the cores), and our update's
GFLOP (the math's, benchmarks/flops.py) and fraction of the matmul peak
measured after the rounds. The last
line is JSON {program: median seconds, 'OTHER/FIRST': ratio}.

`ours:PATH` runs our train step from another checkout (an A/B of two
versions of the code, interleaved the same way); `PROGRAM@VAR=VALUE,...`
runs it with those environment variables, e.g.
`ours@TF_NUM_INTEROP_THREADS=1`.
"""

import argparse
import importlib.util
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve()
ROOT = HERE.parents[1]


# --- Worker: one program in its own process ---------------------------------

def ours_update(root, configs, action_size, precision='32'):
  """(update function, info) of our train step from checkout `root`."""
  sys.path.insert(0, str(root))
  from benchmarks.machine import setup
  cpu = setup()
  import config as config_module
  import models
  from synthetic import random_batch
  config = config_module.make_config(
      precision=precision, jit=False, configs=list(configs))
  agent = models.Dreamer(config, action_size)
  data = random_batch(config, action_size)

  def update():
    for value in agent.train(data).values():
      value.numpy()

  def flops():
    # The math's count (benchmarks/flops.py), from this checkout; a
    # checkout without Keras-kernel modules gives none.
    try:
      return _load(ROOT / 'benchmarks' / 'flops.py').update_flops(
          config, action_size, data)
    except TypeError:
      return None
  return update, {'cpu': cpu, 'flops': flops}


def original_update(original, configs, action_size):
  """(update function, info) of the original's own train step, built as
  benchmarks/original_train_step.py builds it (harness.step)."""
  _load(ROOT / 'benchmarks' / 'original_train_step.py')  # Keras 2 first.
  from benchmarks.machine import setup
  cpu = setup()
  import tempfile
  import config
  from harness import compat, step
  from synthetic import random_batch
  compat.check_checkout(original, False)
  overrides = {'precision': 32}
  for name in configs:
    overrides.update(config.CONFIGS[name])
  o = step.use(compat.load_original(original))
  cfg = step.make_config(o, overrides)
  batch = random_batch(cfg, action_size)
  with tempfile.TemporaryDirectory(prefix='original-bench-') as folder:
    agent = step.build_agent(o, cfg, batch, action_size, pathlib.Path(folder))
  data = step.preprocess(o, batch, cfg)

  def update():
    agent.train(data)
    agent._metrics['model_loss'].result().numpy()
  return update, {'cpu': cpu}


def _load(path):
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def serve(args):
  """Builds one program, warms it up, then times one update per 'go'."""
  if args.worker == 'original':
    update, info = original_update(
        args.original, args.configs, args.action_size)
  else:
    root = pathlib.Path(args.worker.partition(':')[2] or ROOT)
    update, info = ours_update(root, args.configs, args.action_size)
  for _ in range(args.warmup):
    update()
  _say({'ready': True, 'cpu': info['cpu']})
  for line in sys.stdin:
    command = line.strip()
    if command == 'go':
      start, cpu_start = time.perf_counter(), time.process_time()
      update()
      _say({'seconds': time.perf_counter() - start,
            'cpu': time.process_time() - cpu_start})
    elif command == 'stats':
      from benchmarks.machine import matmul_peak
      flops = info['flops']() if 'flops' in info else None
      _say({'flops': flops, 'peak': matmul_peak('float32') * 1e9})
    else:
      break


def _say(message):
  print('@@' + json.dumps(message), flush=True)


# --- Parent: starts the workers and takes the rounds -------------------------

class Worker:

  def __init__(self, program, args):
    command = [sys.executable, str(HERE), '--worker', program,
               '--warmup', str(args.warmup), '--action_size',
               str(args.action_size), '--configs', *args.configs]
    if args.original:
      command += ['--original', args.original]
    self.program = program
    program, _, settings = program.partition('@')
    command[3] = program
    env = dict(os.environ)
    env.update(item.split('=', 1) for item in settings.split(',') if item)
    self.process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True, env=env)

  def ask(self, command=None):
    if command:
      self.process.stdin.write(command + '\n')
      self.process.stdin.flush()
    for line in self.process.stdout:
      if line.startswith('@@'):
        return json.loads(line[2:])
    raise RuntimeError(f'{self.program} ended without answering')

  def close(self):
    self.process.stdin.write('quit\n')
    self.process.stdin.close()
    self.process.wait()


def compare(args):
  if any(p.startswith('original') for p in args.programs) and (
      not args.original):
    sys.exit('--original PATH is needed to run the original')
  load_before = os.getloadavg()
  workers = [Worker(program, args) for program in args.programs]
  cpu = [worker.ask()['cpu'] for worker in workers][0]
  times = {worker.program: [] for worker in workers}
  cpu_times = {worker.program: [] for worker in workers}
  for round_ in range(args.rounds):
    order = workers if round_ % 2 == 0 else workers[::-1]
    for worker in order:
      answer = worker.ask('go')
      times[worker.program].append(answer['seconds'])
      cpu_times[worker.program].append(answer['cpu'])
  stats = {}
  if args.stats and any(w.program.startswith('ours') for w in workers):
    ours = min((w for w in workers if w.program.startswith('ours')),
               key=lambda w: w.program.partition('@')[0] != 'ours')
    stats = ours.ask('stats')
  for worker in workers:
    worker.close()
  print(cpu)
  print(f'configs {" ".join(args.configs) or "(full)"}, float32, '
        f'{args.rounds} rounds after {args.warmup} warm-up updates; load '
        f'average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after')
  first = args.programs[0]
  result = {}
  for program, seconds in times.items():
    median = statistics.median(seconds)
    result[program] = round(median, 4)
    line = (f'{program:12s} median {median:.3f} s  min {min(seconds):.3f} s  '
            f'max {max(seconds):.3f} s  (CPU time median '
            f'{statistics.median(cpu_times[program]):.3f} s)')
    if program.startswith('ours') and stats.get('flops'):
      rate = stats['flops'] / median
      line += (f'  {stats["flops"] / 1e9:.1f} GFLOP/update, {rate / 1e9:.0f} '
               f'GFLOP/s = {rate / stats["peak"]:.0%} of the '
               f'{stats["peak"] / 1e9:.0f} GFLOP/s matmul peak')
    print(line)
  for program in args.programs[1:]:
    pairs = [b / a for a, b in zip(times[first], times[program])]
    ratio = result[program] / result[first]
    result[f'{program}/{first}'] = round(ratio, 3)
    print(f'{program} / {first}: {ratio:.2f} (medians), per-round median '
          f'{statistics.median(pairs):.2f}, range {min(pairs):.2f}–'
          f'{max(pairs):.2f}')
  print(json.dumps(result))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--original', metavar='PATH',
                      help='checkout of danijar/dreamer')
  parser.add_argument('--configs', nargs='*', default=['small'],
                      help='named configs of config.py; none: the full config')
  parser.add_argument('--programs', nargs='+', default=['ours', 'original'],
                      help='ours, ours:PATH (another checkout), original; '
                      '@VAR=VALUE,... appended sets environment variables')
  parser.add_argument('--rounds', type=int, default=7)
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--action_size', type=int, default=6)
  parser.add_argument('--no_stats', dest='stats', action='store_false',
                      help='skip the FLOP count and the matmul peak')
  parser.add_argument('--worker', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    serve(args)
  else:
    compare(args)


if __name__ == '__main__':
  main()
