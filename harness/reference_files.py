"""The project's golden files: what the original Dreamer computed, written
by `python diff_original.py --original PATH --write-reference DIR` (the
harness's diff.py) and read by the tests (tests/reference/ by default).

Files (all float32 unless said; the layout is DIR/README.md's):
  reference_weights.npz   our modules' seeded initialisation, our naming
  reference_io.npz        module inputs and the original modules' outputs
  param_counts.json       the original modules' parameter counts
  train_step.npz          one step, variants default and pcont
  train_updates.npz       UPDATES updates of the pcont variant
  train_step_float16.npz  one float16 step of the pcont variant
"""

import json
import pathlib

import numpy as np

NOISE = {'obs_prior': 'eps_obs_prior', 'post': 'eps_post',
         'imag': 'eps_imag', 'actor': 'eps_actor'}
SAMPLES = 64  # entries per variable kept for the updates before the last
STEP = (  # what a step file keeps of harness/step.py's output
    'model_loss', 'image_loss', 'reward_loss', 'pcont_loss', 'div', 'kl',
    'actor_loss', 'value_loss', 'model_grad_norm', 'actor_grad_norm',
    'value_grad_norm', 'prior_ent', 'post_ent', 'post_mean', 'post_std',
    'post_stoch', 'post_deter', 'prior_mean', 'prior_std', 'imag_feat',
    'imag_action', 'imag_reward', 'imag_value', 'imag_pcont', 'returns')
METRICS = STEP[:13]


def sample_indices(size):
  """The flat indices kept of a variable of `size` entries: evenly spaced,
  the first and the last included."""
  return np.unique(np.linspace(0, size - 1, min(size, SAMPLES)).astype(int))


def step_config(output, config, noise):
  """The original's full config (JSON) with the sizes A, B, T, H, N."""
  full = json.loads(str(output['config']))
  b, t = config.batch_size, config.batch_length
  full.update(A=noise['actor'].shape[-1], B=b, T=t, H=config.horizon,
              N=noise['actor'].shape[1])
  return np.array(json.dumps(full, sort_keys=True))


def step_arrays(prefix, output, config, noise, dtype=np.float32):
  arrays = {f'{prefix}config': step_config(output, config, noise)}
  for ours, theirs in NOISE.items():
    arrays[f'{prefix}{theirs}'] = noise[ours]
  for key in STEP:
    if key in output:
      arrays[prefix + key] = np.asarray(output[key], np.float32)
  for key in output:
    if key.startswith('grad/'):
      arrays[prefix + key] = np.asarray(output[key], dtype)
  return arrays


def write(folder, size, action_size, weights, batch, io, noises, theirs,
          commit, command, machine, configs, updates, count_cases):
  folder = pathlib.Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  np.savez_compressed(folder / 'reference_weights.npz', **weights)
  modules = theirs['modules']
  io_arrays = dict(io)
  io_arrays.update({k: modules[k] for k in modules
                    if k not in ('param_counts', 'commit')})
  np.savez_compressed(folder / 'reference_io.npz', **io_arrays)
  counts = json.loads(str(modules['param_counts']))
  small_config = {k: size[k] for k in ('cnn_depth', 'stoch_size',
                                       'deter_size', 'num_units')}
  table = {'small': {'config': dict(small_config, action_dim=action_size),
                     'counts': counts['small']}}
  for case, config in count_cases.items():
    found = dict(counts[case])
    found['actor_tanh_normal'] = found.pop('actor')
    table[case] = {'config': config, 'counts': found}
  (folder / 'param_counts.json').write_text(json.dumps(table, indent=1) + '\n')
  step = {'image_uint8': batch['image']}
  step.update({k: batch[k] for k in ('action', 'reward', 'discount')})
  for variant in ('default', 'pcont'):
    step.update(step_arrays(f'{variant}/', theirs[variant], configs[variant],
                            noises[variant]))
  np.savez_compressed(folder / 'train_step.npz', **step)
  # Updates: the pcont variant, the same batch and noise at every update
  # (train_step.npz's). Metrics after each; weights in full after the
  # last; before it, SAMPLES entries per variable and max|w_K − w_0|.
  out = theirs['updates']
  arrays = {'config': step_config(out, configs['pcont'], noises['pcont']),
            'updates': np.array(updates), 'samples': np.array(SAMPLES)}
  for k in range(1, updates + 1):
    for key in METRICS:
      if f'after/{k}/{key}' in out:
        arrays[f'after/{k}/{key}'] = out[f'after/{k}/{key}']
    for name, initial in weights.items():
      value = out.get(f'after/{k}/{name}')
      if value is None:
        continue
      arrays[f'after/{k}/change/{name}'] = np.float32(
          np.abs(value.astype(np.float64) - initial).max())
      if k == updates:
        arrays[f'after/{k}/weight/{name}'] = value
      else:
        arrays[f'after/{k}/sample/{name}'] = value.reshape(-1)[
            sample_indices(value.size)]
  np.savez_compressed(folder / 'train_updates.npz', **arrays)
  f16 = step_arrays('', theirs['float16'], configs['pcont'], noises['pcont'],
                    np.float16)
  np.savez_compressed(folder / 'train_step_float16.npz', **f16)
  (folder / 'README.md').write_text(README.format(
      command=command, commit=commit, machine=machine, updates=updates,
      samples=SAMPLES, **size, action_size=action_size))


