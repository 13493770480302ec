"""compare.py: the kept checkpoints' evaluations of two programs, the
difference of their means with a two-level bootstrap interval (against a
plain-Python loop), the table and the progress lines."""

import csv
import json
import random
import statistics

import numpy as np

import compare


def plain_bootstrap(first, second, reps, seed):
  """The two-level bootstrap written as loops: per resample and program,
  its runs drawn with replacement, then each drawn run's episodes."""
  rng = random.Random(seed)
  differences = []
  for _ in range(reps):
    means = []
    for runs in (first, second):
      drawn = [rng.choice(runs) for _ in runs]
      means.append(statistics.mean(
          statistics.mean(rng.choice(run) for _ in run) for run in drawn))
    differences.append(means[0] - means[1])
  return np.percentile(differences, [2.5, 97.5])


def test_the_bootstrap_matches_a_plain_loop():
  rng = np.random.default_rng(1)
  first = [rng.normal(300 + 40 * k, 30, 10).tolist() for k in range(3)]
  second = [rng.normal(250 + 60 * k, 50, 10).tolist() for k in range(3)]
  difference, low, high = compare.bootstrap_difference(
      first, second, reps=4000)
  expected = np.mean([np.mean(r) for r in first]) - np.mean(
      [np.mean(r) for r in second])
  assert abs(difference - expected) < 1e-9
  plain_low, plain_high = plain_bootstrap(first, second, 4000, seed=2)
  width = plain_high - plain_low
  assert abs(low - plain_low) < 0.06 * width
  assert abs(high - plain_high) < 0.06 * width


def test_one_episode_of_one_run_leaves_no_spread():
  assert compare.bootstrap_difference([[500.0]], [[200.0]], reps=50) == (
      300.0, 300.0, 300.0)


def write_run(folder, seed, evaluations, kept=True):
  """A run folder with config.json and an eval/STEP/summary.json per
  {step: returns}."""
  folder.mkdir(parents=True)
  (folder / 'config.json').write_text(json.dumps(
      {'seed': seed, 'action_repeat': 2}))
  for step, returns in evaluations.items():
    where = 'kept/checkpoint' if kept else 'checkpoint'
    (folder / 'eval' / str(step)).mkdir(parents=True)
    (folder / 'eval' / str(step) / 'summary.json').write_text(json.dumps({
        'step': step, 'episodes': len(returns), 'returns': returns,
        'return_mean': float(np.mean(returns)),
        'return_std': float(np.std(returns)),
        'return_min': min(returns), 'return_max': max(returns),
        'checkpoint': f'{folder}/{where}-{step}.npz'}))


def test_table_statement_and_progress(tmp_path):
  for seed in (1, 2):
    write_run(tmp_path / 'a' / str(seed), seed,
              {5000: [130.0, 140.0], 25000: [880.0 + seed, 900.0]})
    write_run(tmp_path / 'b' / str(seed), seed,
              {5000: [135.0, 137.0], 25000: [300.0, 310.0 + seed]})
  write_run(tmp_path / 'c', 9, {5000: [1.0]}, kept=False)  # Not a kept one.
  (tmp_path / 'a' / '1' / 'eval' / 'random').mkdir()  # evaluate.py --random.
  (tmp_path / 'a' / '1' / 'eval' / 'random' / 'summary.json').write_text(
      json.dumps({'episodes': 2, 'return_mean': 1.0, 'checkpoint': None,
                  'policy': 'random'}))
  programs = {'a': [str(tmp_path / 'a' / '1'), str(tmp_path / 'a' / '2')],
              'b': [str(tmp_path / 'b' / '1'), str(tmp_path / 'b' / '2')]}
  output = tmp_path / 'evaluations.csv'
  compare.main(['--program', 'a', *programs['a'], '--program', 'b',
                *programs['b'], '--output', str(output), '--progress',
                str(tmp_path / 'progress.md'), '--plot',
                str(tmp_path / 'plot.png')])
  table = list(csv.reader(output.open()))
  assert table[0] == list(compare.EVAL_HEADER)
  assert table[1] == ['a', '1', '5000', '2', '135.0', '5.0', '130.0', '140.0']
  assert len(table) == 9
  assert compare.read_evaluations(tmp_path / 'c') == {}
  assert compare.random_return(tmp_path / 'a' / '1') == 1.0
  assert compare.random_return(tmp_path / 'a' / '2') is None
  assert compare.task_of(programs) == 'dmc_cartpole_balance'  # No task saved.
  lines = compare.statement(programs, reps=500)
  assert lines[0].startswith('step 5,000: a 135.0 (2 runs), b 136.0 (2 runs)'
                             '; a − b = -1.0')
  assert 'alike within it' in lines[0] and lines[0].endswith('none')
  assert 'differ' in lines[1] and lines[1].endswith('(mean ≥ 800): a')
  unbalanced = compare.statement(programs, reps=500, balance=False)
  assert [line.split('; balancing')[0] for line in lines] == unbalanced
  progress = (tmp_path / 'progress.md').read_text().splitlines()
  assert progress[2] == ('| a | 1 | 0 | - | 5,000: 135.0, 25,000: 890.5 |')
  assert (tmp_path / 'plot.png').stat().st_size > 1000


def test_the_task_comes_from_the_runs_config(tmp_path):
  write_run(tmp_path / 'original', 1, {5000: [1.0]})  # No task in it.
  write_run(tmp_path / 'ours', 1, {5000: [1.0]})
  (tmp_path / 'ours' / 'config.json').write_text(json.dumps(
      {'seed': 1, 'task': 'dmc_walker_walk'}))
  programs = {'original': [str(tmp_path / 'original')],
              'ours': [str(tmp_path / 'ours')]}
  assert compare.task_of(programs) == 'dmc_walker_walk'
