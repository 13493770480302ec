"""The results table of a sweep beside the paper's, and the aggregate over
tasks the field now reports: the interquartile mean (IQM) of normalized
scores with a stratified bootstrap confidence interval (Agarwal et al.,
NeurIPS 2021, "Deep RL at the edge of the statistical precipice").

`rliable` (that paper's library) installs on this stack but does not
import (its `arch` dependency breaks with pandas 3), so the IQM and the
bootstrap are written here as rliable defines them: IQM =
scipy.stats.trim_mean(scores, 0.25) over all runs of all tasks; the
interval is the percentile interval of that statistic over `reps`
resamples, each drawing every task's seeds with replacement (stratified by
task). Used by `plotting.py --format table`.
"""

import csv

import numpy as np

# DeepMind Control returns are in [0, 1000]: a score is return / 1000.
SCORE_SCALE = 1000.0
REPS = 2000
CONFIDENCE = 0.95
TABLE_HEADER = ('task', 'step', 'ours_mean', 'ours_std', 'ours_runs',
                'paper_mean', 'paper_std', 'paper_runs')


def iqm(scores):
  """The interquartile mean: the mean of the sorted scores without the
  lowest and highest int(n / 4) (scipy.stats.trim_mean(scores, 0.25))."""
  values = np.sort(np.asarray(scores, dtype=float).ravel())
  cut = int(0.25 * len(values))
  return float(np.mean(values[cut:len(values) - cut]))


def stratified_bootstrap(groups, statistic=iqm, reps=REPS,
                         confidence=CONFIDENCE, seed=0):
  """(low, high): the percentile interval of `statistic` over `reps`
  resamples of `groups` (a list of 1-D arrays, one per task), each group
  resampled with replacement to its own size."""
  rng = np.random.default_rng(seed)
  groups = [np.asarray(group, dtype=float) for group in groups]
  values = np.empty(reps)
  for rep in range(reps):
    values[rep] = statistic(np.concatenate([
        group[rng.integers(0, len(group), len(group))] for group in groups]))
  tail = 100 * (1 - confidence) / 2
  low, high = np.percentile(values, [tail, 100 - tail])
  return float(low), float(high)


def reach(points):
  """The last step a run's test returns stand for: its last evaluation
  plus its evaluation gap (the largest between two evaluations; with one
  evaluation, its step)."""
  steps = sorted(s for s, _ in points)
  if not steps:
    return 0
  gap = max(np.diff(steps)) if len(steps) > 1 else steps[0]
  return steps[-1] + gap


def value_at(points, step):
  """The last value of a run's (step, value) `points` at or before `step`,
  or None if there is none or the run did not reach `step` (see reach)."""
  before = [(s, v) for s, v in points if s <= step]
  if not before or step > reach(points):
    return None
  return max(before)[1]


def evaluation_points(ours, paper, at=None):
  """The steps of a task's table rows: `at` if given, else the paper's
  evaluation steps our runs reached (see reach), else our runs' last
  evaluation."""
  if at:
    return sorted(at)
  reached = max((reach(points) for points in ours), default=0)
  steps = sorted({s for points in paper for s, _ in points if s <= reached})
  return steps or [max((s for points in ours for s, _ in points), default=0)]


def spread(values):
  """(mean, std over runs (ddof 1; 0 for one run), count) or Nones."""
  values = [v for v in values if v is not None]
  if not values:
    return None, None, 0
  std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
  return float(np.mean(values)), std, len(values)


def table(runs, reference, at=None):
  """Rows of TABLE_HEADER, and {step: {'ours': [scores per task], 'paper':
  [...]}} for the aggregate. `runs` are plotting's (task, label, points),
  `reference` its read_reference dict ({task: {method: [points]}})."""
  by_task = {}
  for task, _, points in runs:
    by_task.setdefault(task, []).append(points)
  rows, groups = [], {}
  for task, ours in by_task.items():
    paper = [p for method in reference.get(task, {}).values() for p in method]
    for step in evaluation_points(ours, paper, at):
      mine = [value_at(points, step) for points in ours]
      theirs = [dict(points).get(step) for points in paper]
      rows.append((task, step) + spread(mine) + spread(theirs))
      for name, values in (('ours', mine), ('paper', theirs)):
        values = [v / SCORE_SCALE for v in values if v is not None]
        groups.setdefault(step, {}).setdefault(name, {})[task] = values
  return rows, groups


def aggregates(groups, tasks):
  """Rows (step, who, IQM, low, high, runs) at each step where every task
  of `tasks` has scores of that side."""
  rows = []
  for step, sides in sorted(groups.items()):
    for who, per_task in sorted(sides.items()):
      scores = [per_task.get(task) for task in tasks]
      if not all(scores):
        continue
      low, high = stratified_bootstrap(scores)
      rows.append((step, who, iqm(np.concatenate(scores)), low, high,
                   sum(map(len, scores))))
  return rows


def cell(value, digits=1):
  return '' if value is None else f'{value:.{digits}f}'


def write_table(runs, reference, path, at=None):
  """Writes PATH (CSV: TABLE_HEADER rows, then the aggregate rows with
  task `IQM (ours)` / `IQM (paper)`, the interval in the std columns as
  low;high) and PATH with suffix .md (markdown); returns the .md path."""
  import pathlib
  rows, groups = table(runs, reference, at)
  tasks = list(dict.fromkeys(task for task, _, _ in runs))
  summary = aggregates(groups, tasks)
  with open(path, 'w', newline='', encoding='utf-8') as file:
    writer = csv.writer(file, lineterminator='\n')
    writer.writerow(TABLE_HEADER)
    for task, step, mean, std, count, pmean, pstd, pcount in rows:
      writer.writerow([task, int(step), cell(mean), cell(std), count,
                       cell(pmean), cell(pstd), pcount])
    for step, who, value, low, high, count in summary:
      writer.writerow([f'IQM ({who})', int(step), cell(value, 3),
                       f'{low:.3f};{high:.3f}', count, '', '', ''])
  markdown = pathlib.Path(path).with_suffix('.md')
  markdown.write_text(to_markdown(rows, summary), encoding='utf-8')
  return markdown


def to_markdown(rows, summary):
  """The table and the aggregate as markdown."""
  lines = [
      '| task | step | ours: mean ± std (runs) | paper: mean ± std (runs) |',
      '| --- | ---: | ---: | ---: |']
  side = lambda mean, std, count: (
      f'{mean:.1f} ± {std:.1f} ({count})' if count else '–')
  for task, step, mean, std, count, pmean, pstd, pcount in rows:
    lines.append(f'| {task} | {int(step):,} | {side(mean, std, count)} | '
                 f'{side(pmean, pstd, pcount)} |')
  if summary:
    lines += [
        '', f'IQM of the normalized scores (return / {SCORE_SCALE:.0f}) over '
        f'all runs of all tasks, {CONFIDENCE:.0%} stratified bootstrap '
        f'interval ({REPS} resamples):', '',
        '| step | who | IQM | interval | runs |',
        '| ---: | --- | ---: | --- | ---: |']
    for step, who, value, low, high, count in summary:
      lines.append(f'| {int(step):,} | {who} | {value:.3f} | '
                   f'[{low:.3f}, {high:.3f}] | {count} |')
  return '\n'.join(lines) + '\n'
