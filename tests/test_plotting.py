"""plotting.py: reading runs, pooling and binning, the figure, the CSV and
the command line's errors."""

import csv
import json
import subprocess
import sys

import pytest

import plotting
from helpers import ROOT

TASK = 'dmc_cartpole_balance'
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
HEADER = 'task,label,step,mean,min,max,runs'


def make_run(folder, points, task=TASK, extra_lines=()):
  """A logdir with metrics.jsonl (test returns between other metric lines)
  and, unless `task` is None, config.json."""
  folder.mkdir(parents=True, exist_ok=True)
  lines = []
  for step, value in points:
    lines.append(json.dumps({'step': step, 'model_loss': 0.5}))
    lines.append(json.dumps(
        {'step': step, 'test/return': value, 'test/length': 1000}))
    lines.append(json.dumps({'step': step, 'train/return': -value}))
  lines += list(extra_lines)
  (folder / 'metrics.jsonl').write_text('\n'.join(lines) + '\n')
  if task is not None:
    (folder / 'config.json').write_text(json.dumps({'task': task, 'seed': 0}))
  return folder


@pytest.fixture
def reference(tmp_path):
  """Two dreamer runs of TASK at steps 100, 200 and 300."""
  path = tmp_path / 'dreamer.json'
  path.write_text(json.dumps([
      {'task': TASK, 'method': 'dreamer', 'seed': '0',
       'xs': [100.0, 200.0, 300.0], 'ys': [100.0, 200.0, 300.0]},
      {'task': TASK, 'method': 'dreamer', 'seed': '1',
       'xs': [100.0, 200.0, 300.0], 'ys': [300.0, 400.0, 500.0]},
  ]))
  return path


@pytest.fixture
def baselines(tmp_path):
  path = tmp_path / 'baselines.json'
  path.write_text(json.dumps({
      TASK: {'d4pg_100m': 992.8, 'a3c_100m_proprio': 951.6},
      'dmc_walker_walk': {'d4pg_100m': 968.3}}))
  return path


def run_csv(tmp_path, logdirs, reference, *flags):
  """The CSV lines main writes for `logdirs`."""
  output = tmp_path / 'out.csv'
  plotting.main([
      '--logdirs', *map(str, logdirs), '--reference', str(reference),
      '--output', str(output), '--format', 'csv', *flags])
  return output.read_text().splitlines()


def test_binning_gives_exact_rows_for_ours_and_reference(tmp_path, reference):
  run = make_run(tmp_path / 'a', [(0, 10), (50, 20), (100, 30), (200, 40)])
  lines = run_csv(tmp_path, [run], reference, '--bins', '2')
  # Edges 0, 100, 200, 300: bins [0, 100], (100, 200], (200, 300].
  assert lines == [
      HEADER,
      f'{TASK},dreamer (published),50,200,100,300,2',
      f'{TASK},dreamer (published),150,300,200,400,2',
      f'{TASK},dreamer (published),250,400,300,500,2',
      f'{TASK},ours,50,20,20,20,1',
      f'{TASK},ours,150,40,40,40,1',
  ]


def test_bin_index_puts_upper_edges_in_their_bin():
  steps = [0, 1, 10_000, 10_001, 99_999, 100_000, 5_000_000]
  index = plotting.bin_index(steps, span=100_000, count=30)
  assert list(index) == [0, 0, 2, 3, 29, 29, 1499]
  assert list(plotting.bin_index([0, 1, 2, 3e6], span=1, count=30)) == [
      0, 29, 59, 90_000_000 - 1]


def test_runs_only_at_step_0_use_the_reference_steps(tmp_path, reference):
  run = make_run(tmp_path / 'a', [(0, 10)])
  lines = run_csv(tmp_path, [run], reference, '--bins', '3')
  # Width 300 / 3: the reference's steps 100, 200 and 300 fill three bins.
  assert [line.split(',')[1:3] for line in lines[1:]] == [
      ['dreamer (published)', '50'], ['dreamer (published)', '150'],
      ['dreamer (published)', '250'], ['ours', '50']]


