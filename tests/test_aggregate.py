"""aggregate.py: the IQM and its stratified bootstrap against plain numpy,
and the table of a sweep (plotting.py --sweep --format table)."""

import json

import numpy as np
import pytest

import aggregate
import plotting

TASK = 'dmc_cartpole_balance'


@pytest.mark.parametrize('size', [1, 4, 5, 7, 8, 100])
def test_iqm_is_the_mean_of_the_middle_half(size):
  rng = np.random.default_rng(size)
  scores = rng.normal(size=size)
  cut = size // 4
  expected = np.mean(np.sort(scores)[cut:size - cut])
  assert aggregate.iqm(scores) == pytest.approx(expected)
  assert aggregate.iqm(rng.permutation(scores)) == pytest.approx(expected)


def test_iqm_matches_scipy_trim_mean():
  stats = pytest.importorskip('scipy.stats')
  scores = np.random.default_rng(0).uniform(size=(5, 20))
  assert aggregate.iqm(scores) == pytest.approx(
      stats.trim_mean(scores, 0.25, axis=None))


def test_bootstrap_resamples_within_each_task():
  """Resampling within tasks: constant tasks give a zero-width interval
  even though the tasks differ; the interval of noisy tasks holds the IQM
  and matches a plain numpy loop with the same draws."""
  constant = [np.full(5, 0.2), np.full(5, 0.8), np.full(3, 0.5)]
  low, high = aggregate.stratified_bootstrap(constant, reps=200)
  assert low == high == pytest.approx(aggregate.iqm(np.concatenate(constant)))
  rng = np.random.default_rng(1)
  groups = [rng.uniform(size=5) for _ in range(4)]
  low, high = aggregate.stratified_bootstrap(groups, reps=500, seed=3)
  draws = np.random.default_rng(3)
  values = []
  for _ in range(500):
    sample = np.concatenate(
        [g[draws.integers(0, len(g), len(g))] for g in groups])
    values.append(np.mean(np.sort(sample)[5:15]))
  assert (low, high) == pytest.approx(tuple(np.percentile(values, [2.5, 97.5])))
  assert low <= aggregate.iqm(np.concatenate(groups)) <= high


def test_value_at_needs_the_run_to_reach_the_step():
  points = [(5000, 1.0), (15000, 2.0), (25000, 3.0)]
  assert aggregate.value_at(points, 15000) == 2.0
  assert aggregate.value_at(points, 20000) == 2.0
  assert aggregate.value_at(points, 35000) == 3.0  # One evaluation gap on.
  assert aggregate.value_at(points, 35001) is None
  assert aggregate.value_at(points, 4999) is None


def make_sweep(folder, returns):
  """DIR/TASK/SEED runs with test returns {(task, seed): [(step, value)]}."""
  for (task, seed), points in returns.items():
    run = folder / task / str(seed)
    run.mkdir(parents=True)
    (run / 'config.json').write_text(json.dumps({'task': task, 'seed': seed}))
    (run / 'metrics.jsonl').write_text(''.join(
        json.dumps({'step': s, 'test/return': v}) + '\n' for s, v in points))


def test_table_of_a_sweep_beside_the_papers(tmp_path, capsys):
  reference = tmp_path / 'dreamer.json'
  reference.write_text(json.dumps([
      {'task': TASK, 'method': 'dreamer', 'seed': str(seed),
       'xs': [5000, 105000, 205000], 'ys': [100 + seed, 500 + seed, 900]}
      for seed in range(3)]))
  make_sweep(tmp_path / 'sweep', {
      (TASK, 0): [(5000, 200), (55000, 300), (105000, 400)],
      (TASK, 1): [(5000, 100), (55000, 300), (105000, 600)],
      ('dmc_reacher_easy', 0): [(5000, 10), (105000, 20)]})
  output = tmp_path / 'results.csv'
  plotting.main(['--sweep', str(tmp_path / 'sweep'), '--reference',
                 str(reference), '--format', 'table', '--output', str(output)])
  rows = output.read_text().splitlines()
  assert rows[0] == ','.join(aggregate.TABLE_HEADER)
  assert rows[1:4] == [
      f'{TASK},5000,150.0,70.7,2,101.0,1.0,3',
      f'{TASK},105000,500.0,141.4,2,501.0,1.0,3',
      'dmc_reacher_easy,105000,20.0,0.0,1,,,0']
  assert rows[4].startswith('IQM (ours),105000,0.')
  markdown = (tmp_path / 'results.md').read_text()
  assert f'| {TASK} | 105,000 | 500.0 ± 141.4 (2) | 501.0 ± 1.0 (3) |' in (
      markdown)
  assert '| 105,000 | ours |' in markdown
  assert 'wrote table' in capsys.readouterr().out


def test_sweep_without_runs_is_an_error(tmp_path, capsys):
  with pytest.raises(SystemExit) as error:
    plotting.main(['--sweep', str(tmp_path), '--reference', 'x.json',
                   '--output', str(tmp_path / 'a.png')])
  assert error.value.code == 2
  assert 'no runs with metrics.jsonl' in capsys.readouterr().err
