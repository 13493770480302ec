"""Do two programs learn alike? Their kept checkpoints' evaluations side by
side: a table, the difference of means with a bootstrap interval, a plot.

    python evaluate.py --logdir RUN --kept --episodes 10    # each run first
    python compare.py --program ours runs/port/1 runs/port/2 runs/port/3 \\
        --program original runs/original/1 runs/original/2 runs/original/3 \\
        --output docs/learning/evaluations.csv \\
        [--plot docs/learning/evaluations.png --reference scores/dreamer.json]

Reads every RUN/eval/STEP/summary.json that evaluate.py wrote of a kept
checkpoint (RUN/kept/...; of several evaluations of one step, the one with
the most episodes) and writes one CSV row per run and step (EVAL_HEADER).
Prints, at each step both programs reached, the difference of their means
(first program minus second) with its BOOTSTRAP interval, and with
`--progress PATH` a markdown table of how far each run is. A program's mean
at a step is the mean over its runs of each run's mean test return. The plot
is titled with the runs' task (config.json; the original's logdirs have
none: dmc_cartpole_balance) and draws the random policy's return where a run
has one (evaluate.py --random).
"""

import argparse
import csv
import json
import pathlib
import sys

import numpy as np

import kept as kept_module
import replay
from config import saved_config

EVAL_HEADER = ('program', 'seed', 'step', 'episodes', 'mean', 'std', 'min',
               'max')
REPS = 10_000
CONFIDENCE = 0.95
BALANCED = 800  # A test return that balances the pole (issue 36).


def read_evaluations(logdir):
  """{step: summary} of the evaluations of `logdir`'s kept checkpoints; of
  several of one step, the one with the most episodes."""
  found = {}
  for path in sorted(pathlib.Path(logdir).glob('eval/*/summary.json')):
    try:
      summary = json.loads(path.read_text())
    except (OSError, ValueError):
      continue
    if '/kept/' not in (summary.get('checkpoint') or ''):  # Not random.
      continue
    step = int(summary['step'])
    if step not in found or summary['episodes'] > found[step]['episodes']:
      found[step] = summary
  return found


def random_return(logdir):
  """The mean return of `logdir`'s evaluate.py --random, or None."""
  try:
    summary = json.loads(
        (pathlib.Path(logdir) / 'eval' / 'random' / 'summary.json').read_text())
  except (OSError, ValueError):
    return None
  return summary.get('return_mean')


def task_of(programs, default='dmc_cartpole_balance'):
  """The task of the first run with a config.json, else `default`."""
  for logdirs in programs.values():
    for logdir in logdirs:
      task = saved(logdir).get('task')
      if task:
        return task
  return default


def saved(logdir):
  """The run's config.json, or {} (the original's logdirs have none)."""
  config = saved_config(pathlib.Path(logdir))
  return config if isinstance(config, dict) else {}


def seed_of(logdir):
  """The run's seed: config.json's, else its folder's name."""
  config = saved(logdir)
  if 'seed' in config:
    return int(config['seed'])
  name = pathlib.Path(logdir).name
  return int(name) if name.isdigit() else name


def rows(programs):
  """EVAL_HEADER rows of every run of `programs` {name: [logdirs]}."""
  table = []
  for program, logdirs in programs.items():
    for logdir in logdirs:
      for step, summary in sorted(read_evaluations(logdir).items()):
        table.append((
            program, seed_of(logdir), step, summary['episodes'],
            round(summary['return_mean'], 2), round(summary['return_std'], 2),
            round(summary['return_min'], 2), round(summary['return_max'], 2)))
  return table


def program_mean(runs):
  """The mean over runs of each run's mean: `runs` is a list of arrays of
  returns, one per run."""
  return float(np.mean([np.mean(returns) for returns in runs]))


def bootstrap_difference(first, second, reps=REPS, confidence=CONFIDENCE,
                         seed=0):
  """(difference, low, high): program_mean(first) − program_mean(second)
  and the percentile interval of that difference over `reps` resamples.
  Each resample draws, for each program on its own, its runs with
  replacement, then within each drawn run its episodes with replacement
  (a two-level bootstrap: seeds, then episodes within seeds)."""
  rng = np.random.default_rng(seed)

  def resample(runs):
    picks = rng.integers(0, len(runs), (reps, len(runs)))
    means = np.empty((reps, len(runs)))
    for index, returns in enumerate(runs):
      returns = np.asarray(returns, float)
      chosen = picks == index
      draws = rng.integers(0, len(returns), (int(chosen.sum()), len(returns)))
      means[chosen] = returns[draws].mean(1)
    return means.mean(1)

  values = resample(first) - resample(second)
  tail = (1 - confidence) / 2 * 100
  low, high = np.percentile(values, [tail, 100 - tail])
  return program_mean(first) - program_mean(second), float(low), float(high)


