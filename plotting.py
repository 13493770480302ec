"""Test-return learning curves of Dreamer runs next to the original paper's.

    python plotting.py --logdirs runs/a runs/b \\
        --reference scores/dreamer.json --baselines scores/baselines.json \\
        --output curves.png

Reads the `test/return` lines of each run's metrics.jsonl, pools the runs of
one task and label, bins their points over environment steps and draws one
panel per task: the mean over the runs as a line, their min and max as a
band, the original's published runs of the task (`--reference`) binned the
same way and drawn faint behind the others, and the final scores of other
methods (`--baselines`) as dashed lines.
`--format csv` writes the binned curves instead of the figure;
`--format evaluations` one row per evaluation of each run (EVAL_HEADER);
`--format runs` one row per run (RUN_HEADER): how far it got, when its
actor left the saturated phase, and its speed.
`--sweep DIR` reads the runs of a sweep.py folder (DIR/TASK/SEED, and the
original's program's, `sweep.py --original`, in DIR/original/TASK/SEED);
`--format table` writes each task's mean and spread over its runs at the
paper's evaluation steps beside the paper's, and the IQM over tasks with
its bootstrap interval, as CSV (--output) and markdown (.md beside it):
see aggregate.py.
"""

import argparse
import collections
import csv
import json
import math
import pathlib
import sys

import numpy as np

DEFAULT_BINS = 30
TASK_PREFIXES = ('dmc_', 'atari_')
CSV_HEADER = ('task', 'label', 'step', 'mean', 'min', 'max', 'runs')
# One row per test episode: the run's label, task and seed, and the training
# metrics both programs log, as last written before that evaluation.
EVAL_HEADER = ('program', 'task', 'seed', 'step', 'test_return', 'action_ent',
               'model_loss')
# One row per run: the last step logged, the step its actor left the
# saturated phase (saturation_exit), the median action entropy logged before
# and after that step, and the median of the logged fps (environment steps
# per second, collection and training together).
RUN_HEADER = ('program', 'task', 'seed', 'last_step', 'exit_step',
              'action_ent_before', 'action_ent_after', 'fps')
# A saturated actor pushes the cart to one side: dmc_cartpole_balance
# returns 135-150 per 1,000 steps; random actions 200-430.
EXIT_RETURN = 200
EXIT_EPISODES = 2
OURS_COLORS = ('tab:blue', 'tab:orange', 'tab:green', 'tab:purple', 'tab:cyan')
ORIGINAL_COLORS = ('black', 'tab:gray')
BASELINE_COLORS = ('tab:red', 'tab:brown', 'tab:olive', 'tab:pink')

BINNING = f"""\
binning: the curves of a task share one grid of bins of width w = S / N,
where S is the largest step of our runs of that task and N is --bins
(default {DEFAULT_BINS}). Bin k holds the steps s with k*w < s <= (k+1)*w,
the first bin also step 0, so the steps 0 to S make N bins; the grid goes
on past S for the reference runs. (If S is 0, S is the largest reference
step instead, and if that is 0 too, w = 1.) Each run's points in a bin are
averaged, then the mean, min and max are taken over the runs with a point
in that bin (runs = their number); bins without points are left out. A
row's step is the bin centre (k + 0.5)*w. Baselines are not in the CSV.

task: the `task` of RUN/config.json, else the first folder of RUN's path,
from the leaf upward, whose name starts with dmc_ or atari_ (the original's
logdirs such as runs/dmc_walker_walk/dreamer/1); --tasks overrides both."""

Curve = collections.namedtuple('Curve', 'label rows original')
Panel = collections.namedtuple('Panel', 'task curves has_reference')


class InputError(Exception):
  """Bad input: main prints the message as one line and exits with code 2."""


def finite(value):
  """`value` as a float if it is a finite JSON number (not a bool), or None."""
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return None
  try:
    value = float(value)
  except OverflowError:
    return None
  return value if math.isfinite(value) else None


