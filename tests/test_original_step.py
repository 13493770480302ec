"""The original Dreamer, run by original_step.py, reproduces train_step.npz.

The checkout comes from DREAMER_ORIGINAL_DIR (default
`<repo>/../shared/original-dreamer`); without it, or without the reference
data, the tests skip and say why. original_step.py runs in a process of its
own (the original needs tf_keras, our port Keras 3); the two variants run
at once, each as one step without update (`updates` 0).
"""

import json
import subprocess
import sys

import numpy as np
import pytest

import original_compat
from conftest import ROOT, reference_dir
from helpers import NOISE, mismatches, reference_of

# The default variant is reproduced by test_golden_regenerate.py, which
# rebuilds train_step.npz in both variants: one original run here.
VARIANTS = ('pcont',)
UPDATES = {'default': 0, 'pcont': 1}  # full updates after the measured step
LR = {'model': 6e-4, 'actor': 8e-5, 'value': 8e-5}  # the original's defaults
# Flags of the original that train_step.npz's config sets away from the
# defaults or that the step depends on.
CONFIG_KEYS = (
    'cnn_depth', 'stoch_size', 'deter_size', 'num_units', 'batch_size',
    'batch_length', 'horizon', 'pcont', 'free_nats', 'kl_scale',
    'pcont_scale', 'discount', 'disclam', 'action_init_std', 'grad_clip',
    'action_dist', 'precision')


def test_check_checkout_knows_the_commit(checkout):
  assert original_compat.check_checkout(checkout) == '56d4d44'


def test_check_checkout_refuses_a_changed_file(checkout, tmp_path):
  for name in original_compat.KNOWN['56d4d44']:
    (tmp_path / name).write_bytes((checkout / name).read_bytes())
  data = bytearray((tmp_path / 'models.py').read_bytes())
  data[100] ^= 1
  (tmp_path / 'models.py').write_bytes(bytes(data))
  with pytest.raises(ValueError) as error:
    original_compat.check_checkout(tmp_path)
  message = str(error.value)
  assert '\n' not in message and 'models.py' in message, message
  assert 'tools.py' not in message and 'dreamer.py' not in message, message
  assert original_compat.check_checkout(tmp_path, force=True) is None
  (tmp_path / 'tools.py').unlink()
  with pytest.raises(ValueError, match=r'models\.py, tools\.py \(missing\)'):
    original_compat.check_checkout(tmp_path)


def test_blob_hash_is_gits():
  # `printf 'hello\n' | git hash-object --stdin`
  assert (original_compat.blob_hash(b'hello\n')
          == 'ce013625030ba8dba906f756967f9e9ca394464a')


def request_of(arrays, weights, variant):
  """original_step.py's request for one variant of train_step.npz."""
  config = json.loads(str(arrays[f'{variant}/config']))
  request = {
      'config': np.array(json.dumps({k: config[k] for k in CONFIG_KEYS})),
      'image': arrays['image_uint8'], 'updates': np.array(UPDATES[variant])}
  for key in ('action', 'reward', 'discount'):
    request[key] = arrays[key]
  for ours, theirs in NOISE.items():
    request[ours] = arrays[f'{variant}/{theirs}']
  request.update({f'weights/{k}': v for k, v in weights.items()})
  return request


@pytest.fixture(scope='module')
def outputs(checkout, tmp_path_factory):
  """{variant: (original_step.py's output, reference)}, both run at once."""
  folder = reference_dir()
  paths = folder / 'train_step.npz', folder / 'reference_weights.npz'
  if not all(path.exists() for path in paths):
    pytest.skip(f'train_step.npz or reference_weights.npz not found in '
                f'{folder} (set DREAMER_REFERENCE_DIR)')
  with np.load(paths[0]) as data:
    arrays = dict(data)
  with np.load(paths[1]) as data:
    weights = dict(data)
  tmp = tmp_path_factory.mktemp('original_step')
  runs = {}
  for variant in VARIANTS:
    np.savez(tmp / f'{variant}_in.npz', **request_of(arrays, weights, variant))
    runs[variant] = subprocess.Popen(
        [sys.executable, str(ROOT / 'original_step.py'), '--original',
         str(checkout), '--request', str(tmp / f'{variant}_in.npz'),
         '--out', str(tmp / f'{variant}_out.npz')],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  results = {}
  for variant, run in runs.items():
    log = run.communicate(timeout=600)[0]
    assert run.returncode == 0, log[-3000:]
    with np.load(tmp / f'{variant}_out.npz') as data:
      results[variant] = dict(data), reference_of(arrays, variant)
  return results


@pytest.mark.slow
@pytest.mark.parametrize('variant', VARIANTS)
def test_original_step_reproduces_train_step(outputs, variant):
  ours, ref = outputs[variant]
  assert not mismatches(ours, ref), variant
  grads = {k for k in ours if k.startswith('grad/')}
  assert grads == {k for k in ref if k.startswith('grad/')}
  assert len(grads) == (45 if variant == 'pcont' else 37) + 10 + 8
  assert len([k for k in ours if k.startswith('after/')]) == (
      0 if variant == 'default' else 45 + 10 + 8 + 12)  # weights, metrics


@pytest.mark.slow
def test_original_update_is_a_first_adam_step(outputs):
  """after/1: the step's metrics, and each weight moved by a fresh Adam's
  first step on its (unclipped: norms < grad_clip) gradient g:
  lr·√(1−β2)/(1−β1)·m/(√v + ε) with m = (1−β1)·g, v = (1−β2)·g²."""
  ours, _ = outputs['pcont']
  with np.load(reference_dir() / 'reference_weights.npz') as data:
    weights = dict(data)
  for name in ('model_loss', 'actor_loss', 'value_loss', 'model_grad_norm'):
    assert ours[f'after/1/{name}'] == ours[name], name
  for key in [k for k in ours if k.startswith('grad/')]:
    _, loss, name = key.split('/', 2)
    g = ours[key].astype(np.float64)
    step = LR[loss] * np.sqrt(1e-3) / 0.1 * (0.1 * g) / (
        np.sqrt(1e-3 * g * g) + 1e-7)
    np.testing.assert_allclose(
        ours[f'after/1/{name}'], weights[name] - step, rtol=0, atol=1e-7,
        err_msg=name)


@pytest.mark.slow
@pytest.mark.parametrize('variant', VARIANTS)
def test_original_step_reports_counts_and_checkpoint_order(outputs, variant):
  ours, _ = outputs[variant]
  counts = json.loads(str(ours['param_counts']))
  small = json.loads((reference_dir() / 'param_counts.json').read_text())
  for module, count in counts.items():
    if not module.endswith('_optimizer'):
      assert count == small['small']['counts'][module], module
  order = json.loads(str(ours['variables_pkl']))
  weights = [name.split(' ', 1)[1] for name, _, _ in order
             if name.startswith('weight ')]
  assert len(weights) == (45 if variant == 'pcont' else 37) + 10 + 8
  assert weights[0] == 'actor/h0/kernel' and order[0][0] == 'step'
  assert not [name for name, _, _ in order if 'optimizer' in name]
  assert str(ours['commit']) == '56d4d44'