def test_runs_of_one_task_and_label_are_pooled(tmp_path, reference):
  first = make_run(tmp_path / 'a', [(10, 4), (20, 6), (150, 10)])
  second = make_run(tmp_path / 'b', [(30, 2), (190, 20), (200, 40)])
  third = make_run(tmp_path / 'c', [(50, 11), (200, 0)])
  other = make_run(tmp_path / 'd', [(40, 1000)])
  lines = run_csv(
      tmp_path, [first, second, third, other], reference, '--bins', '4',
      '--label', 'ours', 'ours', 'ours', 'other')
  # Width 50. (0, 50]: the runs' means are 5, 2 and 11 (step 50 is in it);
  # (50, 100] is empty; (100, 150] has only the first run; (150, 200] has
  # the second (mean of 20 and 40) and the third.
  ours = [line for line in lines if ',ours,' in line]
  assert ours == [
      f'{TASK},ours,25,6,2,11,3',
      f'{TASK},ours,125,10,10,10,1',
      f'{TASK},ours,175,15,0,30,2',
  ]
  assert [line for line in lines if ',other,' in line] == [
      f'{TASK},other,25,1000,1000,1000,1']


def test_default_binning_makes_30_bins_over_our_steps(tmp_path, reference):
  steps = range(0, 100_001, 1000)
  run = make_run(tmp_path / 'a', [(step, step / 1000) for step in steps])
  lines = run_csv(tmp_path, [run], reference)
  ours = [line.split(',') for line in lines if ',ours,' in line]
  width = 100_000 / 30
  assert len(ours) == 30
  assert [float(row[2]) for row in ours] == pytest.approx(
      [(k + 0.5) * width for k in range(30)])
  assert ours[0][3:] == ['1.5', '1.5', '1.5', '1']  # Steps 0 to 3000.
  assert ours[-1][3:] == ['98.5', '98.5', '98.5', '1']  # 97000 to 1e5.
  # The reference's steps 100 to 300 fall into the first bin.
  assert [line for line in lines if 'published' in line] == [
      f'{TASK},dreamer (published),{width / 2!r},300,200,400,2']


def test_png_is_written_and_summary_printed(tmp_path, reference, capsys):
  run = make_run(tmp_path / 'a', [(0, 10), (100, 20)])
  output = tmp_path / 'curves.csv'
  plotting.main([
      '--logdirs', str(run), '--reference', str(reference),
      '--output', str(output)])
  assert output.read_bytes().startswith(PNG_SIGNATURE)
  out = capsys.readouterr().out.splitlines()
  assert len(out) == 1
  assert out[0].startswith('1 runs, 1 tasks, 2 test returns read')


def test_format_csv_does_not_follow_the_suffix(tmp_path, reference):
  run = make_run(tmp_path / 'a', [(0, 10)])
  output = tmp_path / 'curves.png'
  plotting.main([
      '--logdirs', str(run), '--reference', str(reference),
      '--output', str(output), '--format', 'csv'])
  assert output.read_text().splitlines()[0] == HEADER


def test_figure_has_one_panel_per_task(tmp_path, reference, baselines):
  runs = [
      (TASK, 'ours', [(0, 10.0), (100, 20.0)]),
      (TASK, 'ours', [(0, 30.0), (100, 40.0)]),
      ('dmc_walker_walk', 'ours', [(0, 1.0), (50, 2.0)]),
  ]
  panels = plotting.pool(runs, plotting.read_reference(reference), 2)
  figure = plotting.draw(panels, plotting.read_baselines(baselines))
  axes = figure.get_axes()
  assert [ax.get_title() for ax in axes] == [TASK, 'dmc_walker_walk']
  assert axes[0].get_xlabel() == 'environment steps'
  assert axes[0].get_ylabel() == 'test return'
  legend = [text.get_text() for text in axes[0].get_legend().get_texts()]
  assert legend == [
      'dreamer (published)', 'ours', 'd4pg_100m', 'a3c_100m_proprio']
  dashed = [
      line for line in axes[0].get_lines() if line.get_linestyle() == '--']
  assert [tuple(line.get_ydata()) for line in dashed] == [
      (992.8, 992.8), (951.6, 951.6)]
  ours = [line for line in axes[0].get_lines() if line.get_label() == 'ours']
  assert list(ours[0].get_ydata()) == [20.0, 30.0]
  assert len(axes[0].collections) == 2  # A min-max band per curve.
  assert [[text.get_text() for text in ax.texts] for ax in axes] == [
      [], ['no reference curve']]


