"""--keep_checkpoints: copies of the checkpoint at fixed environment steps,
each taken once, never overwritten by a resume past it, each one
evaluable."""

import json
import re

import pytest

import checkpoint
import kept
import tools
from config import make_config
from helpers import run_dreamer, tiny_flags
from test_evaluate import evaluate


def saves(logdir, steps, keep):
  """Saves a checkpoint whose bytes name its step and its turn at each of
  `steps` in order, as a run does; returns the bytes by turn."""
  path = logdir / checkpoint.NAME
  written = []
  for turn, step in enumerate(steps):
    written.append(f'{step}/{turn}'.encode())
    tools.write_atomic(path, lambda file: file.write(written[-1]))
    checkpoint.keep_copy(path, step, keep)
  return written


def copies(logdir):
  return {step: path.read_bytes() for step, path in kept.copies(
      logdir / kept.FOLDER, 'checkpoint', '.npz').items()}


def test_each_kept_step_holds_the_last_save_at_the_first_step_past_it(
    tmp_path):
  # Saves after each burst and after each collection, as dreamer.py's:
  # 80 twice (collection, then the test episode's burst), 120, 160, ...
  saves(tmp_path, [80, 80, 120, 160, 160, 200, 240], keep=(80, 100, 200, 250))
  assert copies(tmp_path) == {80: b'80/1', 120: b'120/2', 200: b'200/5'}


def test_a_resume_past_a_kept_step_leaves_its_copy(tmp_path):
  saves(tmp_path, [80, 120], keep=(80, 120))
  before = copies(tmp_path)
  # The run stopped at 120 and resumes there: its saves from 120 on.
  saves(tmp_path, [160, 200], keep=(80, 120))
  assert copies(tmp_path) == before == {80: b'80/0', 120: b'120/1'}


def test_a_step_passed_before_the_flag_keeps_the_next_save_under_its_step(
    tmp_path, capsys):
  saves(tmp_path, [160, 160, 200], keep=(80, 100))
  assert copies(tmp_path) == {160: b'160/1'}
  out = capsys.readouterr().out
  assert out.count('Kept') == 1
  assert ('Kept the checkpoint of step 160 as kept/checkpoint-160.npz '
          '(--keep_checkpoints 80, 100).') in out


@pytest.mark.parametrize('text, steps', [
    ('', ()), ('5000,25000', (5000, 25000)), ('25e3, 5e3,5000', (5000, 25000)),
    ('0,', (0,))])
def test_steps_parse(text, steps):
  assert kept.parse(text) == steps


@pytest.mark.parametrize('text', ['5000,abc', '-5', '1.5', 'nan'])
def test_a_bad_step_is_refused_by_name(text):
  with pytest.raises(ValueError, match='is not a step; give environment '
                     'steps separated by commas'):
    make_config(keep_checkpoints=text)


@pytest.mark.slow
def test_a_run_keeps_each_step_once_and_each_copy_evaluates(tmp_path):
  logdir = tmp_path / 'run'
  out = run_dreamer(logdir, 160, tiny_flags('--keep_checkpoints', '80,120'))
  assert re.findall(r'Kept the checkpoint of step (\d+)', out) == ['80', '120']
  first = copies(logdir)
  assert sorted(first) == [80, 120]

  # A resume past both, with a step it passed before the flag came (100 is
  # stood for by 120's copy) and one still ahead.
  out = run_dreamer(
      logdir, 240, tiny_flags('--keep_checkpoints', '80,100,120,200'))
  assert re.findall(r'Kept the checkpoint of step (\d+)', out) == ['200']
  second = copies(logdir)
  assert {step: second[step] for step in first} == first
  assert sorted(second) == [80, 120, 200]
  assert not list((logdir / kept.FOLDER).glob('.*'))

  result = evaluate('--logdir', logdir, '--kept', '--episodes', 1, '--video',
                    'none')
  assert re.findall(r'Wrote .*/eval/(\d+)\.', result.stdout) == [
      '80', '120', '200']
  for step in (80, 120, 200):
    summary = json.loads((logdir / 'eval' / str(step) / 'summary.json')
                         .read_text())
    assert summary['step'] == step and summary['episodes'] == 1
    assert summary['checkpoint'] == str(
        logdir / kept.FOLDER / f'checkpoint-{step}.npz')
  again = evaluate('--logdir', logdir, '--kept', '--episodes', 1)
  assert again.stdout.count('is evaluated already (1 episodes, seed 0') == 3
  assert 'Nothing left to evaluate.' in again.stdout
