"""harness.compat knows the original's commit by its files' git hashes.

The checkout comes from DREAMER_ORIGINAL_DIR (default
`<repo>/../shared/original-dreamer`); without it the tests skip and say
why. What harness/step.py computes is checked by test_golden_regenerate.py
(it rebuilds tests/reference/ from the checkout, train step, 10 updates and
parameter counts, and compares) and test_original_checkpoint.py (the order
of its variables.pkl).
"""

import json
import pathlib
import subprocess
import sys

import pytest

from harness import compat
from helpers import ROOT


def test_check_checkout_knows_the_commit(checkout):
  assert compat.check_checkout(checkout) == '56d4d44'


def test_check_checkout_refuses_a_changed_file(checkout, tmp_path):
  for name in compat.KNOWN['56d4d44']:
    (tmp_path / name).write_bytes((checkout / name).read_bytes())
  data = bytearray((tmp_path / 'models.py').read_bytes())
  data[100] ^= 1
  (tmp_path / 'models.py').write_bytes(bytes(data))
  with pytest.raises(ValueError) as error:
    compat.check_checkout(tmp_path)
  message = str(error.value)
  assert '\n' not in message and 'models.py' in message, message
  assert 'tools.py' not in message and 'dreamer.py' not in message, message
  assert compat.check_checkout(tmp_path, force=True) is None
  (tmp_path / 'tools.py').unlink()
  with pytest.raises(ValueError, match=r'models\.py, tools\.py \(missing\)'):
    compat.check_checkout(tmp_path)


def test_blob_hash_is_gits():
  # `printf 'hello\n' | git hash-object --stdin`
  assert (compat.blob_hash(b'hello\n')
          == 'ce013625030ba8dba906f756967f9e9ca394464a')


LOAD = '''
import json, sys
import harness.compat, harness.diff, harness.env, harness.modules
import harness.reference_files, harness.step, harness.train
harness.compat.load_original(sys.argv[1])
print(json.dumps({name: getattr(module, '__file__', None)
                  for name, module in sys.modules.items()}))
'''


def test_the_harness_loads_the_original_under_its_own_names(checkout):
  # In a fresh process started from the root, as `python -m harness.step`
  # and original_train.py are: every harness module imported first, then
  # the original. load_original raises if a module of its names is
  # already loaded from elsewhere (ours are importable from the root).
  result = subprocess.run(
      [sys.executable, '-c', LOAD, str(checkout)], cwd=ROOT,
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  files = json.loads(result.stdout.strip().splitlines()[-1])
  for name in ('dreamer', 'models', 'tools', 'wrappers'):
    assert pathlib.Path(files[name]).parent == checkout.resolve(), name
  harness = {k: v for k, v in files.items() if k.split('.')[0] == 'harness'}
  assert len(harness) == 8, sorted(harness)
  for name, file in harness.items():
    assert pathlib.Path(file).parent == ROOT / 'harness', (name, file)
