"""The Logger: metrics.jsonl, TensorBoard events and GIF videos."""

import json
import re

import imageio.v3 as iio
import numpy as np

import logger as logger_module


def read_events(logdir):
  """{(tag, step): summary value} from the event files in `logdir`."""
  import tensorflow as tf
  paths = list(logdir.glob('events.out.tfevents*'))
  assert paths
  return {
      (value.tag, event.step): value
      for path in paths
      for event in tf.compat.v1.train.summary_iterator(str(path))
      for value in event.summary.value}


def test_logger_writes_everything(tmp_path):
  logger = logger_module.Logger(tmp_path / 'log')
  logger.scalar('model_loss', np.float32(1.5))
  logger.scalar('div', 3)
  logger.write(step=10, fps=True, prefix='agent')
  logger.scalar('train/return', 7.25)
  rng = np.random.default_rng(0)
  logger.video('train/video', rng.uniform(size=(2, 6, 8, 8, 3)))
  logger.write(step=20, prefix='sim')
  logger.scalar('model_loss', 1.0)
  logger.write(step=30, fps=True, prefix='agent')
  logger.close()

  logdir = tmp_path / 'log'
  lines = [json.loads(line) for line in
           (logdir / 'metrics.jsonl').read_text().splitlines()]
  assert lines[0] == {'step': 10, 'model_loss': 1.5, 'div': 3.0}
  assert lines[1] == {'step': 20, 'train/return': 7.25}
  assert lines[2]['step'] == 30 and lines[2]['model_loss'] == 1.0
  assert lines[2]['fps'] > 0

  events = read_events(logdir)
  assert set(events) == {
      ('agent/model_loss', 10), ('agent/div', 10), ('sim/train/return', 20),
      ('sim/train/video', 20), ('agent/model_loss', 30),
      ('agent/fps', 30)}
  assert events['agent/model_loss', 10].simple_value == 1.5
  video = events['sim/train/video', 20].image
  assert video.encoded_image_string.startswith(b'GIF')
  assert (video.height, video.width) == (8, 16)

  gif = logdir / 'videos' / 'sim_train_video-20.gif'
  frames = iio.imread(gif.read_bytes(), index=None)
  assert frames.shape == (6, 8, 16, 3)
  assert [p.name for p in (logdir / 'videos').iterdir()] == [gif.name]


def test_uint8_grayscale_video(tmp_path):
  logger = logger_module.Logger(tmp_path)
  frames = np.arange(4 * 5 * 5, dtype=np.uint8).reshape(4, 5, 5, 1) * 2
  logger.video('openl', frames)
  logger.write(step=3)
  logger.close()
  assert not (tmp_path / 'metrics.jsonl').exists()
  read = iio.imread((tmp_path / 'videos' / 'openl-3.gif').read_bytes(),
                    index=None)
  assert read.shape == (4, 5, 5, 3)
  assert set(read_events(tmp_path)) == {('openl', 3)}


def test_progress_line_estimates_time_left_from_the_schedule():
  progress = logger_module.Progress(10_000, 0, updates_per_step=0.1)
  progress.collected(1000, 10.0)  # 100 env steps/s while collecting.
  progress.train_return, progress.test_return = 12.5, None
  progress.replay = lambda: 3 * 2 ** 29
  progress.trained(1, 40.0, 40.0)  # The first update traces: left out.
  for updates in range(2, 101):
    progress.trained(updates, 40.0 + 2.0 * (updates - 1), 2.0)
  line = progress.line(1000, progress._start + 210.0)
  # 9,000 steps left: 90 s collecting + 900 updates at 2 s = 1,890 s.
  assert re.fullmatch(re.escape(
      '[progress] step 1,000/10,000 | 4.8 steps/s overall, 100.0 collecting '
      '| updates 100 (2.00 s each) | return train 12.5 test - | memory ')
      + r'\d+\.\d GB \(replay 1\.5 GB\) \| left 0h31m', line), line


def test_progress_says_estimating_until_updates_after_the_first_are_timed():
  progress = logger_module.Progress(10_000, 0, updates_per_step=0.1)
  progress.collected(1000, 10.0)
  for updates, seconds in ((1, 40.4), (2, 8.0), (3, 8.1)):
    progress.trained(updates, 0.0, seconds)
    line = progress.line(1000, progress._start + 100.0)
    assert f'updates {updates} (estimating)' in line and line.endswith(
        'left estimating'), line
  progress.trained(4, 0.0, 7.9)
  line = progress.line(1000, progress._start + 100.0)
  # The median of 8.0, 8.1, 7.9 s: 9,000 steps = 90 s + 900 updates · 8 s.
  assert 'updates 4 (8.00 s each)' in line and line.endswith('left 2h01m')
  progress.trained(5, 0.0, 30.0)  # A second tracing (openl) barely moves it.
  assert '(8.05 s each)' in progress.line(1000, progress._start + 100.0)


def test_progress_tracks_collection_time_without_training(monkeypatch):
  clock = iter([0.0, 0.0, 10.0, 25.0])
  monkeypatch.setattr(logger_module.time, 'time', lambda: next(clock))
  progress = logger_module.Progress(1000, 0)
  progress.track(0, 0.0)
  progress.track(200, 0.0)
  progress.track(400, 5.0)  # 5 of these 15 seconds were training.
  assert (progress.collect_steps, progress.collect_seconds) == (400, 20.0)
