"""Trains the ORIGINAL Dreamer (danijar/dreamer, TF 2.2) with its own main()
on today's stack, so that its learning can be compared with the port's.

    python original_train.py --original PATH [--force] [its flags...]

The command lives in harness/train.py (its docstring says what is replaced
and why).
"""

import sys

from harness import train

if __name__ == '__main__':
  sys.exit(train.main())
