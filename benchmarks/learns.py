"""Does the whole agent learn? Short runs, each against a threshold.

    python benchmarks/learns.py                     # every check, seeds 1 2
    python benchmarks/learns.py --seeds 3           # other seeds
    python benchmarks/learns.py --list              # the checks, their costs

Each check is one task at a named config, run once per seed: `dreamer.py`
trains from scratch into LOGDIR/NAME/SEED (a run already there resumes, so
a stopped check goes on where it was), then `evaluate.py` evaluates its
final checkpoint (the actor's mode, --episodes episodes, seed 0) and
uniform random actions (--random, the same episodes). Each run's line
gives the return reached against the check's threshold and the minutes
this call spent training it (a resumed run counts only what it added).
The runs go side by side, --jobs at a time (default 2, one per core of the
2-core CPU their minutes were measured on). The exit code is 1 if any run
falls short, 2 for bad input.

Thresholds come from measured runs (docs/results.md, "Learning checks"):
halfway between the random policy's return and the lowest return our runs
reached at that step, so that a check fails when learning breaks. What each run
found is written to LOGDIR/learns.json.

Not part of the test suite (tests/test_learns.py runs its plumbing at a tiny
config).
"""

import argparse
import concurrent.futures
import json
import os
import pathlib
import shlex
import subprocess
import sys
import time
import typing

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tools  # noqa: E402


class Check(typing.NamedTuple):
  """One task at one config: train to `steps`, then reach `threshold`."""
  flags: tuple
  steps: int
  threshold: float
  minutes: int  # Measured on a 2-core CPU (docs/results.md), for --list.


# From four runs (2-core AMD EPYC, two at a time; docs/results.md): walker
# 213, 196, 186 and 118.5 at 45,000 steps in 29 to 36 minutes, random
# actions 39.9. The first threshold, halfway to the first two runs' mean
# (122), failed the fourth run, so it is halfway to the lowest run:
# (39.9 + 118.5) / 2 = 79, twice the random return. No other task learned
# steadily enough at this size to be a check: Pendulum-v1 from state
# reached -634, -479 and -1,189 at 30,000 steps in three runs (random
# -1,264), walker stand 107 at 25,000 (random 130).
CHECKS = {
    'walker': Check(
        ('--task', 'dmc_walker_walk', '--obs', 'proprio', '--configs',
         'small'), 45000, 79.0, 30),
}