def read_metrics(path):
  """(points, skipped) of a metrics.jsonl file.

  `points` are the (step, test return) pairs of the lines with `test/return`.
  `skipped` counts the malformed lines: not JSON, not an object, or with
  `test/return` but without finite numbers for it and `step`.
  Blank lines and lines of other metrics are ignored without counting.
  """
  points, skipped = [], 0
  try:
    with open(path, encoding='utf-8', errors='replace') as file:
      lines = file.readlines()
  except OSError as error:
    raise InputError(f'cannot read {path}: {error.strerror}') from None
  for line in lines:
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except ValueError:
      skipped += 1
      continue
    if not isinstance(record, dict):
      skipped += 1
    elif 'test/return' in record:
      step, value = finite(record.get('step')), finite(record['test/return'])
      if step is None or value is None:
        skipped += 1
      else:
        points.append((step, value))
  return points, skipped


def find_task(logdir):
  """The task of a run, or None: `task` of logdir/config.json, else the first
  folder of the path, leaf first, whose name starts with dmc_ or atari_."""
  logdir = pathlib.Path(logdir)
  try:
    config = json.loads((logdir / 'config.json').read_text(encoding='utf-8'))
  except (OSError, ValueError):
    config = None
  if isinstance(config, dict) and isinstance(config.get('task'), str):
    return config['task']
  for part in reversed(logdir.resolve().parts):
    if part.startswith(TASK_PREFIXES):
      return part
  return None


def read_run(logdir):
  """(task, points, skipped) of a logdir: see find_task and read_metrics."""
  path = pathlib.Path(logdir) / 'metrics.jsonl'
  if not path.is_file():
    raise InputError(f'no metrics.jsonl in {logdir}')
  points, skipped = read_metrics(path)
  return find_task(logdir), points, skipped


def load_json(path, what):
  """The parsed JSON file at `path`; `what` names it in the error message."""
  try:
    with open(path, encoding='utf-8') as file:
      return json.load(file)
  except OSError as error:
    raise InputError(
        f'cannot read the {what} {path}: {error.strerror}') from None
  except ValueError as error:
    raise InputError(f'the {what} {path} is not JSON: {error}') from None


def read_reference(path):
  """{task: {method: [points of each run]}} from a JSON list of runs
  {"task", "method", "seed", "xs", "ys"}; pairs that are not finite numbers
  are dropped."""
  entries = load_json(path, 'reference file')
  if not isinstance(entries, list):
    raise InputError(f'the reference file {path} is not a JSON list of runs')
  reference = {}
  for index, entry in enumerate(entries):
    valid = (
        isinstance(entry, dict) and isinstance(entry.get('task'), str) and
        isinstance(entry.get('method'), str) and
        isinstance(entry.get('xs'), list) and isinstance(entry.get('ys'), list)
        and len(entry['xs']) == len(entry['ys']))
    if not valid:
      raise InputError(
          f'run {index} of the reference file {path} is not an object with '
          'strings "task" and "method" and lists "xs" and "ys" of one length')
    pairs = [(finite(x), finite(y)) for x, y in zip(entry['xs'], entry['ys'])]
    points = [(x, y) for x, y in pairs if x is not None and y is not None]
    methods = reference.setdefault(entry['task'], {})
    methods.setdefault(entry['method'], []).append(points)
  return reference


def read_baselines(path):
  """{task: {method: final score}} from a JSON object of that shape."""
  data = load_json(path, 'baselines file')
  if not isinstance(data, dict):
    raise InputError(f'the baselines file {path} is not a JSON object')
  baselines = {}
  for task, scores in data.items():
    if not isinstance(scores, dict):
      raise InputError(
          f'{task} of the baselines file {path} is not an object of scores')
    baselines[task] = {}
    for method, score in scores.items():
      if finite(score) is None:
        raise InputError(
            f'{task}/{method} of the baselines file {path} is not a number')
      baselines[task][method] = finite(score)
  return baselines


def bin_index(steps, span, count):
  """The bin of each step on the grid of width w = span / count: bin k holds
  the steps k*w < s <= (k+1)*w, bin 0 also step 0.

  Computed as ceil(s * count / span) - 1, which is exact for integer steps,
  so a step on a bin's upper edge stays in that bin.
  """
  index = np.ceil(np.asarray(steps, dtype=float) * count / span) - 1
  return np.maximum(index, 0).astype(np.int64)


def centred_index(steps, width):
  """The multiple of `width` nearest to each step, as an index k: bin k
  holds the steps (k − 1/2)·w < s <= (k + 1/2)·w and is drawn at k·w."""
  return np.ceil(np.asarray(steps, dtype=float) / width - 0.5).astype(np.int64)


