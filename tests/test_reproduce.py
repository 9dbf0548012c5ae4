"""Reproducibility: samples hashes, `lsd reproduce`, the pinned digits classifier, a Frechet fit and a
CTMC Tweedie step that last-bit changes cannot move, and the committed cells of
workflow/configs/repro.yaml regenerated and compared (docs/reproducibility.md).

LSD_UPDATE_REPRO=1 rewrites the committed expected records (tests/data/repro/) instead of comparing."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lsd.cli import main
from lsd.reproduce import compare, compare_cell, samples_sha256

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = ROOT / "tests" / "data" / "repro"


def _record(value=1.0, low=0.5, sha="a" * 64, sampler="euler"):
    return {"schema": "lsd-result/1", "backbone": "b", "sampler": sampler, "nfe": 8, "seed": 0, "metric_set": "m",
            "metrics": {"entropy": {"value": value, "interval": {"low": low, "high": 2.0}}},
            "extra": {"samples_sha256": sha}}


def test_samples_hash_covers_values_shape_and_dtype():
    x = torch.arange(12).reshape(3, 4)
    assert samples_sha256(x) == samples_sha256(x.clone()) and len(samples_sha256(x)) == 64
    y = x.clone()
    y[2, 3] += 1
    assert len({samples_sha256(x), samples_sha256(y), samples_sha256(x.reshape(4, 3)),
                samples_sha256(x.to(torch.int32))}) == 4


def test_compare_names_each_kind_of_difference(tmp_path, capsys):
    assert compare_cell(_record(), _record()) == ("identical", "same samples")
    status, detail = compare_cell(_record(value=1.0 + 1e-12), _record())
    assert status == "equal within tolerance" and "same samples" in detail
    status, detail = compare_cell(_record(value=1.02, sha="b" * 64), _record())
    assert status == "changed" and "0.0196" in detail and "samples differ" in detail
    status, detail = compare_cell(_record(low=0.4), _record())
    assert status == "changed" and "entropy low" in detail
    assert compare_cell(_record(value=1.02), _record(), rtol=0.05)[0] == "equal within tolerance"
    # records made before samples were hashed: the metrics alone decide, and the detail says so
    assert compare_cell(_record(), _record(sha=None)) == ("identical", "no samples hash in the committed record")
    # folders: one cell per record, matched by (backbone, sampler, nfe, seed, metric set)
    for name, records in (("new", [_record(), _record(sampler="x")]), ("old", [_record(), _record(sampler="y")])):
        for i, rec in enumerate(records):
            (tmp_path / name).mkdir(exist_ok=True)
            (tmp_path / name / f"{i}.json").write_text(json.dumps(rec))
    rows = {r["sampler"]: r["status"] for r in compare(tmp_path / "new", tmp_path / "old")}
    assert rows == {"euler": "identical", "x": "new", "y": "missing"}
    with pytest.raises(SystemExit) as err:
        main(["reproduce", "--records", str(tmp_path / "new"), "--against", str(tmp_path / "old")])
    assert err.value.code == 1 and "1 identical, 1 missing, 1 new" in capsys.readouterr().out
    assert main(["reproduce", "--records", str(tmp_path / "new"), "--against", str(tmp_path / "old"),
                 "--allow-missing"]) == 0
    (tmp_path / "new" / "0.json").write_text(json.dumps(_record(value=3.0)))
    with pytest.raises(SystemExit):
        main(["reproduce", "--records", str(tmp_path / "new"), "--against", str(tmp_path / "old"), "--allow-missing"])
    assert "changed" in capsys.readouterr().out
    assert main(["reproduce", "--records", str(tmp_path / "none"), "--against", str(tmp_path / "old")]) == 2


def test_frechet_fit_is_stable_under_last_bit_changes_and_flags_singular_fits():
    """24 digits against the 359 test images in the classifier's 10 logits: a well-conditioned fit
    that a 1e-7 relative change of the features moves by less than 1e-6; 24 samples in 64 dimensions
    (the hidden features the digits cells used until now) are flagged as singular."""
    from sklearn.datasets import load_digits

    from lsd.metrics.digits_features import DigitsClassifier, digits_frechet
    from lsd.metrics.frechet import frechet_distance_features, frechet_fit
    from lsd.tasks.digits import to_images

    clf = DigitsClassifier.pinned()
    data = np.rint(load_digits().data).astype(np.int64)
    rng = np.random.default_rng(0)
    gen, ref = clf.features(data[rng.choice(len(data), 24, replace=False)]), clf.features(data[:359])
    fit = frechet_fit(gen, ref)
    assert fit["well_conditioned"] and fit["dims"] == 10 and fit["n_a"] == 24 and fit["condition_a"] < 1e4
    moved = frechet_fit(gen * (1.0 + 1e-7 * rng.standard_normal(gen.shape)), ref)["value"]
    assert abs(moved - fit["value"]) < 1e-6 * fit["value"]
    # the same value as FID's computation where both are well defined
    assert fit["value"] == pytest.approx(frechet_distance_features(gen, ref), rel=1e-8)
    assert not frechet_fit(gen[:15], ref)["well_conditioned"]  # under 2 samples per dimension
    wide = np.maximum(rng.standard_normal((24, 64)), 0.0)
    singular = frechet_fit(wide, np.maximum(rng.standard_normal((359, 64)), 0.0))
    assert not singular["well_conditioned"] and singular["condition_a"] is None
    assert digits_frechet(data[:24], data[:359], clf)["value"] == pytest.approx(
        frechet_fit(clf.features(to_images(torch.as_tensor(data[:24]))), ref)["value"], rel=1e-12)


def test_digits_classifier_is_the_committed_one_and_its_fallback_retrains_it(tmp_path, monkeypatch):
    from lsd.metrics.digits_features import (CHECKPOINT_NAME, WEIGHTS_SHA256, DigitsClassifier, checkpoint_path,
                                             weights_sha256)

    committed = DigitsClassifier.pinned()
    assert committed.sha256 == WEIGHTS_SHA256 and checkpoint_path().is_file()
    assert committed.features(np.zeros((2, 64), dtype=np.int64)).shape == (2, 10)
    monkeypatch.setenv("LSD_CHECKPOINTS", str(tmp_path / "none"))  # the committed file is absent
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        retrained = DigitsClassifier.pinned(cache=tmp_path / "cache" / CHECKPOINT_NAME)
        assert torch.get_num_threads() == 2  # the one-thread training gave the caller's threads back
    finally:
        torch.set_num_threads(before)
    assert retrained.sha256 == WEIGHTS_SHA256 and (tmp_path / "cache" / CHECKPOINT_NAME).is_file()
    # a cached file with other weights is refused, with one line naming it
    state = {k: v.clone() for k, v in retrained.model.state_dict().items()}
    state["out.bias"][0] += 1e-12
    retrained.model.load_state_dict(state)
    stale = DigitsClassifier(retrained.model, 0, retrained.test_accuracy)
    assert stale.sha256 == weights_sha256(state) != WEIGHTS_SHA256
    stale.save(tmp_path / "stale.safetensors")
    with pytest.raises(ValueError, match="pinned") as err:
        DigitsClassifier.load_or_train(tmp_path / "stale.safetensors")
    assert "\n" not in str(err.value)


@pytest.fixture(scope="module")
def tauldr():
    from lsd.backbones.registry import load_backbone

    return load_backbone("tiny-tauldr-digits")


def _tweedie_sample(bb, batch_size, threads=1):
    import lsd

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return lsd.sample(bb.model, lsd.Schedule.uniform("tweedie", 8), graph=bb.graph, noise=bb.noise,
                          num_samples=6, length=bb.length, seed=3, batch_size=batch_size)
    finally:
        torch.set_num_threads(before)


def test_tauldr_tweedie_samples_do_not_depend_on_batch_size_or_threads(tauldr):
    """The float32 UNet's output differs in the last bits between batch shapes; the Tweedie step on
    the CTMC graph used to amplify that (the posterior's float32 normalisation error, put on the
    current token) into different draws. Now the step moves by about 1e-9 and the draws agree."""
    reference = _tweedie_sample(tauldr, 6)
    assert torch.equal(_tweedie_sample(tauldr, 1), reference)
    assert torch.equal(_tweedie_sample(tauldr, 4, threads=2), reference)


@torch.no_grad()
def test_ctmc_tweedie_step_is_insensitive_to_float32_posterior_rounding(tauldr):
    from lsd.diffusion.scores import posterior_of

    bb = tauldr
    model, graph, gen = bb.model, bb.graph, torch.Generator().manual_seed(0)
    x = torch.randint(0, graph.num_tokens, (4, 64), generator=gen)
    for t in (0.9, 0.5, 0.2):
        sb = bb.noise.total(torch.tensor([t, t - 0.125], dtype=torch.float64))
        sigma, delta = sb[0].expand(4), (sb[0] - sb[1]).expand(4)
        log_p = posterior_of(model(x, sigma)).double()
        probs = []
        for lp in (log_p, log_p + 1e-7 * torch.randn(log_p.shape, generator=gen, dtype=torch.float64)):
            move, stay = graph.tweedie(x, model.score_from_posterior(lp, x, sigma).exp(), delta)
            p = move.clamp_min(0).scatter(-1, x[..., None], stay.clamp_min(0)[..., None])
            probs.append(p / p.sum(-1, keepdim=True))
        tv = 0.5 * (probs[0] - probs[1]).abs().sum(-1)
        assert float(tv.max()) < 1e-6, (t, float(tv.max()))  # was ~1e-2 before the float64 normalisation


def _cells(config_path):
    config = yaml.safe_load(Path(config_path).read_text())
    for backbone in config["backbones"]:
        settings = config["backbone_settings"][backbone]
        for sampler in config["samplers"]:
            for nfe in config["nfe"]:
                for seed in config["seeds"]:
                    yield backbone, sampler, nfe, seed, settings


def regenerate(records_dir: Path, work_dir: Path) -> None:
    """Every cell of workflow/configs/repro.yaml through `lsd schedule`, `lsd sample` and `lsd evaluate`."""
    default = yaml.safe_load((ROOT / "config.yaml").read_text())
    definitions = default["sampler_definitions"]
    repro = yaml.safe_load((ROOT / "workflow" / "configs" / "repro.yaml").read_text())
    coupling = repro.get("sample_coupling", default["sample_coupling"])  # as the workflow samples them
    for backbone, sampler, nfe, seed, settings in _cells(ROOT / "workflow" / "configs" / "repro.yaml"):
        assert definitions[sampler]["method"] == "uniform", sampler  # no distillation in this check
        cell = f"{backbone}/{sampler}/nfe{nfe}/seed{seed}"
        schedule, samples = work_dir / cell / "schedule.json", work_dir / cell / "samples.safetensors"
        schedule.parent.mkdir(parents=True, exist_ok=True)
        import lsd

        lsd.Schedule.uniform(definitions[sampler]["base"], nfe, sampler=sampler, backbone=backbone).save(schedule)
        assert main(["--threads", "1", "sample", "--backbone", backbone, "--schedule", str(schedule), "--seed",
                     str(seed), "--num-samples", str(settings["num_samples"]), "--batch-size",
                     str(settings["batch_size"]), "--coupling", coupling, "--quiet", "--out", str(samples)]) == 0
        assert main(["--threads", "1", "evaluate", "--backbone", backbone, "--samples", str(samples), "--metrics",
                     *settings["metrics"], "--seed", str(seed), "--out", str(records_dir / f"{cell}.json")]) == 0


def test_repro_cells_reproduce_the_committed_records(tmp_path, monkeypatch):
    """Same machine kind, one thread: every cell's samples hash and metrics are bit-identical to the
    committed ones (docs/reproducibility.md)."""
    monkeypatch.chdir(tmp_path)  # relative paths: the records name no folder of this machine
    regenerate(Path("records"), Path("work"))
    if os.environ.get("LSD_UPDATE_REPRO"):
        shutil.rmtree(EXPECTED, ignore_errors=True)
        shutil.copytree(tmp_path / "records", EXPECTED)
        pytest.skip(f"rewrote the expected records under {EXPECTED}")
    rows = compare(tmp_path / "records", EXPECTED)
    expected_cells = len(list(_cells(ROOT / "workflow" / "configs" / "repro.yaml")))
    assert len(rows) == expected_cells and any(r["backbone"] == "tiny-tauldr-digits" and r["sampler"] == "tweedie"
                                               for r in rows)
    changed = [f"{r['backbone']} {r['sampler']}: {r['status']} ({r['detail']})" for r in rows
               if r["status"] != "identical"]
    assert not changed, "\n".join(changed)
    frechet = json.loads((EXPECTED / "tiny-tauldr-digits" / "tweedie" / "nfe8" / "seed0.json").read_text())
    assert frechet["extra"]["frechet_digits_fit"]["well_conditioned"]
