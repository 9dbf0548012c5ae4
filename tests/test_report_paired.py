"""The report's paired statistics: differences to uniform Euler at the same NFE and seed, rows that
coincide shown once, intervals inside the metric's domain, and the precision table's paired widths."""
import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from lsd.metrics.records import RecordError, load_records, make_record, write_record

SAMPLERS = ["euler", "tweedie", "lsd-euler", "lsd+-euler", "teacher"]
NFES = [4, 8]
SEEDS = [0, 1, 2]
SAMPLES = 32


def nll_per_sample(sampler: str, nfe: int, seed: int) -> np.ndarray:
    """Per-sample NLL with common random numbers: sample i of every sampler shares most of its noise."""
    shared = np.random.default_rng([seed, 0]).normal(0.0, 0.5, SAMPLES)
    own = np.random.default_rng([seed, 1 + SAMPLERS.index(sampler), nfe]).normal(0.0, 0.02, SAMPLES)
    if sampler in ("tweedie", "lsd+-euler"):  # made identical below, sample for sample
        own = np.random.default_rng([seed, 1 + SAMPLERS.index({"tweedie": "euler"}.get(sampler, "lsd-euler")),
                                     nfe]).normal(0.0, 0.02, SAMPLES)
    level = {"euler": 3.0, "tweedie": 3.0, "lsd-euler": 2.5, "lsd+-euler": 2.5, "teacher": 2.0}[sampler]
    if sampler == "lsd+-euler" and nfe == 8:  # LSD+ differs from LSD here
        level = 2.4
    return np.exp(np.log(level) + shared + own)


def write_records(folder, per_sample: bool = True, ill_conditioned: bool = False):
    for sampler in SAMPLERS:
        for nfe in [64] if sampler == "teacher" else NFES:
            for seed in SEEDS:
                nll = nll_per_sample(sampler, nfe, seed)
                flags = (nll > 3.0).astype(float)
                twin = {"tweedie": "euler"}.get(sampler, sampler)
                if sampler == "lsd+-euler" and nfe == 4:
                    twin = "lsd-euler"
                extra = {"samples_sha256": f"{twin}-{nfe}-{seed}",
                         "frechet_digits_fit": {"well_conditioned": not (ill_conditioned and seed == 1)}}
                if per_sample:
                    extra["per_sample"] = {"oracle_nll": list(nll), "countdown_error_any": list(flags)}
                record = make_record(backbone="toy", sampler=sampler, nfe=nfe, seed=seed, metric_set="m",
                                     metrics={"oracle_nll": float(nll.mean()),
                                              "countdown_error_any": float(flags.mean()),
                                              "frechet_digits": float(nll.mean() * 10)},
                                     num_samples=SAMPLES, extra=extra)
                write_record(folder / sampler / f"nfe{nfe}" / f"seed{seed}.json", record)


def test_paired_differences_duplicates_and_precision(tmp_path):
    from lsd.report import build_report

    write_records(tmp_path / "records", ill_conditioned=True)
    out = tmp_path / "out"
    build_report(tmp_path / "records", out, samplers=SAMPLERS)
    pairs = pd.read_csv(out / "paired.csv", keep_default_na=False)
    vs = pairs[(pairs["metric"] == "oracle_nll") & (pairs["baseline"] == "euler")].set_index(["sampler", "nfe"])
    # paired sample by sample; the difference is the mean over seeds of the per-sample differences
    assert set(vs["pairing"]) == {"samples"}
    expected = np.mean([np.mean(nll_per_sample("lsd-euler", 8, s) - nll_per_sample("euler", 8, s)) for s in SEEDS])
    assert vs.loc[("lsd-euler", 8), "difference"] == pytest.approx(expected)
    assert vs.loc[("lsd-euler", 8), "verdict"] == "better" and vs.loc[("lsd-euler", 8), "high"] < 0
    assert vs.loc[("lsd-euler", 8), "interval"] == "paired-t"
    # the coincidences are detected from the samples hashes, not from the names
    assert vs.loc[("tweedie", 4), "same_as"] == "euler" and vs.loc[("tweedie", 8), "same_as"] == "euler"
    assert vs.loc[("lsd+-euler", 4), "same_as"] == "lsd-euler" and vs.loc[("lsd+-euler", 8), "same_as"] == ""
    teacher = pairs[(pairs["baseline"] == "teacher") & (pairs["metric"] == "oracle_nll")]
    assert set(teacher["baseline_nfe"]) == {64} and (teacher["verdict"] == "worse").all()

    tex = (out / "tables" / "toy__oracle_nll__vs_euler.tex").read_text()
    assert "lsd-euler &" in tex and "= lsd-euler" in tex and "\ntweedie &" not in tex
    main = (out / "tables" / "toy__oracle_nll.tex").read_text()
    assert "\ntweedie &" not in main and "tweedie is not shown" in main and "= lsd-euler" in main
    assert "Tweedie step equals the Euler step" in main
    frechet = (out / "tables" / "toy__frechet_digits.tex").read_text()
    assert r"$^\dagger$" in frechet and "not well conditioned" in frechet
    summary = pd.read_csv(out / "summary.csv", keep_default_na=False)
    assert set(summary[summary["metric"] == "frechet_digits"]["ill_conditioned_seeds"]) == {"1"}
    nll = summary[summary["metric"] == "oracle_nll"]
    assert (nll["low"] > 0).all() and set(nll["interval"]) == {"seeds:t-log"}
    rates = summary[summary["metric"] == "countdown_error_any"]
    assert set(rates["interval"]) == {"pooled:clopper-pearson"}
    assert ((rates["low"] >= 0) & (rates["high"] <= 1)).all()

    precise = pd.read_csv(out / "precision.csv").set_index("metric")
    row = precise.loc["oracle_nll"]
    widths = vs[vs["same_as"] == ""]["width"]
    assert row["paired_cells"] == len(widths) == 3  # lsd-euler at 4 and 8, lsd+-euler at 8
    assert row["paired_cells_wider_than_tenth"] == int((widths > row["tenth_of_gap"]).sum())
    assert row["paired_median_width"] < row["median_width"]  # common random numbers pay off
    readme = (out / "README.md").read_text()
    assert "## Difference to Euler" in readme and "NFE 8: better: lsd-euler, lsd+-euler;" in readme
    assert "## Rows identical by construction" in readme and "tweedie at NFE 4 = euler" in readme
    assert "Paired goal" in readme
    if shutil.which("pdflatex"):
        for table in (out / "tables").glob("*.tex"):
            doc = tmp_path / f"{table.stem}.tex"
            doc.write_text("\\documentclass{article}\\usepackage{booktabs}\\begin{document}\n" + table.read_text()
                           + "\\end{document}\n")
            run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
                                 cwd=tmp_path, capture_output=True, text=True, timeout=120)
            assert run.returncode == 0, f"{table.name}: {run.stdout[-1500:]}"