def bin_curve(runs, span, count, width=None):
  """Rows (centre, mean, min, max, runs) of the bins holding points.

  `runs` are lists of (step, value), binned by bin_index, or with `width`
  by centred_index (centre k·width). Each run's points in a bin are
  averaged; mean, min and max are over the runs with a point in the bin,
  whose number is `runs`.
  """
  per_bin = collections.defaultdict(list)
  for points in runs:
    if not points:
      continue
    steps, values = np.asarray(points, dtype=float).T
    index = (centred_index(steps, width) if width else
             bin_index(steps, span, count))
    bins, inverse = np.unique(index, return_inverse=True)
    sums, sizes = np.bincount(inverse, values), np.bincount(inverse)
    for k, total, size in zip(bins, sums, sizes):
      per_bin[int(k)].append(total / size)
  centre = (lambda k: k * width) if width else (
      lambda k: (2 * k + 1) * span / (2 * count))
  return [
      (centre(k), float(np.mean(means)),
       float(min(means)), float(max(means)), len(means))
      for k, means in sorted(per_bin.items())]


def pool(runs, reference, count=DEFAULT_BINS, width=None):
  """Panels, one per task in the order the tasks first appear in `runs`.

  `runs` are (task, label, points); runs of one task and label are pooled
  into one curve. `reference` is read_reference's dict: its runs of the task
  make one curve per method, labelled "METHOD (published)", placed first. All
  curves of a task are binned with bin_index(steps, span, count), span being
  the largest step of our runs of the task, else of its reference runs,
  else `count` (bins of width 1); with `width`, every curve is binned by
  centred_index instead.
  """
  groups = {}
  for task, label, points in runs:
    groups.setdefault(task, {}).setdefault(label, []).append(points)
  panels = []
  for task, ours in groups.items():
    originals = {
        f'{method} (published)': method_runs
        for method, method_runs in reference.get(task, {}).items()}
    largest = [
        max((step for curve_runs in curves.values() for points in curve_runs
             for step, _ in points), default=0.0)
        for curves in (ours, originals)]
    span = next((step for step in largest if step > 0), float(count))
    curves = [
        Curve(label, bin_curve(method_runs, span, count, width), True)
        for label, method_runs in originals.items()]
    curves += [
        Curve(label, bin_curve(label_runs, span, count, width), False)
        for label, label_runs in ours.items()]
    panels.append(Panel(task, curves, bool(originals)))
  return panels


def draw(panels, baselines=None, columns=3, last=None):
  """A matplotlib Figure (Agg canvas, dpi 100) with one panel per task.

  Each curve is its mean line and a min-max band, the published ones faint
  and behind; each baseline of the task ({task: {method: score}}) is a dashed
  horizontal line. A panel without a published curve says "no reference
  curve". `last`, if given, ends the step axis there.
  """
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  baselines = baselines or {}
  columns = max(1, min(columns, len(panels)))
  rows = max(1, math.ceil(len(panels) / columns))
  figure = Figure(
      figsize=(4.6 * columns, 3.4 * rows), dpi=100, layout='constrained')
  FigureCanvasAgg(figure)
  ours_labels = list(dict.fromkeys(
      curve.label for panel in panels for curve in panel.curves
      if not curve.original))
  for index, panel in enumerate(panels):
    axes = figure.add_subplot(rows, columns, index + 1)
    originals = 0
    for curve in panel.curves:
      if curve.original:
        color = ORIGINAL_COLORS[originals % len(ORIGINAL_COLORS)]
        originals += 1
      else:
        color = OURS_COLORS[ours_labels.index(curve.label) % len(OURS_COLORS)]
      if not curve.rows:
        continue
      steps, means, lows, highs, _ = (np.array(c) for c in zip(*curve.rows))
      faint = 0.4 if curve.original else 1.0
      axes.fill_between(steps, lows, highs, color=color, alpha=0.2 * faint,
                        lw=0, zorder=1 if curve.original else 2)
      axes.plot(
          steps, means, color=color, label=curve.label, lw=1.5, alpha=faint,
          zorder=1 if curve.original else 3,
          marker='o' if len(steps) == 1 else None)
    scores = baselines.get(panel.task, {})
    for number, (method, score) in enumerate(scores.items()):
      axes.axhline(
          score, color=BASELINE_COLORS[number % len(BASELINE_COLORS)],
          linestyle='--', lw=1, label=method)
    if not panel.has_reference:
      axes.text(
          0.5, 0.02, 'no reference curve', transform=axes.transAxes,
          ha='center', va='bottom', color='0.35', style='italic')
    if last:
      axes.set_xlim(0, last)
    axes.set_title(panel.task)
    axes.set_xlabel('environment steps')
    axes.set_ylabel('test return')
    axes.grid(alpha=0.3)
    axes.legend(fontsize='small')
  return figure


