"""Did a rerun reproduce the committed results? `lsd reproduce --records RERUN --against COMMITTED`.

Every samples file written by `lsd sample` records `samples_sha256` (`samples_sha256`: sha256 of
the token tensor's dtype, shape and bytes) and every result record of `lsd evaluate` carries it
in its `extra`. This module pairs the records of two folders by cell (backbone, sampler, NFE,
seed, metric set) and says, per cell:
- identical: the same samples hash (when both records have one) and every metric value and
  interval bound bit for bit equal;
- equal within tolerance: every metric value and bound within the relative tolerance `rtol`
  (default `RTOL` = 1e-9: the rounding of a metric's own arithmetic on another machine or
  library version; the samples may differ, which the detail says);
- changed: anything else, with the largest relative change and the metric it is in (and
  whether the samples differ);
- missing / new: a committed cell that the rerun lacks, a rerun cell that is not committed.
The command prints one row per cell and exits with status 1 when a cell changed (or nothing
could be compared). docs/reproducibility.md says which cells are promised to be identical.
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path

RTOL = 1e-9
KEYS = ("backbone", "sampler", "nfe", "seed", "metric_set")
STATUSES = ("identical", "equal within tolerance", "changed", "missing", "new")


def samples_sha256(tokens) -> str:
    """sha256 of a token tensor: its dtype, shape and bytes (C order), e.g. to record beside samples."""
    import torch

    t = torch.as_tensor(tokens).detach().contiguous().cpu()
    h = hashlib.sha256(f"{str(t.dtype).replace('torch.', '')}|{list(t.shape)}|".encode())
    h.update(t.numpy().tobytes())
    return h.hexdigest()


def load_cells(folder) -> dict:
    """{cell key: record} of every lsd-result/1 JSON file below `folder` (or the file itself)."""
    from .metrics.records import SCHEMA

    root = Path(folder)
    if not root.exists():
        raise FileNotFoundError(f"reproduce: {root} not found")
    files = [root] if root.is_file() else sorted(root.rglob("*.json"))
    cells = {}
    for path in files:
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"reproduce: {path} is not readable JSON ({err})") from None
        if not isinstance(record, dict) or record.get("schema") != SCHEMA:
            continue  # samples metadata and other JSON files beside the records
        key = tuple(record.get(k) for k in KEYS)
        if key in cells:
            raise ValueError(f"reproduce: {path} repeats the cell {key} of another record below {root}")
        cells[key] = record
    return cells


def _numbers(record: dict) -> dict:
    """{(metric, field): value} of a record's metric values and interval bounds."""
    out = {}
    for name, metric in (record.get("metrics") or {}).items():
        out[(name, "value")] = metric.get("value")
        for bound in ("low", "high"):
            if metric.get("interval"):
                out[(name, bound)] = metric["interval"].get(bound)
    return out


def _relative_change(new, old) -> float:
    if new is None or old is None:
        return 0.0 if new is old else math.inf
    if new == old:
        return 0.0
    return abs(new - old) / max(abs(old), abs(new))


def compare_cell(new: dict, old: dict, rtol: float = RTOL) -> tuple[str, str]:
    """(status, detail) of a rerun record `new` against the committed record `old`."""
    hash_new = (new.get("extra") or {}).get("samples_sha256")
    hash_old = (old.get("extra") or {}).get("samples_sha256")
    if hash_new and hash_old:
        same_samples = hash_new == hash_old
        samples = "same samples" if same_samples else "samples differ"
    else:  # records made before samples were hashed: the metrics alone decide
        same_samples = True
        samples = ("no samples hash" if not (hash_new or hash_old) else
                   f"no samples hash in the {'committed' if hash_new else 'rerun'} record")
    a, b = _numbers(new), _numbers(old)
    if set(a) != set(b):
        lacking = sorted({k[0] for k in set(a) ^ set(b)})
        return "changed", f"metrics {lacking} present in only one record; {samples}"
    changes = {k: _relative_change(a[k], b[k]) for k in b}
    worst = max(changes, key=changes.get, default=None)
    if same_samples and all(v == 0.0 for v in changes.values()):
        return "identical", samples
    if worst is None or changes[worst] <= rtol:
        size = f"largest relative change {changes[worst]:.2g} ({worst[0]} {worst[1]})" if worst else ""
        return "equal within tolerance", f"{size}; {samples}".lstrip("; ")
    field = "" if worst[1] == "value" else f" {worst[1]}"
    return "changed", (f"{worst[0]}{field} {b[worst]!r} -> {a[worst]!r} (relative change {changes[worst]:.3g}); "
                       f"{samples}")


def compare(records, against, rtol: float = RTOL) -> list[dict]:
    """One row {backbone, sampler, nfe, seed, metric_set, status, detail} per cell of either folder."""
    new, old = load_cells(records), load_cells(against)
    rows = []
    for key in sorted(set(new) | set(old), key=lambda k: tuple(str(v) for v in k)):
        if key not in new:
            status, detail = "missing", "committed, not in the rerun"
        elif key not in old:
            status, detail = "new", "in the rerun, not committed"
        else:
            status, detail = compare_cell(new[key], old[key], rtol)
        rows.append({**dict(zip(KEYS, key)), "status": status, "detail": detail})
    return rows


def format_table(rows: list[dict]) -> str:
    head = ["backbone", "sampler", "nfe", "seed", "metric_set", "status", "detail"]
    cells = [[str(r[h]) for h in head] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(head)]
    widths[-1] = 0  # the detail runs to the end of the line
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no cells")
    return "\n".join(lines)


def configure_parser(parser) -> None:
    parser.add_argument("--records", required=True, help="folder (or file) of the rerun's result records")
    parser.add_argument("--against", required=True, help="folder (or file) of the committed result records")
    parser.add_argument("--rtol", type=float, default=RTOL,
                        help=f"relative tolerance of 'equal within tolerance' (default {RTOL:g})")
    parser.add_argument("--allow-missing", action="store_true",
                        help="committed cells the rerun lacks are not an error (a partial rerun)")


def run(args) -> None:
    if not (args.rtol >= 0.0):
        raise ValueError(f"--rtol: need a tolerance >= 0, got {args.rtol}")
    rows = compare(args.records, args.against, args.rtol)
    print(format_table(rows))
    bad = [r for r in rows if r["status"] == "changed" or (r["status"] == "missing" and not args.allow_missing)]
    compared = [r for r in rows if r["status"] not in ("missing", "new")]
    if bad or not compared:
        sys.exit(1)