README = """\
# Golden data: what the original Dreamer computed

Written by

    {command}

from a checkout of danijar/dreamer recognised as commit `{commit}`
(harness/compat.py check_checkout: git blob hashes of dreamer.py,
models.py, tools.py, wrappers.py), run unchanged in its math by
harness/step.py and harness/modules.py (TensorFlow 2.21, tf_keras, TFP
0.25, float32 unless said) on: {machine}.

Inputs: the weights are our modules' initialisation (seed 0) at the small
configuration: cnn_depth {cnn_depth}, stoch_size {stoch_size}, deter_size
{deter_size} (RSSM hidden = deter), num_units {num_units}, action size
{action_size}, dense_act elu, cnn_act relu, action_init_std 5; the batch
({batch_size} × {batch_length}) and noise come from synthetic.py (seed 0),
with `discount[1, T−1] = 0`. Horizon {horizon}.

Tolerance of ours against these (tests/test_reference_train.py): values
`allclose(rtol 1e-4, atol 1e-5)`; gradients per variable `|d| ≤ 1e-3·|ref|
+ 1e-4·max|ref| + 1e-9`. Regenerating gives the same numbers to float32
round-off (tests_harness/test_golden_regenerate.py).

## reference_weights.npz

`MODULE/LAYER/WEIGHT` in the original's layer names (encoder h1..h4;
decoder h1..h5; rssm img1..img3, obs1, obs2, gru kernel, recurrent_kernel,
bias (2, 3·deter); reward h0, h1, hout; value and pcont h0..h2, hout; actor
and actor_onehot h0..h3, hout). Dense kernels (in, out).

## reference_io.npz

Inputs: image_uint8 and image (`x/255 − 0.5`) (B, T, 64, 64, 3);
prev_mean, prev_std, prev_stoch (B, S), prev_deter (B, D), prev_action
(B, A); feat (B, T, S + D); actions (B, T, A); lr_reward, lr_value,
lr_pcont (15, 7), lr_bootstrap (7,), lr_lambda; tanh_x (25,). Outputs of the
original's modules: embed; prior_mean/std/deter (image step from prev);
post_mean/std/deter (observation step with embed[:, 0]); decoder_mean;
reward_mean, value_mean, pcont_mean; actor_loc, actor_scale (the pre-tanh
Normal), actor_logprob (of `actions`); onehot_probs; lr_returns,
lr_returns_zero_bootstrap; tanh_log_det_jacobian.

## param_counts.json

`{{case: {{config, counts}}}}` counted on the original's modules: `small`
and `full_action_dim_1/6/18` (cnn_depth 32, stoch 30, deter 200, units 400).

## train_step.npz

Batch: image_uint8 (B, T, 64, 64, 3), action (B, T, A), reward, discount
(B, T). Per variant V (`default`: pcont False, free_nats 3; `pcont`: pcont
True, free_nats 0): `V/config` (the original's full config as JSON, plus
A, B, T, H, N), the noise `V/eps_obs_prior`, `V/eps_post` (B, T, S),
`V/eps_imag` (H, N, S), `V/eps_actor` (H, N, A); the logged scalars
(model_loss, image_loss, reward_loss, pcont_loss, div, kl, actor_loss,
value_loss, the three gradient norms before clipping, prior_ent, post_ent);
intermediates (post_*, prior_mean/std, imag_feat, imag_action, imag_reward,
imag_value, imag_pcont, returns) and `V/grad/LOSS/MODULE/LAYER/WEIGHT`.
Noise protocol and meanings: harness/step.py's docstring.

## train_updates.npz

{updates} full updates (the original's tools.Adam from a fresh state) of
the pcont variant from reference_weights.npz, each on train_step.npz's
batch and `pcont/` noise. `after/K/METRIC`: what update K logged (computed
before it applied); `after/K/change/NAME`: max|w_K − w_0| of each
variable; `after/{updates}/weight/NAME`: the weights after the last update;
`after/K/sample/NAME` for K < {updates}: {samples} entries of each variable
at the flat indices `unique(linspace(0, size − 1, min(size, {samples})))`
(harness/reference_files.py sample_indices), to keep the file small.

## train_step_float16.npz

One step of the pcont variant at the original's precision 16
(mixed_float16, batch floats stored as float16, dynamic loss scale 2^15),
same weights, batch and noise; keys as one variant of train_step.npz
without the prefix; gradients stored as float16. On a CPU the original's
image_loss and model_loss overflow to inf (the float16 sum of B·T image
log-likelihoods of about −11,800 each passes 65,504) and the model gradient
norm is not finite: they are stored as computed.

## Tolerances (see the tests' docstrings for the measurements)

- train_updates.npz (tests/test_reference_updates.py): weights per variable
  ‖ours − orig‖ ≤ 5e-2·‖w_K − w_0‖ and max|ours − orig| ≤ 0.5·max|w_K −
  w_0|; logged numbers |d| ≤ 5e-3·|ref| + 1e-5. Adam turns round-off-level
  gradient entries into ±lr steps: measured 1.2e-2 and 0.165 of the change
  (decoder/h2/kernel, update 10), 1.7e-3 (model_grad_norm, update 9); the
  original against itself with 1-ulp weight noise: 6e-4, 0.014, 6.3e-4.
- train_step_float16.npz: gradients where the original's are finite,
  per variable ‖ours − orig‖ ≤ 0.15·‖orig‖ (world model; measured 0.065,
  where the original's own float16 is 0.061 from its float32) and 1e-2
  (actor, value); cosines ≥ 0.999 (model), 0.99999 (actor, value).
"""