def format_number(value):
  """A CSV cell: integral values without a fraction, others in full."""
  value = float(value)
  return str(int(value)) if value.is_integer() else repr(value)


def write_csv(panels, path):
  """Writes the rows task,label,step,mean,min,max,runs of every curve."""
  with open(path, 'w', newline='', encoding='utf-8') as file:
    writer = csv.writer(file, lineterminator='\n')
    writer.writerow(CSV_HEADER)
    for panel in panels:
      for curve in panel.curves:
        for step, mean, low, high, runs in curve.rows:
          writer.writerow([panel.task, curve.label] + [
              format_number(x) for x in (step, mean, low, high)] + [runs])


def records(logdir):
  """The JSON objects of a run's metrics.jsonl, in order; other lines are
  left out."""
  path = pathlib.Path(logdir) / 'metrics.jsonl'
  with open(path, encoding='utf-8', errors='replace') as file:
    for line in file:
      try:
        record = json.loads(line)
      except ValueError:
        continue
      if isinstance(record, dict):
        yield record


def evaluations(logdir):
  """[(step, test return, action_ent, model_loss)] of a run's metrics.jsonl,
  the last two as last written before each evaluation (None before any)."""
  rows, last = [], {'action_ent': None, 'model_loss': None}
  for record in records(logdir):
    for key in last:
      if finite(record.get(key)) is not None:
        last[key] = finite(record[key])
    step, value = finite(record.get('step')), finite(record.get('test/return'))
    if step is not None and value is not None:
      rows.append((step, value, last['action_ent'], last['model_loss']))
  return rows


def saturation_exit(returns, start, threshold=EXIT_RETURN,
                    episodes=EXIT_EPISODES):
  """The first step s > `start` at which `episodes` training episodes in a
  row, the first ending at s, return more than `threshold`; None if none.

  `returns` are (step, train return) in order; `start` is the end of the
  random prefill (the pretrain follows it).
  """
  after = [(step, value) for step, value in returns if step > start]
  for index in range(len(after) - episodes + 1):
    if all(value > threshold for _, value in after[index:index + episodes]):
      return after[index][0]
  return None


def run_summary(logdir, prefill=5000):
  """RUN_HEADER's (last_step, exit_step, action_ent_before, action_ent_after,
  fps) of a run's metrics.jsonl; None where there is nothing to take."""
  returns, entropies, fps, last = [], [], [], None
  for record in records(logdir):
    step = finite(record.get('step'))
    if step is None:
      continue
    last = step if last is None else max(last, step)
    for key, values in (('train/return', returns),
                        ('action_ent', entropies), ('fps', fps)):
      if finite(record.get(key)) is not None:
        values.append((step, finite(record[key])))
  exit_step = saturation_exit(returns, prefill)
  median = lambda values: float(np.median(values)) if values else None
  before = [v for s, v in entropies if exit_step is None or s < exit_step]
  after = [v for s, v in entropies if exit_step is not None and s >= exit_step]
  return (last, exit_step, median(before), median(after),
          median([v for _, v in fps]))


def write_runs(logdirs, labels, tasks, path):
  """Writes RUN_HEADER rows, one per run."""
  with open(path, 'w', newline='', encoding='utf-8') as file:
    writer = csv.writer(file, lineterminator='\n')
    writer.writerow(RUN_HEADER)
    for logdir, label, task in zip(logdirs, labels, tasks):
      writer.writerow([label, task or find_task(logdir), find_seed(logdir)] + [
          '' if x is None else format_number(round(x, 2))
          for x in run_summary(logdir)])


