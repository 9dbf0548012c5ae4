"""The performance scripts run and return their ratios (tiny sizes: seconds, not minutes).

Not run here (too slow for the test suite, exercised by `python -m benchmarks --quick`):
eval_throughput (loads an evaluator) and a successful workflow_timing smoke run (a
Snakemake run of ~1 minute); its failure path is tested.
"""
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import distill_overhead, gpu, sampler_overhead, scaling, workflow_timing  # noqa: E402
from benchmarks.common import fit_line  # noqa: E402

TINY_DIT = ["--hidden", "32", "--blocks", "1", "--vocab", "16", "--threads", "1"]


def finite(x) -> bool:
    return isinstance(x, float) and math.isfinite(x)


def test_fit_line_recovers_a_line():
    f = fit_line([8, 16, 32, 64], [0.5 + 0.25 * n for n in (8, 16, 32, 64)])
    assert abs(f["slope"] - 0.25) < 1e-12 and abs(f["intercept"] - 0.5) < 1e-9 and abs(f["r2"] - 1) < 1e-12
    g = fit_line([1, 2, 4, 8], [3 * n for n in (1, 2, 4, 8)])
    assert abs(g["loglog_exponent"] - 1.0) < 1e-12


@pytest.mark.slow  # runs a benchmark script
def test_sampler_overhead_quick_returns_ratios():
    out = sampler_overhead.main(["--quick", "--batch", "2", "--length", "16", "--vocab", "16", "--hidden", "32",
                                 "--blocks", "1", "--nfe", "4", "--repeats", "1"])
    assert out["nfe"] == 4 and finite(out["ratio"]) and out["ratio"] > 0 and finite(out["in_run_overhead"])


@pytest.mark.slow  # runs a benchmark script
def test_distill_overhead_quick_returns_ratio_and_memory(tmp_path):
    out = distill_overhead.main(["--quick", *TINY_DIT, "--length", "8", "--teacher-steps", "32",
                                 "--trajectories", "4", "--candidates", "16", "--memory-steps", "16", "32",
                                 "--memory-trajectories", "2"])
    assert out["calls"] == out["teacher_calls"] + out["student_calls"] == 32 + 8
    assert finite(out["ratio"]) and out["ratio"] >= 1.0  # wall includes the network time
    phases = out["phases"]
    assert abs(sum(p["wall_s"] for p in phases.values()) - out["wall_s"]) < 1e-6
    assert abs(sum(p["network_s"] for p in phases.values()) - out["network_s"]) < 1e-9
    probes = out["memory"]["probes"]
    assert [p["teacher_steps"] for p in probes] == [16, 32]
    assert all(finite(p["peak_delta_mib"]) for p in probes) and finite(out["memory"]["ratio_last_first"])
    assert out["memory"]["record_bytes"] == distill_overhead.record_bytes(16, 2, 8, 17)


@pytest.mark.slow  # runs a benchmark script
def test_scaling_quick_returns_fits_and_plot(tmp_path):
    png = tmp_path / "scaling.png"
    out = scaling.main(["--quick", *TINY_DIT, "--length", "8", "--batch", "2", "--nfe", "2", "4", "8",
                        "--lengths", "4", "8", "--batches", "1", "2", "--teacher-steps", "8", "16",
                        "--trajectories", "2", "--repeats", "1", "--plot", str(png)])
    for key in ("sampling_vs_nfe", "student_vs_nfe", "teacher_vs_steps", "sampling_vs_length", "sampling_vs_batch"):
        assert finite(out[key]["slope"]) and finite(out[key]["r2"]), key
    assert out["sampling_vs_nfe"]["x"] == [2, 4, 8]
    assert png.stat().st_size > 1000


@pytest.mark.slow  # runs a benchmark script
def test_workflow_timing_reports_a_failure_honestly():
    out = workflow_timing.main(["--configfile", "workflow/configs/no-such-config.yaml"])
    assert out["ok"] is False and "not found" in out["error"]
    assert "overhead_per_job_s" not in out and "first_wall_s" not in out


@pytest.mark.slow  # runs a benchmark script
def test_gpu_script_tiny_on_cpu(tmp_path):
    res = gpu.main([str(tmp_path), "--quick", "--device", "cpu", "--threads", "1", "--nfe", "2", "4",
                    "--tauldr-nfe", "2"])
    assert res["errors"] == {}, res["errors"]
    image = res["tauldr"]
    assert [(r["base"], r["nfe"], r["calls"]) for r in image["rows"]] == [("tauleap", 2, 2), ("euler", 2, 2)]
    assert image["batch"] == 4 and all(r["per_nfe_s"] > 0 for r in image["rows"])
    assert res["projection"]["hours"]["image sampling"] > 0
    for batch in (2, 4):
        s = res[f"sampling_b{batch:04d}"]
        assert [r["nfe"] for r in s["rows"]] == [2, 4]
        assert all(finite(r["outside_over_inside"]) and r["calls"] == r["nfe"] for r in s["rows"])
    cell = res["lsd_cell"]
    assert cell["end_to_end_device_record_s"] > 0 and cell["end_to_end_as_is_s"] > 0
    assert [r["dtype"] for r in res["scoring"]["rows"]] == ["float32", "bfloat16"]
    assert all(r["tokens_per_s"] > 0 for r in res["scoring"]["rows"])
    assert res["projection"]["hours"]["total"] > 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["projection"]["hours"] == res["projection"]["hours"]
    assert "GPU-hours" in (tmp_path / "projection.md").read_text()
    assert "LSD+ cell" in (tmp_path / "results.md").read_text()
    assert "tauLDR image sampling" in (tmp_path / "results.md").read_text()
    assert "image sampling (tauLDR CIFAR-10)" in (tmp_path / "projection.md").read_text()