def test_malformed_lines_are_skipped_with_one_warning(
    tmp_path, reference, capsys):
  bad = [
      'not json', '[1, 2]', '{"step": "x", "test/return": 1}',
      '{"test/return": 5}', '{"step": 10, "test/return": NaN}',
      '{"step": 10, "test/return": true}', '{"step": 10, "test/ret',
  ]
  run = make_run(
      tmp_path / 'a', [(0, 10), (100, 20)],
      extra_lines=['', *bad, '{"step": 120, "model_loss": 2}'])
  lines = run_csv(tmp_path, [run], reference, '--bins', '1')
  assert [line for line in lines if ',ours,' in line] == [
      f'{TASK},ours,50,15,15,15,1']
  captured = capsys.readouterr()
  assert captured.err.splitlines() == [
      f'warning: skipped 7 malformed lines in {run / "metrics.jsonl"}']
  assert '(7 malformed lines skipped)' in captured.out


def test_task_missing_from_reference_is_drawn_alone(
    tmp_path, reference, capsys):
  run = make_run(tmp_path / 'a', [(0, 10), (100, 20)], task='dmc_foo_bar')
  lines = run_csv(tmp_path, [run], reference, '--bins', '1')
  assert lines == [HEADER, 'dmc_foo_bar,ours,50,15,15,15,1']
  out = capsys.readouterr().out.splitlines()
  assert 'dmc_foo_bar: no reference curve' in out[0]
  assert 'reference curves for 0 of 1 tasks' in out[1]

  panels = plotting.pool(
      [('dmc_foo_bar', 'ours', [(0, 10.0)])],
      plotting.read_reference(reference))
  axes, = plotting.draw(panels).get_axes()
  assert [text.get_text() for text in axes.texts] == ['no reference curve']
  assert [line.get_label() for line in axes.get_lines()] == ['ours']


def test_original_style_logdir_takes_task_from_path(tmp_path, reference):
  run = make_run(
      tmp_path / 'runs' / 'dmc_walker_walk' / 'dreamer' / '1',
      [(0, 10)], task=None)
  lines = run_csv(tmp_path, [run], reference)
  # Only step 0 and no reference curve: bins of width 1.
  assert lines == [HEADER, 'dmc_walker_walk,ours,0.5,10,10,10,1']


def test_tasks_option_overrides_config_and_path(tmp_path, reference):
  first = make_run(tmp_path / 'dmc_cheetah_run' / '1', [(0, 10)])
  second = make_run(tmp_path / 'x' / '2', [(0, 20)], task=None)
  lines = run_csv(
      tmp_path, [first, second], reference, '--tasks', 'dmc_a', 'dmc_b')
  assert [line.split(',')[0] for line in lines[1:]] == ['dmc_a', 'dmc_b']


def test_unknown_task_asks_for_tasks_option(tmp_path, reference, capsys):
  run = make_run(tmp_path / 'runs' / '1', [(0, 10)], task=None)
  with pytest.raises(SystemExit) as raised:
    run_csv(tmp_path, [run], reference)
  assert raised.value.code == 2
  err = capsys.readouterr().err.splitlines()
  assert len(err) == 1 and 'cannot tell the task' in err[0]
  assert '--tasks' in err[0]


def test_one_label_names_every_run(tmp_path, reference):
  runs = [make_run(tmp_path / name, [(100, value)])
          for name, value in (('a', 10), ('b', 30))]
  lines = run_csv(tmp_path, runs, reference, '--label', 'mine', '--bins', '1')
  assert [line for line in lines if 'published' not in line] == [
      HEADER, f'{TASK},mine,50,20,10,30,2']


def test_label_count_must_match(tmp_path, reference, capsys):
  runs = [make_run(tmp_path / name, [(0, 10)]) for name in 'abc']
  with pytest.raises(SystemExit) as raised:
    run_csv(tmp_path, runs, reference, '--label', 'x', 'y')
  assert raised.value.code == 2
  assert '--label takes one value or one per logdir (3)' in (
      capsys.readouterr().err)


BAD_INPUTS = {
    'no metrics.jsonl': (
        lambda folder: folder.mkdir(), 'no metrics.jsonl in'),
    'no test returns': (
        lambda folder: make_run(folder, [], extra_lines=['{"step": 1}']),
        'no test returns'),
}


