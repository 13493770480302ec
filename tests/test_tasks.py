"""Atari, proprioceptive inputs and parallel environments, end to end."""

import json

import numpy as np
import pytest

import dreamer
import replay
import models
import networks
import tasks
import tools
import wrappers
from helpers import read_metrics, run_dreamer, tiny_config, tiny_flags as flags

ATARI_FLAGS = [
    '--task', 'atari_pong', '--action_repeat', '4', '--time_limit', '160',
    '--prefill', '100', '--eval_every', '160', '--train_every', '80',
    '--log_every', '80', '--action_dist', 'onehot', '--pcont', 'True',
    '--expl', 'epsilon_greedy', '--expl_amount', '0.4', '--expl_decay', '1e5',
    '--expl_min', '0.1', '--kl_scale', '0.1', '--clip_rewards', 'tanh']


def episodes_of(logdir):
  return [replay.load_episode(p) for p in replay.list_episodes(logdir / 'episodes')]


@pytest.mark.slow
def test_atari_pong_trains_with_the_papers_flags(tmp_path):
  run_dreamer(tmp_path, 400, flags(*ATARI_FLAGS))
  episodes = episodes_of(tmp_path)
  assert episodes
  for episode in episodes:
    assert episode['image'].shape[1:] == (64, 64, 3)
    actions = episode['action'][1:]
    assert actions.shape[1] == 6  # Pong's minimal action set.
    np.testing.assert_array_equal(actions.sum(-1), 1)  # One-hot.
  metrics = read_metrics(tmp_path)
  agent = [m for m in metrics if 'model_loss' in m]
  assert agent and 'pcont_loss' in agent[0]
  assert any('test/return' in m for m in metrics)
  saved = json.loads((tmp_path / 'config.json').read_text())
  assert saved['action_dist'] == 'onehot' and saved['expl'] == 'epsilon_greedy'


@pytest.mark.slow
def test_proprio_trains_without_rendering(tmp_path):
  run_dreamer(tmp_path, 160, flags('--obs', 'proprio'))
  for episode in episodes_of(tmp_path):
    assert set(episode) == {'position', 'velocity', 'action', 'reward',
                            'discount'}
  agent = [m for m in read_metrics(tmp_path) if 'model_loss' in m]
  assert agent and 'proprio_loss' in agent[0] and 'image_loss' not in agent[0]


@pytest.mark.slow
def test_two_environment_processes(tmp_path):
  output = run_dreamer(tmp_path, 240, flags('--envs', '2', '--parallel',
                                            'process'))
  episodes = replay.list_episodes(tmp_path / 'episodes')
  assert len(episodes) >= 4 and len(episodes) % 2 == 0
  assert output.count('Test episode of length 40') >= 4  # Two per evaluation.
  first = [replay.load_episode(p)['image'][1] for p in episodes[-2:]]
  assert not np.array_equal(*first)  # Seeded apart.


def test_atari_life_loss_ends_training_episodes_only():
  for life_done in (True, False):
    env = wrappers.make_env('atari_breakout', 4, 108000, life_done=life_done)
    env.reset()
    rng = np.random.default_rng(0)
    for step in range(2000):
      action = env.act_space.sample(rng)
      _, _, done, info = env.step(action)
      if done:
        break
    lives = env._env._env._ale.lives()
    if life_done:
      assert done and info['discount'] == 0 and lives == 4, (step, lives)
    else:
      assert not done or lives == 0


def test_atari_frames_are_the_max_of_the_last_two():
  from PIL import Image
  env = wrappers.Atari('pong', action_repeat=4, size=(64, 64), seed=1)
  twin = wrappers.Atari('pong', action_repeat=4, size=(64, 64), seed=1)
  env.reset()
  twin.reset()
  differ = 0
  for step in range(60):
    action = step % 6
    obs, *_ = env.step(action)
    frames = []
    for index in range(4):  # The same frames by hand: same seeds.
      twin._ale.act(twin._actions[action])
      if index >= 2:
        frames.append(twin._ale.getScreenRGB())
    expected = np.asarray(Image.fromarray(np.maximum(*frames)).resize(
        (64, 64), Image.BILINEAR))
    np.testing.assert_array_equal(obs['image'], expected)
    differ += not np.array_equal(frames[0], frames[1])
  assert differ > 10


def test_unsupported_atari_roms_are_not_offered():
  with pytest.raises(ValueError, match="unknown Atari game 'atari_joust'"):
    tasks.check(['atari_joust'])
  assert tasks.check(['atari_space_invaders']) == [('atari', 'space_invaders')]


def test_one_hot_actions_are_checked():
  env = wrappers.make_env('atari_pong', 4, 1000)
  env.reset()
  with pytest.raises(ValueError, match='not a one-hot action'):
    env.step(np.full(6, 0.5, np.float32))


def test_epsilon_greedy_decays_to_its_minimum():
  rng = np.random.default_rng(0)
  greedy = np.eye(6, dtype=np.float32)[np.zeros(4000, int)]
  for step, expected in ((0, 0.4), (100_000, 0.2), (10 ** 7, 0.1)):
    amount = tools.exploration_amount(step, 0.4, 1e5, 0.1)
    assert amount == pytest.approx(expected)
    changed = (dreamer.explore(greedy, amount, 'epsilon_greedy', rng)
               .argmax(-1) != 0).mean()
    # A random one of 6 actions replaces the greedy one with prob. amount.
    assert abs(changed - amount * 5 / 6) < 0.03, (step, changed)


def test_dense_encoder_and_decoder_shapes_and_counts():
  config = tiny_config(obs='both', num_units=16)
  agent = models.Dreamer(
      config, 2, proprio={'position': (3,), 'velocity': (2,)})
  counts = models.count_params(agent.modules)
  # 4 Dense layers of 16: 5·16+16 + 3·(16·16+16); decoder from feat 20.
  assert counts['proprio_encoder'] == 96 + 3 * 272
  assert counts['proprio_decoder'] == 336 + 3 * 272 + (16 * 5 + 5)
  conv = networks.ConvEncoder(config.cnn_depth).embed_size
  assert agent.rssm.named_layers['obs1'].kernel.shape[0] == (
      config.deter_size + conv + 16)
  feat = np.zeros((2, 3, 20), np.float32)
  assert agent.proprio_decoder(feat).mean().shape == (2, 3, 5)
  assert agent.proprio_encoder(np.zeros((2, 3, 5), np.float32)).shape == (
      2, 3, 16)
