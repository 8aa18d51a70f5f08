"""A whole (tiny) bench run: the JSON's named fields, the plot, the table, the compare gate
and its exit code. Very small settings keep it to seconds; no speed is asserted."""

import copy
import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from stylert.bench import suite  # noqa: E402
from stylert.bench.configs import BASELINE, discover, select  # noqa: E402
from stylert.bench.report import plot, table, write_json  # noqa: E402

FAST = dict(batch=2, size=32, min_time=0.0, min_iters=2, warmup=0.0, threads=1, peak_n=128, peak_time=0.0)


@pytest.fixture(scope="module")
def result(tiny_export, tmp_path_factory):
    opt = suite.BenchOptions(model=str(tiny_export), configs=["onnxruntime-fp32", "onnxruntime-int8", "tensorrt"],
                             cache=str(tmp_path_factory.mktemp("cache")), **FAST)
    return suite.run_bench(opt, log=lambda m: None)


def test_json_has_named_fields(result, tmp_path):
    assert result["kind"] == "stylert-bench" and result["baseline"] == BASELINE
    env = result["environment"]
    assert env["cpu"]["model"] and env["versions"]["onnxruntime"] and "git_commit" in env and env["threads"] == 1
    assert result["model"]["work_per_image"]["flops"] > 0 and result["peak"]["peak_gflops"] > 0
    rows = {r["name"]: r for r in result["results"]}
    assert set(rows) >= {BASELINE, "onnxruntime-fp32", "onnxruntime-int8", "tensorrt-fp16"}
    for name in (BASELINE, "onnxruntime-fp32", "onnxruntime-int8"):
        r = rows[name]
        assert r["status"] == "measured", r["note"]
        assert r["iterations"] >= 2 and r["throughput"]["images_per_s"] > 0
        assert set(r["stages"]) == {"preprocess", "h2d", "encode", "mix", "decode", "d2h", "postprocess"}
        for k in ("median_ms", "iqr_ms", "p90_ms", "p99_ms", "max_ms", "cv_pct"):
            assert k in r["latency"] and k in r["stages"]["encode"]["host"]
        assert r["cold_start"]["load_s"] >= 0 and r["cold_start"]["first_inference_s"] > 0
        assert {"psnr_db", "max_abs", "gate_psnr_db", "passed"} <= set(r["accuracy"])
        assert len(r["trace_ms"]) == r["iterations"]
    assert rows[BASELINE]["throughput"]["ratio_vs_baseline"] == pytest.approx(1.0)
    # every row is judged against the peak of its own precision (int8: an int8 GEMM), or the
    # fp32 one where that is higher (bench/flops.py peak_for)
    peak = result["peak"]
    assert peak["int8_peak_gops"] > 0 and peak["peak_gflops"] > 0
    e8, e32 = rows["onnxruntime-int8"]["efficiency"], rows["onnxruntime-fp32"]["efficiency"]
    assert e8["fraction_of_peak"] == pytest.approx(e8["gflops"] / max(peak["int8_peak_gops"], peak["peak_gflops"]))
    assert e32["fraction_of_peak"] == pytest.approx(e32["gflops"] / peak["peak_gflops"])
    assert rows[BASELINE]["accuracy"]["max_abs"] == 0.0
    # ORT FP32 is the same math as the reference.
    assert rows["onnxruntime-fp32"]["accuracy"]["max_abs"] < 1e-3 and rows["onnxruntime-fp32"]["accuracy"]["passed"]
    assert rows["onnxruntime-int8"]["configuration"]["info"]["via"] == "stylert.engine.runtime.Engine"
    assert rows["tensorrt-fp16"]["status"] == "not measured" and "TensorRT" in rows["tensorrt-fp16"]["note"]
    # Round trip through the file, and the readers.
    p = tmp_path / "r.json"
    write_json(result, p)
    back = suite.load_json(p)
    assert back["results"][0]["name"] == result["results"][0]["name"]


