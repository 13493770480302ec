"""Episode files, step counts and the training-sequence sampler."""

import os

import numpy as np
import pytest

import replay
import tools
from helpers import episode_name, fill, make_episode


def test_round_trip(tmp_path):
  episode = make_episode(7)
  path = replay.save_episode(tmp_path / 'episodes', episode)
  assert replay.EPISODE_NAME.match(path.name)
  assert replay.episode_length(path) == 7
  loaded = replay.load_episode(path)
  assert sorted(loaded) == sorted(episode)
  for key, value in episode.items():
    assert loaded[key].dtype == value.dtype
    np.testing.assert_array_equal(loaded[key], value)


def test_unequal_lengths_rejected(tmp_path):
  episode = make_episode(5)
  episode['action'] = episode['action'][:4]
  with pytest.raises(ValueError):
    replay.save_episode(tmp_path, episode)
  assert not list(tmp_path.iterdir())


def test_precision_16_files_load_widened(tmp_path):
  path = tmp_path / episode_name(3)
  np.savez_compressed(
      path, reward=np.ones(3, np.float16), count=np.arange(3, dtype=np.int16),
      image=np.zeros((3, 2, 2, 3), np.uint8))
  loaded = replay.load_episode(path)
  assert loaded['reward'].dtype == np.float32
  assert loaded['count'].dtype == np.int32
  assert loaded['image'].dtype == np.uint8


@pytest.mark.parametrize('content', ['garbage', 'truncated'])
def test_corrupt_file_raises(tmp_path, content):
  path = replay.save_episode(tmp_path, make_episode(50))
  data = path.read_bytes()
  path.write_bytes(b'not a zip' if content == 'garbage' else data[:-40])
  with pytest.raises(ValueError, match='unreadable episode file') as info:
    replay.load_episode(path)
  assert str(path) in str(info.value)
  assert '\n' not in str(info.value)


def test_write_is_atomic(tmp_path, monkeypatch):
  replaced = []
  real_replace = os.replace

  def replace(src, dst):
    replaced.append((src, sorted(p.name for p in tmp_path.iterdir())))
    real_replace(src, dst)

  monkeypatch.setattr(tools.os, 'replace', replace)
  path = replay.save_episode(tmp_path, make_episode(4))
  (src, listing), = replaced
  assert not str(src).endswith('.npz')
  assert os.path.dirname(src) == str(tmp_path)
  assert not [name for name in listing if name.endswith('.npz')]
  assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_counts_from_names(tmp_path):
  assert replay.count_steps(tmp_path / 'missing', 2) == 0
  assert replay.count_episodes(tmp_path / 'missing') == (0, 0)
  for length in (501, 101):
    (tmp_path / episode_name(length)).touch()  # Empty: never opened.
  (tmp_path / 'notes.npz').touch()
  (tmp_path / f'.{episode_name(9)}.tmp').touch()
  assert replay.count_episodes(tmp_path) == (2, 600)
  assert replay.count_steps(tmp_path, 2) == 1200


def test_windows_stay_inside_episodes(tmp_path):
  lengths = [12, 6, 5, 3, 30]  # Episodes 2 and 3 are too short for 5 + 1.
  fill(tmp_path, lengths)
  sampler = replay.EpisodeSampler(tmp_path, 5, seed=0)
  seen = set()
  for _ in range(500):
    seq = next(sampler)
    assert all(len(value) == 5 for value in seq.values())
    ident = seq['ident'][0]
    assert (seq['ident'] == ident).all()
    np.testing.assert_array_equal(np.diff(seq['index']), 1)
    assert 0 <= seq['index'][0] < lengths[ident] - 5
    assert (seq['image'][:, 0, 0, 0] == ident).all()
    seen.add(ident)
  assert seen == {0, 1, 4}


def test_no_usable_episode_raises(tmp_path):
  fill(tmp_path, [5, 3])
  with pytest.raises(RuntimeError, match='more than 5 steps'):
    next(replay.EpisodeSampler(tmp_path, 5))


def test_sampler_skips_unreadable_files(tmp_path, capsys):
  fill(tmp_path, [10])
  (tmp_path / episode_name(40)).write_bytes(b'broken')
  sampler = replay.EpisodeSampler(tmp_path, 4, rescan=2, seed=0)
  assert {next(sampler)['ident'][0] for _ in range(20)} == {0}
  assert capsys.readouterr().out.count('unreadable episode file') == 1


def test_rescan_finds_new_files(tmp_path):
  replay.save_episode(tmp_path, make_episode(10, 0))
  sampler = replay.EpisodeSampler(tmp_path, 4, rescan=5, seed=1)
  next(sampler)
  replay.save_episode(tmp_path, make_episode(10, 1))
  assert {next(sampler)['ident'][0] for _ in range(4)} == {0}
  assert 1 in {next(sampler)['ident'][0] for _ in range(50)}


def test_deterministic_and_resumable(tmp_path):
  fill(tmp_path, [10, 20, 15, 8])

  def stream(sampler, count):
    return [(s['ident'][0], s['index'][0]) for s in
            (next(sampler) for _ in range(count))]

  first = replay.EpisodeSampler(tmp_path, 4, rescan=7, seed=3)
  second = replay.EpisodeSampler(tmp_path, 4, rescan=7, seed=3)
  assert stream(first, 30) == stream(second, 30)
  state = first.get_state()
  expected = stream(first, 30)
  resumed = replay.EpisodeSampler(tmp_path, 4, rescan=7, seed=99)
  resumed.set_state(state)
  assert stream(resumed, 30) == expected
  other = replay.EpisodeSampler(tmp_path, 4, rescan=7, seed=4)
  assert stream(other, 30) != stream(second, 30)


def test_balance_covers_episode_end(tmp_path):
  fill(tmp_path, [20])
  plain = replay.EpisodeSampler(tmp_path, 5, seed=0)
  starts = {next(plain)['index'][0] for _ in range(400)}
  assert starts == set(range(15))
  balanced = replay.EpisodeSampler(tmp_path, 5, balance=True, seed=0)
  starts = [next(balanced)['index'][0] for _ in range(400)]
  assert set(starts) == set(range(16))
  assert starts.count(15) > 400 * 0.15  # 5 of 20 draws land on the end.


def test_batches(tmp_path):
  fill(tmp_path, [12, 30])
  batch = next(replay.batches(replay.EpisodeSampler(tmp_path, 6, seed=0), 3))
  assert batch['image'].shape == (3, 6, 4, 4, 3)
  assert batch['action'].shape == (3, 6, 2)
  assert batch['reward'].shape == (3, 6)
  assert batch['image'].dtype == np.uint8
