"""The harness: the machinery that runs danijar/dreamer's code (the
original Dreamer, TF 2.2) to compare this port with it. No agent module
imports it; it imports the agent where it computes ours beside the
original's.

  compat.py           whether a checkout is the known commit; the TF 2.2
                      compatibility layer that loads it unchanged
  step.py             the original's train step on given weights, batch and
                      noise (`python -m harness.step`, a process of its own)
  modules.py          the original's modules on given inputs, and their
                      parameter counts (`python -m harness.modules`)
  diff.py             ours against the original, row by row (the root's
                      diff_original.py runs it)
  reference_files.py  writes the golden files of tests/reference/
  train.py, env.py    the original's own training program, its environments
                      served by our workers (the root's original_train.py)

The original's modules load under the top-level names `dreamer`, `models`,
`tools` and `wrappers` (compat.load_original): no module here may take one
of those names, and this file imports nothing.
"""