def test_table_and_plot(result, tmp_path):
    t = table(result)
    for name in (BASELINE, "onnxruntime-fp32", "tensorrt-fp16", "not measured: TensorRT"):
        assert name in t
    png = tmp_path / "b.png"
    plot(result, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reports_follow_the_output_rule(result, tmp_path):
    """--json and --plot never replace a file unless --overwrite, like every other output."""
    from stylert.engine.errors import StyleRTError

    for write, name in ((write_json, "r.json"), (plot, "p.png")):
        p = tmp_path / name
        p.write_bytes(b"kept")
        with pytest.raises(StyleRTError, match="would replace an existing file"):
            write(result, p)
        assert p.read_bytes() == b"kept"
        write(result, p, overwrite=True)
        assert p.read_bytes() != b"kept"


def test_compare_gate(result):
    same = suite.compare_runs(result, result, 0.10)
    assert same["passed"] and same["compared"] >= 3
    faster_before = copy.deepcopy(result)
    for r in faster_before["results"]:
        if r["throughput"]:
            r["throughput"]["images_per_s"] *= 2
            if r["name"] != BASELINE:
                r["throughput"]["ratio_vs_baseline"] *= 2
    gate = suite.compare_runs(result, faster_before, 0.10)
    assert not gate["passed"]
    bad = {c["name"] for c in gate["checks"] if not c["speed_ok"]}
    assert "onnxruntime-fp32" in bad and BASELINE in bad
    # Within the allowance: passes.
    assert suite.compare_runs(result, faster_before, 0.6)["passed"]


def test_cli_compare_exit_code(result, tiny_export, tmp_path, capsys):
    from stylert.engine.cli import main

    base = copy.deepcopy(result)
    for r in base["results"]:
        if r["throughput"] and r["name"] != BASELINE:
            r["throughput"]["ratio_vs_baseline"] *= 100  # a baseline no run can match
    bp = tmp_path / "base.json"
    bp.write_text(json.dumps(base))
    args = ["bench", "--model", str(tiny_export), "--batch", "2", "--size", "32", "--min-time", "0", "--min-iters", "2",
            "--warmup", "0", "--threads", "1", "--configs", "onnxruntime-fp32", "--cache", str(tmp_path / "c"),
            "--json", str(tmp_path / "new.json"), "--compare", str(bp), "--max-regression", "10%"]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and (tmp_path / "new.json").is_file()
    assert main(args[:-4] + ["--overwrite"]) == 0  # no gate: success (new.json replaced, as asked)


def test_user_mistakes_are_clear(tmp_path):
    from stylert.engine.errors import StyleRTError

    with pytest.raises(StyleRTError, match="multiple of 8"):
        suite.BenchOptions(size=30)
    with pytest.raises(StyleRTError, match="neither an export folder"):
        suite.resolve_model(str(tmp_path), tmp_path)
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(StyleRTError, match="not a bench result"):
        suite.load_json(tmp_path / "x.json")


def test_select_keeps_baseline_and_filters():
    cs = discover()
    names = [c.name for c in select(cs, ["onnxruntime-fp32"])]
    assert BASELINE in names and "onnxruntime-fp32" in names and "onnxruntime-int8" not in names
    assert all(c.default for c in select(cs, None))
    assert len(select(cs, ["all"])) == len(cs)


def test_sweep_rows_and_plot(tiny_export, tmp_path):
    opt = suite.BenchOptions(model=str(tiny_export), configs=["onnxruntime-fp32"], sweep=True, sweep_batches=(1, 2),
                             cache=str(tmp_path / "c"), **FAST)
    r = suite.run_bench(opt, log=lambda m: None)
    pts = {(p["name"], p["batch"]) for p in r["sweep"]}
    assert pts == {(n, b) for n in (BASELINE, "onnxruntime-fp32") for b in (1, 2)}
    assert all(p["images_per_s"] > 0 and p["iterations"] >= 2 for p in r["sweep"])
    plot(r, tmp_path / "s.png")
    assert "sweep" in table(r)


def test_images_option_names_the_folder(tmp_path):
    from stylert.engine.errors import StyleRTError

    assert suite.content_dir(suite.BenchOptions(images=str(tmp_path))) == tmp_path
    with pytest.raises(StyleRTError, match="not a folder"):
        suite.content_dir(suite.BenchOptions(images=str(tmp_path / "missing")))


def test_a_cached_engine_or_export_of_another_model_is_not_used(tiny_export, tiny_checkpoint, tmp_path):
    """bench's caches are named after what they hold (the export's, the weights' sha256); the
    entry's own record must agree, else it is rebuilt: another model is never measured as this one."""
    from stylert.bench.artifacts import engine_folder

    said = []
    out, why = engine_folder(tiny_export, "fp32", tmp_path / "engines", size=64, log=said.append)
    assert why.startswith("built") and engine_folder(tiny_export, "fp32", tmp_path / "engines", size=64)[1].startswith("cached")
    man = json.loads((out / "engine.json").read_text())
    man["source"]["decoder"]["sha256"] = "0" * 64  # what another export's engine left in the slot records
    (out / "engine.json").write_text(json.dumps(man))
    assert engine_folder(tiny_export, "fp32", tmp_path / "engines", size=64, log=said.append)[1].startswith("built")
    assert any("not this export's to run" in s for s in said), said
    # a cached export of a checkpoint: its manifest must record these weights
    cache = tmp_path / "bench"
    first = suite.resolve_model(str(tiny_checkpoint), cache, log=said.append)
    m = json.loads((first / "manifest.json").read_text())
    m["checkpoint"]["sha256"] = "0" * 64
    (first / "manifest.json").write_text(json.dumps(m))
    assert suite.resolve_model(str(tiny_checkpoint), cache, log=said.append) == first
    assert json.loads((first / "manifest.json").read_text())["checkpoint"]["sha256"] != "0" * 64  # exported again
