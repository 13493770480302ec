"""Compares this port with the original Dreamer, number by number.

    python diff_original.py --original PATH [--force] [--config small|full]
        [--variant default|pcont] [--precision 32|16|bf16] [--updates N]
        [--seed S] [--write-reference DIR]

The command lives in harness/diff.py (its docstring explains the flags).
"""

import sys

from harness import diff

if __name__ == '__main__':
  sys.exit(diff.main())
