"""The fixtures of the agent's tests, and the environment every test runs
in. Shared functions live in helpers.py (tests_harness/ has its own
conftest.py for the harness's tests)."""

import os
import random
import sys

import numpy as np
import pytest

# The fast setting dreamer.py chooses, before anything imports TensorFlow.
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')


@pytest.fixture(autouse=True)
def seeded():
  """Each test starts from the same global random state (Python's, which
  Keras draws unseeded initial weights from, NumPy's, and TensorFlow's once
  it is imported), so no test passes or fails by chance."""
  random.seed(0)
  np.random.seed(0)
  if 'tensorflow' in sys.modules:
    sys.modules['tensorflow'].random.set_seed(0)


@pytest.fixture(scope='session')
def tiny_run(tmp_path_factory):
  """(logdir, stdout) of one tiny dreamer.py run to 160 steps, shared by the
  tests that read it; a test that changes a run works on a copy."""
  from helpers import run_dreamer
  logdir = tmp_path_factory.mktemp('tiny_run')
  return logdir, run_dreamer(logdir, 160)


@pytest.fixture(scope='session')
def reference():
  """The original's numbers, or a skip saying where they were looked for."""
  from helpers import reference_dir
  folder = reference_dir()
  names = ('reference_weights.npz', 'reference_io.npz', 'param_counts.json')
  if not all((folder / name).exists() for name in names):
    pytest.skip(
        f'reference data not found in {folder} (set DREAMER_REFERENCE_DIR to '
        f'the folder holding {", ".join(names)})')
  return folder