@pytest.mark.parametrize('case', BAD_INPUTS)
def test_bad_runs_exit_with_code_2(tmp_path, reference, capsys, case):
  build, message = BAD_INPUTS[case]
  build(tmp_path / 'run')
  with pytest.raises(SystemExit) as raised:
    run_csv(tmp_path, [tmp_path / 'run'], reference)
  assert raised.value.code == 2
  err = capsys.readouterr().err.splitlines()
  assert len(err) == 1 + (case == 'no test returns')  # + the file's warning.
  assert err[-1].startswith('plotting.py: error: ') and message in err[-1]
  assert not (tmp_path / 'out.csv').exists()


@pytest.mark.parametrize('content, message', [
    (None, 'cannot read the reference file'),
    ('{"task": ', 'is not JSON'),
    ('{"task": "dmc_x"}', 'is not a JSON list'),
    ('[{"task": "dmc_x", "method": "d", "xs": [1], "ys": []}]', 'run 0 of'),
])
def test_bad_reference_exits_with_code_2(tmp_path, capsys, content, message):
  run = make_run(tmp_path / 'a', [(0, 10)])
  path = tmp_path / 'bad.json'
  if content is not None:
    path.write_text(content)
  with pytest.raises(SystemExit) as raised:
    run_csv(tmp_path, [run], path)
  assert raised.value.code == 2
  err = capsys.readouterr().err.splitlines()
  assert len(err) == 1 and message in err[0]


