"""harness.compat knows the original's commit by its files' git hashes.

The checkout comes from DREAMER_ORIGINAL_DIR (default
`<repo>/../shared/original-dreamer`); without it the tests skip and say
why. What harness/step.py computes is checked by test_golden_regenerate.py
(it rebuilds tests/reference/ from the checkout, train step, 10 updates and
parameter counts, and compares) and test_original_checkpoint.py (the order
of its variables.pkl).
"""

import pytest

from harness import compat


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