def parse(argv):
  parser = argparse.ArgumentParser(
      prog='learns.py', description=__doc__.split('\n')[0],
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument('--checks', nargs='+', default=list(CHECKS),
                      metavar='NAME', help=f'of: {", ".join(CHECKS)}')
  parser.add_argument('--logdir', type=pathlib.Path,
                      default=pathlib.Path('runs/learns'),
                      help='one run per check and seed in LOGDIR/NAME/SEED')
  parser.add_argument('--seeds', nargs='+', type=int, default=[1, 2],
                      metavar='SEED', help='a run of each check per seed')
  parser.add_argument('--episodes', type=int, default=10,
                      help='test episodes of each evaluation')
  parser.add_argument('--jobs', type=int, default=2,
                      help='runs that go at the same time')
  parser.add_argument('--list', action='store_true',
                      help='print the checks and stop')
  # For the plumbing test and for trying a check at other settings.
  parser.add_argument('--steps', type=int, default=None,
                      help="every check's steps [default: its own]")
  parser.add_argument('--threshold', type=float, default=None,
                      help="every check's threshold [default: its own]")
  parser.add_argument('--flags', default='',
                      help='dreamer.py flags after the check\'s own, as one '
                      'string (e.g. "--train_steps 200")')
  args = parser.parse_args(argv)
  unknown = [name for name in args.checks if name not in CHECKS]
  if unknown:
    parser.error(f'unknown check {unknown[0]!r}; known: {", ".join(CHECKS)}')
  if len(set(args.seeds)) < len(args.seeds):
    parser.error(f'--seeds must differ, got {" ".join(map(str, args.seeds))}')
  if args.jobs < 1:
    parser.error(f'--jobs must be at least 1, got {args.jobs}')
  if args.episodes < 1:
    parser.error(f'--episodes must be at least 1, got {args.episodes}')
  return args


def run(argv, log):
  """Runs `argv` from the checkout, its output appended to `log`; raises
  RuntimeError with the last line of a failed run."""
  with open(log, 'a') as file:
    file.write(f'\n$ {shlex.join(argv)}\n')
    file.flush()
    result = subprocess.run(
        argv, stdout=file, stderr=subprocess.STDOUT, cwd=ROOT,
        env=dict(os.environ, PYTHONUNBUFFERED='1'))
  if result.returncode:
    lines = pathlib.Path(log).read_text().strip().splitlines()
    raise RuntimeError(f'{argv[1]} exited with {result.returncode}: '
                       f'{lines[-1] if lines else "no output"} (see {log})')


def evaluation(logdir, episodes, random=False):
  """The return_mean of the newest `--episodes` evaluation in
  LOGDIR/eval/(random|STEP*), or None."""
  found = []
  for path in (logdir / 'eval').glob('*/summary.json'):
    summary = json.loads(path.read_text())
    if summary.get('episodes') == episodes and summary.get('seed') == 0 and (
        (summary.get('policy') == 'random') == random):
      found.append((summary.get('step', 0), path.stat().st_mtime, summary))
  return max(found, key=lambda item: item[:2])[2] if found else None


def verdict(reached, threshold):
  return 'pass' if reached >= threshold else 'SHORT'


def run_check(name, check, seed, args):
  """Trains and evaluates one check at one seed; returns its result dict."""
  logdir = args.logdir.resolve() / name / str(seed)
  logdir.mkdir(parents=True, exist_ok=True)
  log = logdir / 'learns.log'
  steps = args.steps or check.steps
  threshold = check.threshold if args.threshold is None else args.threshold
  python = [sys.executable, '-u']
  start = time.time()
  run(python + ['dreamer.py', '--logdir', str(logdir), '--seed',
                str(seed), '--steps', str(steps), *check.flags,
                *shlex.split(args.flags)], log)
  minutes = (time.time() - start) / 60
  final = evaluation(logdir, args.episodes)
  if final is None or final.get('step', 0) < steps:
    run(python + ['evaluate.py', '--logdir', str(logdir), '--episodes',
                  str(args.episodes), '--video', 'none'], log)
    final = evaluation(logdir, args.episodes)
  random = evaluation(logdir, args.episodes, random=True)
  if random is None:
    run(python + ['evaluate.py', '--logdir', str(logdir), '--random',
                  '--episodes', str(args.episodes), '--video', 'none'], log)
    random = evaluation(logdir, args.episodes, random=True)
  return dict(
      check=name, task=check.flags[1], steps=final.get('step'),
      seed=seed, reached=final['return_mean'],
      reached_std=final['return_std'], random=random['return_mean'],
      threshold=threshold, minutes=round(minutes, 1),
      verdict=verdict(final['return_mean'], threshold))


def line(result):
  return (f'{result["check"]:<10} {result["task"]:<18} seed '
          f'{result["seed"]:<3} '
          f'{result["steps"]:>7,} steps {result["minutes"]:6.1f} min  '
          f'random {result["random"]:8.1f}  reached {result["reached"]:8.1f}'
          f' ± {result["reached_std"]:.1f}  threshold '
          f'{result["threshold"]:8.1f}  {result["verdict"]}')


def run_checks(args):
  """Runs each check at each seed, --jobs at a time, printing each run as it
  ends; returns their results in the order asked, or raises the first
  RuntimeError once all have ended."""
  start = time.time()
  found, errors = {}, []
  with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
    futures = {pool.submit(run_check, name, CHECKS[name], seed, args):
               (name, seed) for name in args.checks for seed in args.seeds}
    for future in concurrent.futures.as_completed(futures):
      try:
        found[futures[future]] = future.result()
      except RuntimeError as error:
        errors.append(error)
        continue
      print(line(found[futures[future]]), flush=True)
  if errors:
    raise errors[0]
  print(f'All runs took {(time.time() - start) / 60:.1f} minutes, '
        f'{args.jobs} at a time.', flush=True)
  return [found[name, seed] for name in args.checks for seed in args.seeds]


def main(argv=None):
  args = parse(sys.argv[1:] if argv is None else argv)
  if args.list:
    for name, check in CHECKS.items():
      print(f'{name:<10} {shlex.join(check.flags)} --steps {check.steps} '
            f'(threshold {check.threshold}, about {check.minutes} minutes)')
    return 0
  for name in args.checks:
    print(f'{name}: training and evaluating seeds '
          f'{" ".join(map(str, args.seeds))} into {args.logdir / name} '
          f'(about {CHECKS[name].minutes} minutes a seed, {args.jobs} at a '
          'time on 2 cores) ...', flush=True)
  try:
    results = run_checks(args)
  except RuntimeError as error:
    print(f'learns.py: error: {error}', file=sys.stderr, flush=True)
    return 2
  text = json.dumps(results, indent=2) + '\n'
  tools.write_atomic(args.logdir / 'learns.json',
                     lambda file: file.write(text.encode()))
  short = [f'{result["check"]} seed {result["seed"]}' for result in results
           if result['verdict'] != 'pass']
  print(f'{len(results) - len(short)} of {len(results)} runs learned'
        + (f'; short: {", ".join(short)}' if short else '') + '.', flush=True)
  return 1 if short else 0


if __name__ == '__main__':
  sys.exit(main())
