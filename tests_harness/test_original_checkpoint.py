"""A logdir written by the original's own code (its episodes and its
variables.pkl) resumes and evaluates with ours, with the same weights.

The original runs through harness/step.py (its own process: it needs
tf_keras); its checkout comes from DREAMER_ORIGINAL_DIR (default
`<repo>/../shared/original-dreamer`), and the tests skip without it.
"""

import hashlib
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import checkpoint
import models
import networks
from config import make_config
from helpers import ROOT, run_dreamer
from synthetic import random_batch, recorded_noise

# The golden small config, a cartpole's one action, and what our runs of
# such a logdir need: episodes of 6 agent steps (the original's are 7 long).
SMALL = dict(cnn_depth=8, stoch_size=10, deter_size=40, num_units=50,
             batch_size=3, batch_length=6, horizon=15)
RUN_FLAGS = [
    '--task', 'dmc_cartpole_balance', '--precision', '32', '--prefill', '0',
    '--time_limit', '12', '--eval_every', '12', '--train_every', '12',
    '--train_steps', '1', '--log_every', '12'] + [
        item for key, value in SMALL.items()
        for item in (f'--{key}', str(value))]


@pytest.fixture(scope='module')
def original_logdir(checkout, tmp_path_factory):
  """(logdir, our weights given to the original, its outputs, batch, noise)."""
  folder = tmp_path_factory.mktemp('original')
  config = make_config(precision='32', **SMALL)
  weights = networks.export_weights(models.Dreamer(config, 1).modules)
  batch, noise = random_batch(config, 1, seed=4), recorded_noise(config, 1, 5)
  request = {'config': np.array(json.dumps(dict(SMALL, precision=32))),
             'updates': np.array(0), **batch, **noise,
             **{f'weights/{k}': v for k, v in weights.items()}}
  np.savez(folder / 'request.npz', **request)
  result = subprocess.run(
      [sys.executable, '-m', 'harness.step', '--original',
       str(checkout), '--request', str(folder / 'request.npz'), '--out',
       str(folder / 'out.npz'), '--logdir', str(folder / 'run')],
      capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert result.returncode == 0, result.stderr[-3000:]
  with np.load(folder / 'out.npz') as out:
    outputs = dict(out)
  return folder / 'run', weights, outputs, batch, noise


@pytest.mark.slow
def test_the_originals_variables_pkl_converts_to_the_same_weights(
    original_logdir):
  logdir, weights, outputs, _, _ = original_logdir
  values = checkpoint.read_state(logdir / 'variables.pkl')
  assert isinstance(values, tuple) and len(values) == 82
  shapes = {name: value.shape for name, value in weights.items()}
  converted, step = checkpoint.from_original(values, shapes)
  assert step == 36  # 3 episodes of 6 steps at action repeat 2.
  assert set(converted) == set(weights)
  for name, value in weights.items():
    np.testing.assert_array_equal(converted[name], value, err_msg=name)
  order = [label.split(' ', 1)[1]
           for label, _, _ in json.loads(str(outputs['variables_pkl']))
           if label.startswith('weight ')]
  before = [n for n in order if n.split('/')[0] in checkpoint.ORIGINAL_BEFORE]
  assert order[:len(before)] == before  # The walk's module order.
  with pytest.raises(ValueError, match='pass the config flags'):
    checkpoint.from_original(values, dict(shapes, **{
        'encoder/h1/kernel': (4, 4, 3, 16)}))


@pytest.mark.slow
def test_our_model_on_the_converted_weights_computes_the_originals_step(
    original_logdir):
  logdir, _, outputs, batch, noise = original_logdir
  model = models.Dreamer(make_config(precision='32', **SMALL), 1)
  checkpoint.load_original(checkpoint.read_state(logdir / 'variables.pkl'),
                           model)
  metrics, _, outs = model.gradients(batch, noise)
  for key in ('model_loss', 'actor_loss', 'value_loss', 'model_grad_norm',
              'actor_grad_norm', 'value_grad_norm'):
    np.testing.assert_allclose(float(metrics[key]), outputs[key], rtol=1e-4,
                               err_msg=key)
  for key in ('post_mean', 'imag_feat', 'returns'):
    np.testing.assert_allclose(outs[key], outputs[key], rtol=1e-4, atol=1e-5,
                               err_msg=key)


@pytest.mark.slow
def test_an_original_logdir_resumes_and_evaluates(original_logdir, tmp_path):
  source = original_logdir[0]
  logdir = tmp_path / 'run'
  shutil.copytree(source, logdir)
  digest = hashlib.sha256((logdir / 'variables.pkl').read_bytes()).hexdigest()
  output = run_dreamer(logdir, 60, RUN_FLAGS)
  assert 'Converted' in output and 'a checkpoint of the original' in output
  assert 'Training for 100 steps' not in output  # The pretrain was done.
  assert 'Training for 1 steps.' in output
  assert (logdir / checkpoint.NAME).exists()
  assert hashlib.sha256(
      (logdir / 'variables.pkl').read_bytes()).hexdigest() == digest
  files = {path: path.read_bytes() for path in source.rglob('*')
           if path.is_file()}
  result = subprocess.run(
      [sys.executable, str(ROOT / 'evaluate.py'), '--logdir', str(source),
       '--episodes', '1', '--video', 'none', '--outdir', str(tmp_path / 'e')]
      + RUN_FLAGS, capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert result.returncode == 0, result.stderr[-2000:]
  summary = json.loads((tmp_path / 'e' / 'summary.json').read_text())
  assert summary['episodes'] == 1 and summary['lengths'] == [12]
  stored = int(np.asarray(checkpoint.read_state(source / 'variables.pkl')[0]))
  assert stored > 0 and summary['step'] == stored  # The original's own step.
  assert 'updates' not in summary  # The original does not record them.
  assert f'(step {stored:,}, its update count is not recorded)' in (
      result.stdout)
  assert 'Evaluating on the CPU' in result.stdout
  assert {path: path.read_bytes() for path in source.rglob('*')
          if path.is_file()} == files  # The original's logdir untouched.
