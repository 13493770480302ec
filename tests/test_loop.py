"""The whole loop end to end on a real dm_control task, then a resume."""

import itertools
import json
import re
import shutil

import numpy as np
import pytest

import checkpoint
import dreamer
import logger
import replay
import tools
from config import make_config
from helpers import (
    StubModel, last_updates, read_metrics, run_dreamer, schedule)

AGENT_METRICS = {
    'model_grad_norm', 'value_grad_norm', 'actor_grad_norm', 'prior_ent',
    'post_ent', 'image_loss', 'reward_loss', 'div', 'model_loss',
    'value_loss', 'actor_loss', 'action_ent', 'expl_amount'}


@pytest.fixture(scope='module')
def first_run(tiny_run):
  logdir, output = tiny_run
  return logdir, output, read_metrics(logdir)


@pytest.mark.slow
def test_episode_files(first_run):
  logdir, _, _ = first_run
  files = sorted((logdir / 'episodes').glob('*.npz'))
  assert len(files) >= 4
  for path in files:
    assert re.fullmatch(r'\d{8}T\d{6}-[0-9a-f]{32}-21\.npz', path.name)
    with np.load(path) as episode:
      assert set(episode.files) == {
          'image', 'position', 'velocity', 'action', 'reward', 'discount'}
      assert episode['image'].shape == (21, 64, 64, 3)
      assert episode['image'].dtype == np.uint8
      assert episode['action'].shape == (21, 1)
      assert episode['action'].dtype == np.float32
      assert episode['reward'].shape == episode['discount'].shape == (21,)
      np.testing.assert_array_equal(episode['action'][0], 0)


@pytest.mark.slow
def test_metrics_and_logs(first_run):
  logdir, output, metrics = first_run
  agent = [m for m in metrics if 'model_loss' in m]
  # The first write follows training in the first test episode, before any
  # exploring step: it has no expl_amount (the original writes 0 there).
  assert agent and AGENT_METRICS - {'expl_amount'} <= set(agent[0])
  assert 'expl_amount' not in agent[0] and AGENT_METRICS <= set(agent[1])
  assert 'fps' in agent[-1]
  assert any('train/return' in m and 'train/length' in m for m in metrics)
  assert any('test/return' in m and 'episodes' in m for m in metrics)
  for line in agent:
    assert all(np.isfinite(v) for v in line.values())
  assert list(logdir.glob('events.out.tfevents.*'))
  assert list((logdir / 'videos').glob('sim_test_video-*.gif'))
  assert list((logdir / 'videos').glob('agent_openl-*.gif'))
  assert 'Train episode of length 40 with return' in output
  assert '[progress] step 160/160' in output
  assert 'Training for 3 steps.' in output
  saved = json.loads((logdir / 'config.json').read_text())
  assert saved['batch_length'] == 8 and saved['task'] == 'dmc_cartpole_balance'
  assert saved['configs'] == ['tiny'] and saved['latent_noise'] == 'shared'
  assert re.search(r'^oneDNN (on|off)', output, re.M)
  assert 'Training for 1 step (initial update).' in output


@pytest.mark.slow
def test_checkpoint_and_resume(first_run, tmp_path):
  first, first_output, metrics = first_run
  logdir = tmp_path / 'run'
  shutil.copytree(first, logdir)  # The other tests keep the first run as is.
  assert (logdir / checkpoint.NAME).exists()
  assert not list(logdir.glob('*.tmp'))
  last_step = max(m['step'] for m in metrics)
  episodes = len(list((logdir / 'episodes').glob('*.npz')))
  output = run_dreamer(logdir, 240)
  assert 'Prefill dataset with 0 steps.' in output
  assert 'Load checkpoint.' in output
  assert 'Training for 3 steps.' not in output
  assert 'Training for 2 steps.' in output
  resumed = read_metrics(logdir)[len(metrics):]
  assert min(m['step'] for m in resumed) >= last_step
  assert max(m['step'] for m in resumed) >= 240
  assert len(list((logdir / 'episodes').glob('*.npz'))) > episodes
  assert last_updates(output) > last_updates(first_output)
  steps = replay.count_steps(logdir / 'episodes', 2)
  assert last_updates(first_output) == schedule(160)
  assert last_updates(output) == schedule(steps)


class _CountingAgent(dreamer.Agent):

  def __init__(self, config, step):
    super().__init__(config, StubModel(), None, None, tools.Counter(step),
                     None, np.random.default_rng(0))
    self.trainings = []

  def train(self):
    self.trainings.append(self.step)


