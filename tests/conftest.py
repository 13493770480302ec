"""Shared fixtures: the reference folder and a tiny agent config."""

import os
import pathlib

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def reference_dir():
  default = ROOT.parent / 'shared' / 'reference'
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


TINY = dict(
    cnn_depth=4, deter_size=16, stoch_size=4, num_units=16, batch_size=3,
    batch_length=6, horizon=5, jit=False, precision='32')


def tiny_config(**overrides):
  import dreamer
  return dreamer.make_config(**{**TINY, **overrides})


def random_batch(config, action_size, seed=0):
  rng = np.random.default_rng(seed)
  shape = (config.batch_size, config.batch_length)
  return {
      'image': rng.integers(0, 256, shape + (64, 64, 3), dtype=np.uint8),
      'action': rng.uniform(-1, 1, shape + (action_size,)).astype(np.float32),
      'reward': rng.normal(size=shape).astype(np.float32),
      'discount': np.ones(shape, np.float32),
  }
