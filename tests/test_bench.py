"""helpers.tools.bench's timing: interleaved rounds and the clock over the training steps."""

import time

import keras
import numpy as np
from _refused import refused

from helpers.tools import bench


def _runner(name, seconds, calls):
    rounds = iter(seconds)

    def run(epochs):
        calls.append((name, epochs))
        return next(rounds)

    return run


def test_interleaved_speeds_warm_up_each_runner_then_take_the_median_round():
    calls = []
    runners = {
        "a": _runner("a", [99.0, 1.0, 4.0, 2.0], calls),  # the first call is the warm-up
        "b": _runner("b", [99.0, 2.0, 5.0, 8.0], calls),
    }
    speeds = bench._interleaved_speeds(runners, 10, epochs=2, repeats=3)
    assert calls == [("a", 1), ("b", 1)] + [("a", 2), ("b", 2)] * 3
    assert speeds == {"a": 2 * 10 / 2.0, "b": 2 * 10 / 5.0}


def test_interleaved_speeds_refuse_no_rounds():
    with refused("repeats", 0):
        bench._interleaved_speeds({"a": lambda epochs: 1.0}, 10, epochs=1, repeats=0)


def test_step_clock_leaves_out_the_time_between_epochs():
    class Pause(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            time.sleep(0.2)

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    clock = bench._StepClock()
    start = time.perf_counter()
    x, y = np.zeros((32, 4), "float32"), np.zeros((32, 1), "float32")
    model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[clock, Pause()])
    total = time.perf_counter() - start
    assert 0 < clock.seconds < total - 0.6