def find_seed(logdir):
  """`seed` of RUN/config.json, else RUN's folder name if it is a number."""
  try:
    config = json.loads((pathlib.Path(logdir) / 'config.json').read_text())
    return int(config['seed'])
  except (OSError, ValueError, KeyError, TypeError):
    name = pathlib.Path(logdir).resolve().name
    return int(name) if name.isdigit() else None


def write_evaluations(logdirs, labels, tasks, path):
  """Writes EVAL_HEADER rows of every evaluation of every run."""
  with open(path, 'w', newline='', encoding='utf-8') as file:
    writer = csv.writer(file, lineterminator='\n')
    writer.writerow(EVAL_HEADER)
    for logdir, label, task in zip(logdirs, labels, tasks):
      for step, value, ent, loss in evaluations(logdir):
        writer.writerow([label, task or find_task(logdir), find_seed(logdir)]
                        + [format_number(x) if x is not None else ''
                           for x in (step, value, ent, loss)])


def positive_int(text):
  """argparse type of --bins and --max_step: a positive integer, also as
  1e5."""
  try:
    value = float(text)
  except ValueError:
    value = 0.0
  if not (math.isfinite(value) and value >= 1 and value == int(value)):
    raise argparse.ArgumentTypeError(f'{text} is not a positive integer')
  return int(value)


def make_parser():
  """The command line; its --help ends with the binning rule."""
  parser = argparse.ArgumentParser(
      prog='plotting.py', description=__doc__.split('\n\n')[0],
      epilog=BINNING, formatter_class=argparse.RawDescriptionHelpFormatter)
  runs = parser.add_mutually_exclusive_group(required=True)
  runs.add_argument(
      '--logdirs', nargs='+', metavar='RUN',
      help='run folders holding metrics.jsonl')
  runs.add_argument(
      '--sweep', metavar='DIR',
      help='a sweep.py folder: its runs DIR/TASK/SEED holding metrics.jsonl')
  parser.add_argument(
      '--reference', required=True, metavar='PATH',
      help="the original's scores: a JSON list of "
           '{"task", "method", "seed", "xs", "ys"}')
  parser.add_argument(
      '--baselines', metavar='PATH',
      help='final scores of other methods: {task: {method: score}}, drawn '
           'as dashed lines')
  parser.add_argument(
      '--output', required=True, metavar='PATH', help='the file to write')
  parser.add_argument(
      '--format', choices=('png', 'csv', 'evaluations', 'runs', 'table'),
      default='png',
      help='what to write (not taken from the suffix of --output); '
           'default png')
  parser.add_argument(
      '--bins', type=positive_int, default=DEFAULT_BINS, metavar='N',
      help=f'bins over the steps of our runs of a task (default '
           f'{DEFAULT_BINS}); see below')
  parser.add_argument(
      '--bin_width', type=positive_int, metavar='STEPS',
      help='instead of --bins: bins centred on the multiples of STEPS, each '
           'drawn at its multiple (e.g. 5000 for evaluations every 5,000 '
           'steps)')
  parser.add_argument(
      '--label', nargs='+', metavar='NAME',
      help='legend name: one per logdir, or one for all (default "ours"); '
           'runs of one task and label are pooled')
  parser.add_argument(
      '--max_step', type=positive_int, metavar='STEPS',
      help='leave out every point (ours and the reference) after this many '
           'environment steps, to compare short runs; a figure ends its '
           'step axis there and draws each reference line up to that edge')
  parser.add_argument(
      '--at', nargs='+', type=positive_int, metavar='STEP',
      help='--format table: the steps of its rows (default: the paper\'s '
           'evaluation steps our runs reached, else their last step)')
  parser.add_argument(
      '--tasks', nargs='+', metavar='TASK',
      help='task of each logdir, or one for all, instead of config.json or '
           'the folder name')
  return parser


def per_logdir(values, count, flag, parser):
  """`values` given once per logdir or once for all, as a list of `count`."""
  if len(values) == 1:
    return values * count
  if len(values) != count:
    parser.error(
        f'{flag} takes one value or one per logdir ({count}), '
        f'not {len(values)}')
  return values