def test_paired_on_record_values_without_per_sample(tmp_path):
    from lsd.report import build_report

    write_records(tmp_path / "records", per_sample=False)
    build_report(tmp_path / "records", tmp_path / "out", samplers=SAMPLERS)
    pairs = pd.read_csv(tmp_path / "out" / "paired.csv", keep_default_na=False)
    assert set(pairs["pairing"]) == {"seeds"}
    row = pairs[(pairs["sampler"] == "lsd-euler") & (pairs["nfe"] == 8) & (pairs["metric"] == "oracle_nll")
                & (pairs["baseline"] == "euler")].iloc[0]
    expected = np.mean([nll_per_sample("lsd-euler", 8, s).mean() - nll_per_sample("euler", 8, s).mean()
                        for s in SEEDS])
    assert row["difference"] == pytest.approx(expected)


def test_share_whose_paired_differences_are_all_zero_gets_a_real_interval(tmp_path):
    from lsd.report import build_report

    write_records(tmp_path / "records")
    for path in (tmp_path / "records").rglob("*.json"):  # every sample fails for every sampler
        rec = json.loads(path.read_text())
        rec["metrics"]["countdown_error_any"]["value"] = 1.0
        rec["extra"]["per_sample"]["countdown_error_any"] = [1.0] * SAMPLES
        path.write_text(json.dumps(rec))
    build_report(tmp_path / "records", tmp_path / "out", samplers=SAMPLERS)
    pairs = pd.read_csv(tmp_path / "out" / "paired.csv", keep_default_na=False)
    rates = pairs[(pairs["metric"] == "countdown_error_any") & (pairs["same_as"] == "")]
    assert (rates["interval"] == "newcombe").all() and (rates["low"] < 0).all() and (rates["high"] > 0).all()
    assert (rates["verdict"] == "not distinguishable").all()


def test_malformed_per_sample_values_name_the_record(tmp_path):
    write_records(tmp_path / "records")
    path = tmp_path / "records" / "euler" / "nfe4" / "seed0.json"
    rec = json.loads(path.read_text())
    rec["extra"]["per_sample"]["oracle_nll"] = rec["extra"]["per_sample"]["oracle_nll"][:-1]
    path.write_text(json.dumps(rec))
    assert len(load_records(tmp_path / "records"))  # not read unless asked for
    with pytest.raises(RecordError, match=r"seed0.json: .*per_sample.oracle_nll must be a list of 32 numbers"):
        load_records(tmp_path / "records", per_sample=True)


def test_evaluate_keeps_per_sample_values():
    from lsd.evaluate import evaluate_samples
    from lsd.tasks import make_task

    task = make_task("countdown")
    x = task.sample_corpus(12, seed=0)
    out = evaluate_samples(x, ["countdown", "entropy"], {"task": "countdown"})
    per = out["_per_sample"]
    assert set(per) == {"countdown_error_any", "entropy"}
    for name, values in per.items():
        assert len(values) == 12 and np.mean(values) == pytest.approx(out[name]["value"], rel=1e-6)
    iv = out["countdown_error_any"]["interval"]
    assert iv.method == "clopper-pearson" and 0.0 <= iv.low <= iv.high <= 1.0
