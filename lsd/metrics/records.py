"""Result records: one JSON file per (backbone, sampler, NFE, seed, metric set).

A record (schema 'lsd-result/1'):
{
  "schema": "lsd-result/1",
  "backbone": str, "sampler": str, "nfe": int, "seed": int, "metric_set": str,
  "task": str | null,
  "metrics": {name: {"value": float, "interval": {low, high, confidence, method, ...} | null}},
  "num_samples": int, "nfe_spent": int | null, "wall_time_s": float | null,
  "config_hash": str | null, "config": dict | null,
  "device": str | null, "dtype": str | null,
  "provenance": lsd.io.provenance(),   # lsd version, git hash and git_dirty, torch/numpy/python versions, platform
  "extra": dict                        # free-form details (e.g. the evaluator's name and revision)
}
`load_records(folder)` reads every *.json below `folder` into a tidy DataFrame, one row per
metric value (its `git` column: the hash, "+dirty" when the record ran from a modified tree;
`samples_sha256` from `extra`, the hash of the evaluated samples; `well_conditioned` from
`extra.<metric>_fit`, the Frechet fit's flag, else empty); with `per_sample=True` a column
`per_sample` holds the metric's per-sample values from `extra.per_sample` (or None); a
malformed file raises `RecordError` with a one-line message naming it.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

SCHEMA = "lsd-result/1"
KEYS = ("backbone", "sampler", "nfe", "seed", "metric_set")
COLUMNS = ["backbone", "sampler", "nfe", "seed", "metric_set", "task", "metric", "value", "low", "high",
           "confidence", "interval_method", "num_samples", "nfe_spent", "wall_time_s", "config_hash", "git",
           "device", "dtype", "samples_sha256", "well_conditioned", "file"]


class RecordError(ValueError):
    """A result record is malformed."""


def config_hash(config) -> str:
    """sha256 (16 hex chars) of the config as canonical JSON (sorted keys, no whitespace)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _number(x, what: str):
    if x is None:
        return None
    if isinstance(x, bool):
        raise RecordError(f"record: {what} must be a number, got {x!r}")
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise RecordError(f"record: {what} must be a number, got {x!r}") from None
    return v


def _interval(iv) -> dict | None:
    if iv is None:
        return None
    if hasattr(iv, "to_dict"):
        iv = iv.to_dict()
    if isinstance(iv, (tuple, list)) and len(iv) == 2:
        iv = {"low": iv[0], "high": iv[1]}
    if not isinstance(iv, dict) or "low" not in iv or "high" not in iv:
        raise RecordError(f"record: an interval must be an Interval, a (low, high) pair or a dict with low/high, "
                          f"got {iv!r}")
    out = {k: v for k, v in iv.items() if k != "estimate"}
    out["low"], out["high"] = _json_float(_number(iv["low"], "interval low")), _json_float(
        _number(iv["high"], "interval high"))
    return out


def _json_float(v):
    """JSON has no NaN: store non-finite numbers as null."""
    return None if v is None or not math.isfinite(v) else v


def make_record(*, backbone: str, sampler: str, nfe: int, seed: int, metric_set: str, metrics: dict,
                num_samples: int, nfe_spent: int | None = None, wall_time_s: float | None = None,
                config: dict | None = None, config_hash_value: str | None = None, device=None, dtype=None,
                task: str | None = None, intervals: dict | None = None, extra: dict | None = None) -> dict:
    """Build a record. `metrics` maps a name to a value, or to {'value': v, 'interval': iv};
    `intervals` (optional) maps names to intervals (an `Interval`, a (low, high) pair or a dict)."""
    for key, val in (("backbone", backbone), ("sampler", sampler), ("metric_set", metric_set)):
        if not isinstance(val, str) or not val:
            raise RecordError(f"record: {key} must be a non-empty string, got {val!r}")
    for key, val in (("nfe", nfe), ("seed", seed), ("num_samples", num_samples)):
        if not isinstance(val, int) or isinstance(val, bool) or val < 0:
            raise RecordError(f"record: {key} must be an integer >= 0, got {val!r}")
    if not isinstance(metrics, dict) or not metrics:
        raise RecordError("record: metrics must be a non-empty dict {name: value}")
    intervals = dict(intervals or {})
    out_metrics = {}
    for name, m in metrics.items():
        if isinstance(m, dict):
            value, iv = m.get("value"), m.get("interval", intervals.get(name))
        else:
            value, iv = m, intervals.get(name)
        out_metrics[str(name)] = {"value": _json_float(_number(value, f"metric {name!r}")), "interval": _interval(iv)}
    if config_hash_value is None and config is not None:
        config_hash_value = config_hash(config)
    from ..io import provenance

    return {
        "schema": SCHEMA,
        "backbone": backbone, "sampler": sampler, "nfe": nfe, "seed": seed, "metric_set": metric_set,
        "task": task,
        "metrics": out_metrics,
        "num_samples": num_samples,
        "nfe_spent": None if nfe_spent is None else int(nfe_spent),
        "wall_time_s": None if wall_time_s is None else float(wall_time_s),
        "config_hash": config_hash_value,
        "config": config,
        "device": None if device is None else str(device),
        "dtype": None if dtype is None else str(dtype).replace("torch.", ""),
        "provenance": provenance(),
        "extra": dict(extra or {}),
    }