def read_runs(logdirs, labels, tasks):
  """([(task, label, points)], points read, lines skipped); warns on stderr
  once per file with malformed lines or without test returns."""
  runs, total, skipped = [], 0, 0
  for logdir, label, task in zip(logdirs, labels, tasks):
    found, points, skip = read_run(logdir)
    task = task or found
    if task is None:
      raise InputError(
          f'cannot tell the task of {logdir} (no config.json with "task" and '
          'no dmc_*/atari_* folder in its path): pass --tasks')
    problems = []
    if skip:
      problems.append(f'skipped {skip} malformed line{"s" * (skip != 1)}')
    if not points:
      problems.append('no test returns')
    if problems:
      path = pathlib.Path(logdir) / 'metrics.jsonl'
      print(f'warning: {"; ".join(problems)} in {path}', file=sys.stderr)
    if points:
      runs.append((task, label, points))
    total += len(points)
    skipped += skip
  if not total:
    raise InputError('no test returns (test/return lines) in ' + ', '.join(
        str(logdir) for logdir in logdirs))
  return runs, total, skipped


def sweep_runs(folder, parser):
  """(run folders, labels) of a sweep that hold metrics.jsonl: ours in
  DIR/TASK/SEED ('ours'), the original's program's (sweep.py --original)
  in DIR/original/TASK/SEED ('original')."""
  found, labels = [], []
  for pattern, label in (('*/*/metrics.jsonl', 'ours'),
                         ('original/*/*/metrics.jsonl', 'original')):
    paths = sorted(str(path.parent) for path in pathlib.Path(folder).glob(
        pattern) if label == 'original' or path.parts[-3] != 'original')
    found += paths
    labels += [label] * len(paths)
  if not found:
    parser.error(f'no runs with metrics.jsonl in {folder}/TASK/SEED or '
                 f'{folder}/original/TASK/SEED')
  return found, labels


def until(runs, reference, last, keep_next=False):
  """`runs` and `reference` without the points after step `last`; with
  `keep_next`, each reference run keeps its first point after `last`, so a
  figure cut at `last` still draws its line up to the edge."""
  cut = lambda points: [(x, y) for x, y in points if x <= last]
  def cut_reference(points):
    later = [(x, y) for x, y in points if x > last]
    return cut(points) + (later[:1] if keep_next else [])
  runs = [(task, label, cut(points)) for task, label, points in runs]
  reference = {
      task: {method: [cut_reference(points) for points in method_runs]
             for method, method_runs in methods.items()}
      for task, methods in reference.items()}
  return runs, reference


def main(argv=None):
  parser = make_parser()
  args = parser.parse_args(argv)
  found = ['ours']
  if args.sweep:
    args.logdirs, found = sweep_runs(args.sweep, parser)
  given = len(args.logdirs)
  labels = per_logdir(args.label or found, given, '--label', parser)
  tasks = per_logdir(args.tasks or [None], given, '--tasks', parser)
  try:
    runs, total, skipped = read_runs(args.logdirs, labels, tasks)
    reference = read_reference(args.reference)
    if args.max_step:
      runs, reference = until(runs, reference, args.max_step,
                              keep_next=args.format == 'png')
    baselines = read_baselines(args.baselines) if args.baselines else {}
    panels = pool(runs, reference, args.bins, args.bin_width)
    for panel in panels:
      if not panel.has_reference:
        print(f'{panel.task}: no reference curve in {args.reference}, '
              'drawing ours alone')
    if args.format == 'csv':
      write_csv(panels, args.output)
    elif args.format == 'evaluations':
      write_evaluations(args.logdirs, labels, tasks, args.output)
    elif args.format == 'runs':
      write_runs(args.logdirs, labels, tasks, args.output)
    elif args.format == 'table':
      import aggregate
      markdown = aggregate.write_table(runs, reference, args.output, args.at)
      print(f'wrote the markdown table to {markdown}')
    else:
      draw(panels, baselines, last=args.max_step).savefig(
          args.output, format='png')
  except InputError as error:
    print(f'{parser.prog}: error: {error}', file=sys.stderr)
    raise SystemExit(2) from None
  except OSError as error:
    print(f'{parser.prog}: error: cannot write {args.output}: '
          f'{error.strerror or error}', file=sys.stderr)
    raise SystemExit(2) from None
  with_reference = sum(panel.has_reference for panel in panels)
  print(
      f'{given} runs, {len(panels)} tasks, {total} test returns read '
      f'({skipped} malformed lines skipped); reference curves for '
      f'{with_reference} of {len(panels)} tasks; wrote {args.format} to '
      f'{args.output}')


if __name__ == '__main__':
  main()