def test_command_line_writes_png(tmp_path, reference, baselines):
  run = make_run(tmp_path / 'a', [(0, 10), (100, 20)])
  output = tmp_path / 'curves.png'
  result = subprocess.run(
      [sys.executable, str(ROOT / 'plotting.py'), '--logdirs', str(run),
       '--reference', str(reference), '--baselines', str(baselines),
       '--output', str(output)],
      capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stderr
  assert result.stderr == ''
  assert result.stdout.startswith('1 runs, 1 tasks, 2 test returns read')
  assert output.read_bytes().startswith(PNG_SIGNATURE)


def test_command_line_error_has_no_traceback(tmp_path, reference):
  result = subprocess.run(
      [sys.executable, str(ROOT / 'plotting.py'), '--logdirs',
       str(tmp_path / 'missing'), '--reference', str(reference),
       '--output', str(tmp_path / 'x.png')],
      capture_output=True, text=True, timeout=60)
  assert result.returncode == 2
  assert result.stderr.splitlines() == [
      f'plotting.py: error: no metrics.jsonl in {tmp_path / "missing"}']


def test_max_step_leaves_out_later_points(tmp_path):
  run = tmp_path / 'dmc_cartpole_balance'
  run.mkdir()
  lines = [{'step': step, 'test/return': float(step)} for step in (10, 20, 30)]
  (run / 'metrics.jsonl').write_text(
      '\n'.join(json.dumps(line) for line in lines) + '\n')
  reference = tmp_path / 'reference.json'
  reference.write_text(json.dumps([{
      'task': 'dmc_cartpole_balance', 'method': 'dreamer', 'seed': '0',
      'xs': [5, 15, 1000], 'ys': [1.0, 2.0, 3.0]}]))
  output = tmp_path / 'out.csv'
  plotting.main(['--logdirs', str(run), '--reference', str(reference),
                 '--output', str(output), '--format', 'csv', '--bins', '2',
                 '--max_step', '2e1'])
  rows = list(csv.DictReader(output.open()))
  assert max(float(row['step']) for row in rows) <= 20
  assert {row['label'] for row in rows} == {'dreamer (published)', 'ours'}


def test_format_evaluations_gives_one_row_per_test_episode(tmp_path, reference):
  ours = make_run(tmp_path / 'ours', [(100, 5.0), (200, 7.5)])
  original = make_run(tmp_path / 'dmc_cartpole_balance' / '3', [(100, 1.0)],
                      task=None, extra_lines=[json.dumps(
                          {'step': 150, 'action_ent': -2.0})])
  output = tmp_path / 'runs.csv'
  plotting.main(['--logdirs', str(ours), str(original), '--label', 'port',
                 'original', '--reference', str(reference), '--format',
                 'evaluations', '--output', str(output)])
  assert output.read_text().splitlines() == [
      'program,task,seed,step,test_return,action_ent,model_loss',
      'port,dmc_cartpole_balance,0,100,5,,0.5',
      'port,dmc_cartpole_balance,0,200,7.5,,0.5',
      'original,dmc_cartpole_balance,3,100,1,,0.5']


def test_max_step_figure_draws_the_reference_up_to_its_edge(tmp_path):
  run = make_run(tmp_path / 'ours', [(10, 1.0), (20, 2.0)])
  reference = tmp_path / 'reference.json'
  reference.write_text(json.dumps([{
      'task': 'dmc_cartpole_balance', 'method': 'dreamer', 'seed': '0',
      'xs': [5, 1000, 2000], 'ys': [1.0, 3.0, 4.0]}]))
  runs, total, _ = plotting.read_runs([str(run)], ['ours'], [None])
  runs, cut = plotting.until(
      runs, plotting.read_reference(reference), 20, keep_next=True)
  assert cut['dmc_cartpole_balance']['dreamer'] == [[(5.0, 1.0), (1000.0, 3.0)]]
  figure = plotting.draw(plotting.pool(runs, cut, 2), last=20)
  axes = figure.axes[0]
  assert axes.get_xlim() == (0, 20)
  published = [line for line in axes.lines
               if line.get_label() == 'dreamer (published)']
  assert published[0].get_alpha() < 1
  assert max(published[0].get_xdata()) > 20


def test_saturation_exit_needs_two_episodes_in_a_row_after_the_prefill():
  returns = [(1000, 300.0), (5000, 300.0), (6000, 140.0), (7000, 240.0),
             (8000, 140.0), (9000, 250.0), (10000, 260.0), (11000, 150.0)]
  assert plotting.saturation_exit(returns, 5000) == 9000
  assert plotting.saturation_exit(returns[:-2], 5000) is None
  assert plotting.saturation_exit(returns, 5000, episodes=1) == 7000
  assert plotting.saturation_exit(returns, 0) == 1000


def test_format_runs_gives_one_row_per_run(tmp_path, reference):
  lines = []
  for step, ret, ent in [(5000, 300, None), (6000, 140, -9.0), (7000, 250, -8.0),
                         (8000, 260, -4.0), (9000, 270, -3.0)]:
    lines.append({'step': step, 'train/return': ret})
    if ent is not None:
      lines.append({'step': step, 'action_ent': ent, 'fps': step / 1000})
  run = make_run(tmp_path / 'ours', [(5000, 136.0)],
                 extra_lines=[json.dumps(line) for line in lines])
  output = tmp_path / 'runs.csv'
  plotting.main(['--logdirs', str(run), '--label', 'port', '--reference',
                 str(reference), '--format', 'runs', '--output', str(output)])
  assert output.read_text().splitlines() == [
      'program,task,seed,last_step,exit_step,action_ent_before,'
      'action_ent_after,fps',
      'port,dmc_cartpole_balance,0,9000,7000,-9,-4,7.5']


def test_bin_width_centres_bins_on_its_multiples(tmp_path, reference):
  assert list(plotting.centred_index([0, 2500, 2501, 5000, 7499, 8000], 5000)) \
      == [0, 0, 1, 1, 1, 2]
  first = make_run(tmp_path / 'a', [(5000, 100.0), (10000, 200.0)])
  second = make_run(tmp_path / 'b', [(5000, 140.0), (8000, 300.0)])
  output = tmp_path / 'out.csv'
  plotting.main(['--logdirs', str(first), str(second), '--reference',
                 str(reference), '--format', 'csv', '--bin_width', '5000',
                 '--output', str(output)])
  rows = [row for row in csv.DictReader(output.open())
          if row['label'] == 'ours']
  assert [(row['step'], row['mean'], row['min'], row['max'], row['runs'])
          for row in rows] == [('5000', '120', '100', '140', '2'),
                               ('10000', '250', '200', '300', '2')]


def test_a_sweep_of_both_programs_is_labelled_by_program(tmp_path, reference):
  sweep = tmp_path / 'sweep'
  make_run(sweep / TASK / '0', [(100, 10.0)])
  make_run(sweep / TASK / '1', [(100, 30.0)])
  make_run(sweep / 'original' / TASK / '0', [(100, 50.0)], task=None)
  output = tmp_path / 'out.csv'
  plotting.main(['--sweep', str(sweep), '--reference', str(reference),
                 '--output', str(output), '--format', 'csv'])
  rows = [row for row in csv.DictReader(output.open())
          if row['label'] in ('ours', 'original')]
  assert {(row['label'], row['mean'], row['runs']) for row in rows} == {
      ('ours', '20', '2'), ('original', '50', '1')}