def record_filename(record: dict) -> str:
    """'<backbone>__<sampler>__nfe<N>__seed<S>__<metric_set>.json' with unsafe characters replaced by '-'."""
    def safe(s) -> str:
        return re.sub(r"[^A-Za-z0-9._+-]", "-", str(s))

    return (f"{safe(record['backbone'])}__{safe(record['sampler'])}__nfe{record['nfe']}__seed{record['seed']}"
            f"__{safe(record['metric_set'])}.json")


def write_record(path, record: dict) -> Path:
    """Write `record` atomically; `path` is a file, or a folder (then the file is named by `record_filename`)."""
    from ..io import atomic_write_json

    path = Path(path)
    if path.is_dir() or path.suffix != ".json":
        path = path / record_filename(record)
    _validate(record, str(path))
    atomic_write_json(path, record)
    return path


def _validate(rec, where: str) -> None:
    def fail(msg: str):
        raise RecordError(f"{where}: malformed result record: {msg}")

    if not isinstance(rec, dict):
        fail(f"expected a JSON object, got {type(rec).__name__}")
    if rec.get("schema") != SCHEMA:
        fail(f"schema is {rec.get('schema')!r}, expected {SCHEMA!r}")
    for key in KEYS + ("metrics", "num_samples"):
        if key not in rec:
            fail(f"missing key {key!r}")
    for key in ("nfe", "seed", "num_samples"):
        if not isinstance(rec[key], int) or isinstance(rec[key], bool):
            fail(f"{key} must be an integer, got {rec[key]!r}")
    if not isinstance(rec["metrics"], dict) or not rec["metrics"]:
        fail("metrics must be a non-empty object")
    for name, m in rec["metrics"].items():
        if not isinstance(m, dict) or "value" not in m:
            fail(f"metric {name!r} must be an object with a 'value'")
        if m["value"] is not None and (isinstance(m["value"], bool) or not isinstance(m["value"], (int, float))):
            fail(f"metric {name!r} has a non-numeric value {m['value']!r}")
        iv = m.get("interval")
        if iv is not None and (not isinstance(iv, dict) or "low" not in iv or "high" not in iv):
            fail(f"metric {name!r} has an interval without low/high")


def _code_version(prov) -> str | None:
    """The record's git hash, with "+dirty" when it ran from a modified tree (`lsd.io.git_dirty`)."""
    if not isinstance(prov, dict) or not prov.get("git"):
        return None
    return prov["git"] + ("+dirty" if prov.get("git_dirty") else "")


def load_records(folder, per_sample: bool = False):
    """Every record (*.json, recursively) under `folder` as a tidy pandas DataFrame, one row per metric."""
    import pandas as pd

    folder = Path(folder)
    if not folder.is_dir():
        raise RecordError(f"{folder}: no such folder of result records")
    rows = []
    for path in sorted(folder.rglob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise RecordError(f"{path}: malformed result record: not valid JSON ({str(err).splitlines()[0]})") from None
        _validate(rec, str(path))
        prov = rec.get("provenance") or {}
        extra = rec.get("extra") if isinstance(rec.get("extra"), dict) else {}
        samples = extra.get("per_sample") if isinstance(extra.get("per_sample"), dict) else {}
        for name, m in rec["metrics"].items():
            iv = m.get("interval") or {}
            fit = extra.get(f"{name}_fit")
            row = {
                "backbone": rec["backbone"], "sampler": rec["sampler"], "nfe": rec["nfe"], "seed": rec["seed"],
                "metric_set": rec["metric_set"], "task": rec.get("task"), "metric": name,
                "value": math.nan if m["value"] is None else float(m["value"]),
                "low": math.nan if iv.get("low") is None else float(iv["low"]),
                "high": math.nan if iv.get("high") is None else float(iv["high"]),
                "confidence": iv.get("confidence"), "interval_method": iv.get("method"),
                "num_samples": rec["num_samples"], "nfe_spent": rec.get("nfe_spent"),
                "wall_time_s": rec.get("wall_time_s"), "config_hash": rec.get("config_hash"),
                "git": _code_version(prov),
                "device": rec.get("device"), "dtype": rec.get("dtype"),
                "samples_sha256": extra.get("samples_sha256"),
                "well_conditioned": fit.get("well_conditioned") if isinstance(fit, dict) else None,
                "file": str(path),
            }
            if per_sample:
                values = samples.get(name)
                if values is not None and (not isinstance(values, list) or len(values) != rec["num_samples"]
                                           or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                      for v in values)):
                    raise RecordError(f"{path}: malformed result record: extra.per_sample.{name} must be a list of "
                                      f"{rec['num_samples']} numbers")
                row["per_sample"] = values
            rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS + (["per_sample"] if per_sample else []))
