"""tfool.callbacks: the progress log and the TensorBoard writer of a backworking run."""

import dataclasses

import numpy as np

from tfool import backwork as bw
from tfool import callbacks

CONFIG = bw.BackworkConfig(
    labels=(0, 1), num_examples=2, reference_size=10, max_num_steps=5, jit_compile=False
)


def test_progress_logger_logs_start_every_nth_save_and_end(small_cnn, small_data):
    lines = []
    logger = callbacks.ProgressLogger(every=2, log=lines.append)
    result = bw.backwork(small_cnn, small_data, CONFIG, callbacks=[logger])
    assert lines[0] == "backworking 4 images (2 labels x 2), at most 5 steps"
    steps = [ln for ln in lines if ln.startswith("step")]
    assert [int(ln.split()[1]) for ln in steps] == list(range(0, result.steps + 1, 2))
    assert all("labels running" in ln and "min p per label [" in ln for ln in steps)
    assert lines[-1].startswith(f"backworking done after {result.steps} steps")


def test_tensorboard_logger_writes_every_term_and_an_image(small_cnn, small_data, tmp_path):
    import tensorflow as tf

    names = ("inputs", "conv0", "conv1", "fc")
    board = callbacks.TensorBoardLogger(str(tmp_path), image_every=2, layer_names=names)
    bw.backwork(small_cnn, small_data, CONFIG, callbacks=[board])
    (events,) = list(tmp_path.glob("events*"))
    tags = set()
    images = 0
    for record in tf.compat.v1.train.summary_iterator(str(events)):
        for value in record.summary.value:
            tags.add(value.tag)
            images += value.tag == "images"
    assert {"cost/total/label_0", "cost/softmax/label_1", "prob/min/label_0"} <= tags
    assert {f"cost/reference/{n}/label_0" for n in names} <= tags
    assert {f"cost/batch/{n}/label_1" for n in names} <= tags
    assert images >= 2


def test_grid_tiles_labels_by_rows_and_scales_to_unit_range():
    images = np.arange(2 * 3 * 2 * 2 * 1, dtype=np.float32).reshape(2, 3, 2, 2, 1)
    mosaic = callbacks._grid(images)
    assert mosaic.shape == (1, 4, 6, 1) and mosaic.min() == 0 and mosaic.max() == 1
    # label 1, example 2 sits in the bottom-right corner
    np.testing.assert_allclose(mosaic[0, 2:, 4:, 0] * images.max(), images[1, 2, :, :, 0])


def test_progress_line_names_the_lagging_label_and_its_reinits():
    lines = []
    logger = callbacks.ProgressLogger(every=1, log=lines.append, class_names=list("abcd"))
    target = np.array([[0.9995, 0.9999], [0.2, 0.7], [0.4, 0.5], [0.9991, 0.9992]])
    event = bw.SaveEvent(
        step=40,
        labels=np.array([0, 1, 2, 3]),
        target_probs=target,
        cost=np.zeros(4),
        terms={},
        reinits=np.array([0, 17, 3, 1]),
        active=np.array([False, True, True, False]),
        images=np.zeros((4, 2, 2, 2, 1)),
    )
    logger.on_save(event)
    assert "2/4 labels running" in lines[-1]
    assert lines[-1].endswith("lagging: b (17 reinits, min p 0.200)")
    logger.on_save(dataclasses.replace(event, active=np.ones(4, bool)))
    assert "lagging" not in lines[-1]  # nothing finished yet: no label lags behind others
