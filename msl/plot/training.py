"""Plots of single runs: the loss curve of a record."""

from __future__ import annotations

import matplotlib.pyplot as plt


def loss_curve(record: dict, ax=None):
    """Training and validation loss (dimensionless, log scale) against epoch for one record."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2), layout="constrained")
    history = record.get("history") or []
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train/loss"] for h in history], label="train", color="0.55")
    ax.plot(epochs, [h["val/loss"] for h in history], label="validation", color="C0")
    if record.get("best_epoch"):
        ax.axvline(record["best_epoch"], color="C3", lw=0.8, ls=":", label="best validation")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (normalised MSE)")
    ax.set_title(f"{record['model']} size {record['size']}, D = {record['n_train']}", fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    return ax
