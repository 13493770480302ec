"""The reference folder; the environment every test runs in."""

import os
import pathlib

import pytest

# The fast setting dreamer.py chooses, before anything imports TensorFlow.
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope='session')
def tiny_run(tmp_path_factory):
  """(logdir, stdout) of one tiny dreamer.py run to 160 steps, shared by the
  tests that read it; a test that changes a run works on a copy."""
  from helpers import run_dreamer
  logdir = tmp_path_factory.mktemp('tiny_run')
  return logdir, run_dreamer(logdir, 160)


def original_dir():
  """The checkout of danijar/dreamer the tests that run the original use."""
  default = ROOT.parent / 'shared' / 'original-dreamer'
  return pathlib.Path(os.environ.get('DREAMER_ORIGINAL_DIR', default))


@pytest.fixture(scope='session')
def checkout():
  """The original's checkout, or a skip saying where it was looked for."""
  folder = original_dir()
  if not (folder / 'dreamer.py').exists():
    pytest.skip(f'no checkout of the original Dreamer in {folder} (set '
                f'DREAMER_ORIGINAL_DIR to a danijar/dreamer checkout)')
  return folder


def reference_dir():
  """DREAMER_REFERENCE_DIR, or the golden files committed in
  tests/reference/ (written by diff_original.py --write-reference)."""
  default = ROOT / 'tests' / 'reference'
  return pathlib.Path(os.environ.get('DREAMER_REFERENCE_DIR', default))


@pytest.fixture(scope='session')
def reference():
  """The original's numbers, or a skip saying where they were looked for."""
  folder = reference_dir()
  names = ('reference_weights.npz', 'reference_io.npz', 'param_counts.json')
  if not all((folder / name).exists() for name in names):
    pytest.skip(
        f'reference data not found in {folder} (set DREAMER_REFERENCE_DIR to '
        f'the folder holding {", ".join(names)})')
  return folder
