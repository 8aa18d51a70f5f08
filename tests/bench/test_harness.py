"""The statistics and the timing loop of bench/harness.py (no timing is asserted)."""

import numpy as np
import pytest

from stylert.bench import harness
from stylert.bench.harness import Stage


def test_summarize_known_values():
    ms = np.arange(1, 101, dtype=np.float64)  # 1..100 ms
    s = harness.summarize((ms * 1e6).astype(np.int64))
    assert s.n == 100
    assert s.median_ms == pytest.approx(50.5)
    assert s.q1_ms == pytest.approx(25.75) and s.q3_ms == pytest.approx(75.25)  # linear (type 7)
    assert s.iqr_ms == pytest.approx(49.5)
    assert s.p90_ms == pytest.approx(90.1) and s.p99_ms == pytest.approx(99.01)
    assert (s.min_ms, s.max_ms, s.mean_ms) == (1.0, 100.0, 50.5)
    assert s.cv_pct == pytest.approx(100 * ms.std() / ms.mean())


def test_summarize_constant_and_empty():
    s = harness.summarize([5_000_000] * 7)
    assert s.cv_pct == 0.0 and s.iqr_ms == 0.0 and s.median_ms == 5.0
    with pytest.raises(ValueError):
        harness.summarize([])


def test_noise_warnings_fire_only_on_noise():
    steady = harness.summarize([10_000_000 + i for i in range(20)])
    assert harness.noise_warnings("x", steady, 3.0) == []
    noisy = harness.summarize([10_000_000, 20_000_000] * 10 + [100_000_000])
    w = harness.noise_warnings("cfg", noisy, 3.0)
    assert any("CV" in m and "remedy" in m for m in w)
    assert any("IQR/median" in m for m in w)
    assert any("spike" in m for m in w)


def test_run_once_times_every_stage_in_order():
    calls = []
    stages = [Stage(n, (lambda n: lambda x: calls.append(n) or x + 1)(n)) for n in ("a", "b", "c")]
    out, host, dev, e2e = harness.run_once(stages, 0)
    assert out == 3 and calls == ["a", "b", "c"]
    assert list(host) == ["a", "b", "c"] and dev == {}
    assert e2e >= sum(host.values())


def test_interleaved_order_minima_and_warmup_excluded():
    order = []

    def make(name):
        return [Stage("only", lambda x: order.append(name) or x)]

    harness.warm_up(make("W"), None, 0.0, min_iters=3)
    assert order == ["W"] * 3
    order.clear()
    ser = harness.measure_interleaved({"A": (make("A"), None, False), "B": (make("B"), None, False)}, min_time_s=0.0, min_iters=4)
    assert order == ["A", "B"] * 4  # round-robin, and warm-up calls are not in the series
    assert [len(s.e2e) for s in ser.values()] == [4, 4]
    assert set(ser["A"].host) == {"only"}


def test_slow_config_does_not_hold_the_fast_one():
    import time

    order = []
    slow = [Stage("s", lambda x: (order.append("S"), time.sleep(0.02))[1])]
    fast = [Stage("f", lambda x: order.append("F"))]
    ser = harness.measure_interleaved({"S": (slow, None, False), "F": (fast, None, False)}, min_time_s=0.05, min_iters=2)
    assert len(ser["S"].e2e) >= 2 and ser["S"].measured_s >= 0.05
    assert len(ser["F"].e2e) >= 2
    assert order[:2] == ["S", "F"]


def test_throughput_is_images_over_the_measured_window():
    s = harness.Series(e2e=[250_000_000, 250_000_000, 500_000_000])  # 1 s in all
    assert harness.throughput(16, s) == pytest.approx(48.0)
    assert harness.throughput(16, harness.Series()) == 0.0


def test_each_row_gets_its_own_gate():
    """The torch BF16 peer keeps its 35 dB gate; OpenVINO's BF16 engine keeps build-engine's
    (the precision table): one key shared by both must not let one replace the other."""
    from stylert.bench.configs import PEER_GATE_DB, Config, accuracy_gate
    from stylert.engine.precisions import PRECISIONS

    assert accuracy_gate(Config("torch-eager-bf16", "torch", "bf16")) == PEER_GATE_DB["bf16"] == 35.0
    assert accuracy_gate(Config("openvino-bf16", "openvino", "bf16")) == PRECISIONS["bf16"].min_psnr
    assert accuracy_gate(Config("onnxruntime-int8", "onnxruntime", "int8")) == PRECISIONS["int8"].min_psnr
    assert accuracy_gate(Config("torch-eager-fp32", "torch", "fp32")) == PRECISIONS["fp32"].min_psnr