@pytest.mark.slow  # runs a benchmark script
def test_method_studies_run_at_a_tiny_size(tmp_path):
    """distill_quality and ablations end to end on the exact oracle (tiny sizes): their summaries
    report every row and the verdicts they promise."""
    import pandas as pd

    from benchmarks import ablations, distill_quality

    tiny = ["--backbone", "oracle-exact", "--seeds", "0", "1", "--samples", "8", "--teacher-steps", "32",
            "--trajectories", "4", "--candidates", "16"]
    distill_quality.main(tiny + ["--nfe", "8", "--no-jys", "--out", str(tmp_path / "dq")])
    summary = (tmp_path / "dq" / "oracle-exact" / "summary.md").read_text()
    assert "Paper ordering" in summary and "| lsd+-euler |" in summary and "| temp@lsd+-euler-power |" in summary
    rows = pd.read_csv(tmp_path / "dq" / "oracle-exact" / "samples.csv")
    assert set(rows["seed"]) == {0, 1} and (rows.groupby(["sampler", "seed"]).size() == 8).all()
    ablations.main(tiny + ["--nfe", "8", "--zetas", "0", "0.05", "--out", str(tmp_path / "abl")])
    text = (tmp_path / "abl" / "oracle-exact" / "summary.md").read_text()
    assert "| lsd+ | 0 |" in text and "| lsd | 0.05 |" in text and "strict (zeta 0)" in text


@pytest.mark.slow  # runs a benchmark script
def test_countdown_recipe_sweep_runs_a_variant_end_to_end(tmp_path):
    """The sweep trains a variant in a subprocess, samples it with the three 1024-step samplers
    (16 steps with --quick) and tabulates every one of them."""
    from benchmarks import countdown_recipe

    countdown_recipe.main([str(tmp_path), "--quick", "--samples", "2", "--only", "h64-s1500", "--device", "cpu"])
    record = json.loads((tmp_path / "h64-s1500" / "eval.json").read_text())
    assert record["train"]["steps"] == 3 and record["samples"] == 2
    for sampler in ("left-to-right", "spread (theta = inf)", "uniform Euler"):
        assert 0.0 <= record[sampler]["violating_samples"] <= 1.0
    row = [line for line in (tmp_path / "summary.md").read_text().splitlines() if line.startswith("| h64-s1500")]
    assert len(row) == 1 and "not finished" not in row[0] and row[0].count("%") == 6
    assert set(record["stray_mass"]) == {"0.05", "0.6", "0.9"}


def test_coupling_gain_measures_correlation_and_spreads(tmp_path):
    """On records with known per-sample values: the correlation with Euler, the within-seed standard
    error of the paired difference and the between-seed spread, for each of the two folders."""
    from benchmarks import coupling_gain

    rng = np.random.default_rng(0)
    for folder, noise in (("independent", 1.0), ("coupled", 0.1)):
        for seed in (0, 1, 2):
            base = rng.normal(size=64)
            values = {"euler": base, "lsd-euler": base + 0.5 + seed * 0.1 + noise * rng.normal(size=64)}
            for sampler, v in values.items():
                path = tmp_path / folder / "b" / sampler / "nfe8" / f"seed{seed}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps({"extra": {"per_sample": {"oracle_nll": list(v)}}}))
    text = coupling_gain.main(["--independent", str(tmp_path / "independent"), "--coupled", str(tmp_path / "coupled"),
                               "--backbones", "b", "--samplers", "lsd-euler", "--nfe", "8",
                               "--out", str(tmp_path / "gain.md")])
    row = [line for line in text.splitlines() if line.startswith("| b | lsd-euler | 8 |")][0]
    corr_i, corr_c, se_i, se_c, between_i, between_c = (float(c) for c in row.strip("|").split("|")[3:])
    assert corr_c > 0.9 > corr_i and se_c < 0.2 * se_i
    assert between_c == pytest.approx(0.1, abs=0.03)  # the 0.1-per-seed shift, which no coupling removes
    assert (tmp_path / "gain.md").read_text() == text
