"""diff_original.py on bad input: exit status 2 and one line on stderr,
before anything heavy is imported (no checkout needed)."""

import subprocess
import sys

import pytest

from helpers import ROOT


def run(*flags):
  return subprocess.run(
      [sys.executable, str(ROOT / 'diff_original.py'), *flags],
      capture_output=True, text=True, timeout=120, cwd=ROOT)


def one_line_refusal(result, *words):
  assert result.returncode == 2, result
  assert result.stdout == '', result.stdout
  lines = result.stderr.splitlines()
  assert len(lines) == 1, result.stderr
  assert lines[0].startswith('diff_original.py: '), lines
  assert 'Traceback' not in result.stderr
  for word in words:
    assert word in lines[0], lines[0]


def test_missing_path(tmp_path):
  one_line_refusal(run('--original', str(tmp_path / 'nowhere')),
                   'no such directory')


@pytest.mark.parametrize('flags, word', [
    (['--precision', '8'], '--precision'),
    (['--config', 'huge'], '--config'),
    (['--updates', 'two'], '--updates'),
    (['--updates', '-1'], '--updates'),
    (['--no-such-flag'], '--no-such-flag'),
])
def test_bad_flag(tmp_path, flags, word):
  one_line_refusal(run('--original', str(tmp_path), *flags), word)


def test_missing_original_flag():
  one_line_refusal(run(), '--original')


def test_unknown_checkout_is_refused_without_force(tmp_path):
  (tmp_path / 'dreamer.py').write_text('# not the original\n')
  one_line_refusal(run('--original', str(tmp_path)), 'dreamer.py',
                   '--force')


def test_write_reference_is_small_float32_only(tmp_path):
  one_line_refusal(run('--original', str(tmp_path), '--precision', '16',
                       '--write-reference', str(tmp_path / 'ref')),
                   '--write-reference')
