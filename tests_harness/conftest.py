"""The fixtures of the harness's tests (tests_harness/: what runs the
original's code), and the environment every test runs in, as
tests/conftest.py sets it. Shared functions live in tests/helpers.py."""

import os
import pathlib

import pytest

# The fast setting dreamer.py chooses, before anything imports TensorFlow.
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')

ROOT = pathlib.Path(__file__).resolve().parents[1]


def original_dir():
  """DREAMER_ORIGINAL_DIR, or `<repo>/../shared/original-dreamer`."""
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