def test_training_is_due_in_evaluation_calls_too():
  config = make_config(train_every=1000, action_repeat=2)
  agent = _CountingAgent(config, step=5000)
  obs = {'image': np.zeros((1, 64, 64, 3), np.uint8)}
  for _ in range(3):  # A test episode right after prefill: pretrain first.
    agent(obs, np.array([False]), training=False)
  assert agent.trainings == [5000] and agent.step == 5000
  for _ in range(500):  # 1,000 environment steps of collection.
    agent(obs, np.array([False]), training=True)
    agent._step.increment(2)  # What the training driver's on_step does.
  assert agent.trainings == [5000] and agent.step == 6000
  agent(obs, np.array([False]), training=False)
  assert agent.trainings == [5000, 6000]


class _OpenEpisodesDriver:
  """A training driver of several environments: each call stores the
  finished episodes it was asked for and leaves `open` environment steps
  of unfinished ones, which the step counter counts and the disk does
  not."""

  def __init__(self, datadir, step, open_steps):
    self.datadir, self.step, self.open = datadir, step, open_steps

  def __call__(self, agent, steps):
    replay.save_episode(self.datadir, {'reward': np.zeros(steps + 1)})
    self.step.increment(2 * steps + self.open)


class _Stub:

  def __init__(self, **methods):
    self.__dict__.update(methods)


def test_a_run_is_done_when_its_episodes_reach_steps(tmp_path):
  # 40 environment steps a collection; the counter runs 10 ahead each time:
  # at 100 it has 80 steps on disk, which sweep.py would count as stopped.
  config = make_config(logdir=tmp_path, steps=100, eval_every=40)
  step = tools.Counter()
  train = _OpenEpisodesDriver(tmp_path / 'episodes', step, open_steps=10)
  test = lambda policy, episodes: None  # A test episode: nothing stored.
  test.reset = lambda: None
  saves = []
  agent = lambda obs, reset, state=None, training=True: None
  agent.save = lambda: saves.append(step.value)
  progress = _Stub(update=lambda value, force=False: None)
  dreamer.train_and_evaluate(config, agent, train, test, step, progress)
  assert replay.count_steps(tmp_path / 'episodes', 2) == 120 >= config.steps
  assert saves == [50, 100, 150]


class _InterruptedModel(StubModel):
  """Two updates of 50 ms on a fake clock, then Ctrl-C during the third."""

  calls = 0

  def __init__(self, clock):
    self.clock = clock

  def train(self, data):
    self.calls += 1
    if self.calls == 3:
      raise KeyboardInterrupt
    self.clock[0] += 0.05
    return {'model_loss': 1.0}


def test_interrupted_training_is_finished_after_a_resume(monkeypatch):
  clock = [100.0]
  monkeypatch.setattr(dreamer.time, 'time', lambda: clock[0])
  config = make_config(log_images=False, pretrain=10)
  agent = dreamer.Agent(
      config, _InterruptedModel(clock), itertools.repeat({}), None,
      tools.Counter(), logger.Progress(1000, 0), np.random.default_rng(0))
  obs = {'image': np.zeros((1, 64, 64, 3), np.uint8)}
  with pytest.raises(KeyboardInterrupt):
    agent(obs, np.array([True]))
  assert agent.updates == 2
  assert agent.train_seconds == pytest.approx(0.1)
  model = _InterruptedModel(clock)
  model.calls = -100
  resumed = dreamer.Agent(
      config, model, itertools.repeat({}), None, tools.Counter(),
      logger.Progress(1000, 0), np.random.default_rng(0))
  resumed.set_state(agent.get_state())
  resumed(obs, np.array([True]))  # The 8 updates left of the pretrain.
  resumed(obs, np.array([False]))
  assert (resumed.updates, model.calls) == (10, -92)


def test_checkpoint_without_agent_state_is_a_clear_error(tmp_path, capsys):
  path = tmp_path / checkpoint.NAME
  path.write_bytes(checkpoint.encode({'model': {}, 'agent': {}, 'sampler': {}}))
  model = StubModel()
  model.set_state = lambda state: None
  agent = dreamer.Agent(
      make_config(), model, None, None, tools.Counter(), None,
      np.random.default_rng(0))
  with pytest.raises(SystemExit) as info:
    checkpoint.load_checkpoint(path, model, agent, sampler=None)
  assert info.value.code == 2
  error = capsys.readouterr().err
  assert re.search(r"cannot resume from .*KeyError\('train_last'\)", error)
  assert len(error.strip().splitlines()) == 1
