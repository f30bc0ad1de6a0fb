"""Small tables of one record, for notebooks and the command line (values rounded for reading)."""

from __future__ import annotations

import pandas as pd

from msl.targets import UNITS

SIGNIFICANT = 4


def _round(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT}g}")


def summary(record: dict) -> pd.DataFrame:
    """Validation and test metrics of one record, one row per quantity, with units."""
    rows = []
    for quantity, unit in [("loss", "1")] + [(f"{t}_mae", u) for t, u in UNITS.items()]:
        values = {split: record["metrics"].get(f"{split}/{quantity}") for split in ("val", "test")}
        if any(v is not None for v in values.values()):
            rows.append({"quantity": quantity, "unit": unit,
                         **{k: _round(v) for k, v in values.items() if v is not None}})
    header = (f"{record['cell_id']}: status {record['status']}, N = {record.get('n_params')} "
              f"parameters, D = {record['n_train']} structures, {record.get('steps')} steps")
    return pd.DataFrame(rows).set_index("quantity").rename_axis(header, axis=1)


def timing(record: dict) -> pd.DataFrame:
    """Cost of one record: FLOPs, wall time and throughput (these vary from machine to machine)."""
    return pd.DataFrame([{
        "training FLOPs C": f"{record.get('flops', 0):.3g}",
        "train time (s)": round(record.get("train_seconds", 0), 1),
        "wall time (s)": round(record.get("wall_seconds", 0), 1),
        "structures/s": round(record.get("structures_per_second", 0), 1),
        "converged": record.get("converged"),
    }])
