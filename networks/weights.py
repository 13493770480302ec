"""Weights named as in the original code: `MODULE/LAYER/WEIGHT`.

The original names its layers `h1`…, `img1`, `gru`, `hout` and so on; our
modules list theirs under the same names in `named_layers`, and a Keras
layer's weights are `kernel`, `bias` (and `recurrent_kernel` for the GRU
cell), as in the original's Keras 2 layers. So `encoder/h1/kernel` is
`modules['encoder'].named_layers['h1'].kernel`, with the original's shape
and layout (Dense (in, out); Conv2D (k, k, in, out); Conv2DTranspose
(k, k, out, in); GRUCell gates ordered z, r, h with bias (2, 3·deter)).

    weights = dict(np.load('reference_weights.npz'))
    load_weights({'encoder': encoder, 'rssm': rssm}, weights)
"""

import numpy as np


def module_weights(module_name, module):
  """{`MODULE/LAYER/WEIGHT`: variable} for one of our modules."""
  result = {}
  for layer_name, layer in module.named_layers.items():
    for variable in layer.weights:
      result[f'{module_name}/{layer_name}/{variable.name}'] = variable
  return result


def export_weights(modules):
  """{`MODULE/LAYER/WEIGHT`: numpy array} for a dict of named modules."""
  result = {}
  for name, module in modules.items():
    for key, variable in module_weights(name, module).items():
      result[key] = np.asarray(variable.numpy())
  return result


def load_weights(modules, weights):
  """Assigns original-named `weights` to a dict of named modules.

  Every weight of the given modules must be present with the same shape;
  keys of other modules are ignored. Raises ValueError naming the problem.
  """
  if not hasattr(weights, 'keys'):
    with np.load(weights) as data:
      weights = dict(data)
  targets = {}
  for name, module in modules.items():
    targets.update(module_weights(name, module))
  missing = sorted(set(targets) - set(weights))
  if missing:
    raise ValueError(f'weights missing for: {", ".join(missing)}')
  for key, variable in targets.items():
    value = np.asarray(weights[key])
    if tuple(value.shape) != tuple(variable.shape):
      raise ValueError(
          f'weight {key} has shape {value.shape}, the module expects '
          f'{tuple(variable.shape)}')
    variable.assign(value.astype(variable.dtype))
