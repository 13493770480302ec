"""Float operations of one update: the math's, whichever kernels run it.

    from benchmarks.flops import update_flops
    update_flops(config, action_size, data)   # float operations per update

Counted on the graph of the train step built with Keras's own convolution
kernels (`models.Dreamer(..., keras_kernels=True)`, the original's ops),
since our faster kernels do some extra work (the phases of a transposed
convolution multiply padding zeros at the borders: 1.14–1.33×) that is not
the model's. Per op TensorFlow's own statistics, except for the gradients of
convolutions: TensorFlow counts those as 2·k·k·in·out per position of the
larger image divided by stride², which for these 'valid' stride-2
convolutions overcounts (1.23× for 31×31 → 14×14, 2.25× for 6×6 → 2×2, and
1.69× for the transposed convolution 5×5 → 13×13, whose forward is a
Conv2DBackpropInput). Here both count 2·|dy|·k·k·in, the multiply-adds of
the convolution they differentiate, as Conv2D's statistic does forward.
"""

import numpy as np

CONV_GRADIENTS = ('Conv2DBackpropInput', 'Conv2DBackpropFilter')


def graph_flops(graph):
  """Float operations of one run of `graph` (its functions included), with
  exact counts for the convolution gradients."""
  import tensorflow as tf
  options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
  options['output'] = 'none'
  total = tf.compat.v1.profiler.profile(graph, options=options).total_float_ops
  for op in graph.get_operations():
    if op.type in CONV_GRADIENTS:
      total += conv_gradient_flops(op) - _tensorflow_flops(graph, op)
  return total


def conv_gradient_flops(op):
  """2·|dy|·kh·kw·in for Conv2DBackpropInput or Conv2DBackpropFilter."""
  dy = op.inputs[2].shape
  kernel = (op.inputs[1] if op.type == 'Conv2DBackpropInput'
            else op.outputs[0]).shape
  return 2 * int(np.prod(dy)) * kernel[0] * kernel[1] * kernel[2]


def _tensorflow_flops(graph, op):
  from tensorflow.python.framework import ops
  return ops.get_stats_for_node_def(graph, op.node_def, 'flops').value or 0


def update_flops(config, action_size, data):
  """Float operations of one update (`models.Dreamer.train`) on `data`."""
  import models
  agent = models.Dreamer(
      config, action_size, jit=False, keras_kernels=True)
  return graph_flops(agent.train.get_concrete_function(data).graph)