def statement(programs, reps=REPS, balance=True):
  """Lines: at each step that every program's runs all reached, each
  program's mean, the difference of the first two with its interval, and
  with `balance` which programs balance the pole there (mean >=
  BALANCED)."""
  names = list(programs)
  evaluations = {name: [read_evaluations(logdir) for logdir in logdirs]
                 for name, logdirs in programs.items()}
  steps = sorted(set.intersection(*[
      set.intersection(*[set(run) for run in runs]) if runs else set()
      for runs in evaluations.values()]))
  lines = []
  for step in steps:
    returns = {name: [run[step]['returns'] for run in runs]
               for name, runs in evaluations.items()}
    means = ', '.join(f'{name} {program_mean(returns[name]):.1f} '
                      f'({len(returns[name])} runs)' for name in names)
    line = f'step {step:,}: {means}'
    if len(names) >= 2:
      difference, low, high = bootstrap_difference(
          returns[names[0]], returns[names[1]], reps)
      differ = 'differ' if low > 0 or high < 0 else 'alike within it'
      if min(len(returns[names[0]]), len(returns[names[1]])) < 2:
        differ += ' (one run of a program: the interval holds its episodes, not seeds)'
      line += (f'; {names[0]} − {names[1]} = {difference:.1f}, '
               f'{CONFIDENCE:.0%} interval [{low:.1f}, {high:.1f}]: {differ}')
    balanced = [name for name in names
                if program_mean(returns[name]) >= BALANCED]
    if balance:
      line += (f'; balancing (mean ≥ {BALANCED}): '
               f'{", ".join(balanced) or "none"}')
    lines.append(line)
  return lines


def progress(programs):
  """A markdown table: each run's steps on disk, its last kept checkpoint
  and its evaluations so far (step: mean over its episodes)."""
  lines = ['| program | seed | step reached | last kept | evaluations '
           '(step: mean of 10 episodes) |', '| --- | --- | --- | --- | --- |']
  for program, logdirs in programs.items():
    for logdir in logdirs:
      logdir = pathlib.Path(logdir)
      reached = replay.count_steps(
          logdir / 'episodes', saved(logdir).get('action_repeat', 2))
      folder = logdir / kept_module.FOLDER
      kept = sorted({**kept_module.copies(folder, 'checkpoint', '.npz'),
                     **kept_module.copies(folder, 'variables', '.pkl')})
      evaluations = ', '.join(
          f'{step:,}: {summary["return_mean"]:.1f}' for step, summary in
          sorted(read_evaluations(logdir).items()))
      last = f'{kept[-1]:,}' if kept else '-'
      lines.append(f'| {program} | {seed_of(logdir)} | {reached:,} | {last} | '
                   f'{evaluations or "-"} |')
  return lines


def draw(table, output, reference=None, task='dmc_cartpole_balance',
         marks=(5000, 105000), random=None):
  """Each program's mean over its runs at each step, with the band of its
  runs' means (min to max); the published runs' returns at `marks` faint
  behind; `random`, the random policy's return, dashed."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  figure, axes = plt.subplots(figsize=(6, 4))
  if reference:
    import plotting
    published = plotting.read_reference(reference).get(task, {})
    for points in [p for runs in published.values() for p in runs]:
      near = [min(points, key=lambda point: abs(point[0] - mark))
              for mark in marks]
      axes.scatter(*zip(*near), color='lightgray', zorder=0, s=18)
    axes.scatter([], [], color='lightgray', s=18,
                 label='published (full config), each run')
  for program in dict.fromkeys(row[0] for row in table):
    by_step = {}
    for row in table:
      if row[0] == program:
        by_step.setdefault(row[2], []).append(row[4])
    steps = sorted(by_step)
    means = [np.mean(by_step[step]) for step in steps]
    line, = axes.plot(steps, means, marker='o', label=f'{program} (mean of '
                      f'runs)')
    axes.fill_between(steps, [min(by_step[s]) for s in steps],
                      [max(by_step[s]) for s in steps], alpha=0.2,
                      color=line.get_color())
  if random is not None:
    axes.axhline(random, color='gray', linestyle='--', linewidth=1,
                 label='random actions')
  axes.set_xlabel('environment steps')
  axes.set_ylabel('test return (10 episodes per run)')
  axes.set_title(task)
  axes.legend(fontsize=8)
  figure.tight_layout()
  figure.savefig(output)


def parse(argv):
  parser = argparse.ArgumentParser(
      prog='compare.py', description=__doc__.split('\n\n')[0])
  parser.add_argument(
      '--program', nargs='+', action='append', required=True,
      metavar=('NAME', 'RUN'),
      help='a program\'s name and its run folders (give it once per program)')
  parser.add_argument('--output', required=True, type=pathlib.Path,
                      help='the CSV of evaluations to write')
  parser.add_argument('--plot', type=pathlib.Path, help='a PNG to draw')
  parser.add_argument('--reference', type=pathlib.Path,
                      help="the published runs (the original's "
                      'scores/dreamer.json), drawn faint behind')
  parser.add_argument('--progress', type=pathlib.Path,
                      help='a markdown table of how far each run is')
  args = parser.parse_args(argv)
  programs = {}
  for name, *logdirs in args.program:
    missing = [d for d in logdirs if not pathlib.Path(d).is_dir()]
    if not logdirs or missing:
      parser.error(f'--program {name}: give its run folders ('
                   f'{", ".join(missing) or "none given"} not a folder)')
    programs[name] = logdirs
  return args, programs


def main(argv=None):
  args, programs = parse(argv)
  table = rows(programs)
  with open(args.output, 'w', newline='') as file:
    writer = csv.writer(file)
    writer.writerow(EVAL_HEADER)
    writer.writerows(table)
  print(f'{len(table)} evaluations written to {args.output}.')
  task = task_of(programs)
  for line in statement(programs, balance=task == 'dmc_cartpole_balance'):
    print(line)
  if args.progress:
    args.progress.write_text('\n'.join(progress(programs)) + '\n')
    print(f'Progress table written to {args.progress}.')
  if args.plot and table:
    randoms = [value for logdirs in programs.values() for value in map(
        random_return, logdirs) if value is not None]
    draw(table, args.plot, args.reference, task,
         random=np.mean(randoms) if randoms else None)
    print(f'Plot written to {args.plot}.')
  return 0


if __name__ == '__main__':
  sys.exit(main())
