"""The model card's measured tables, from a shipped model and its evaluation.

``python3 -m models.card --models models/dist --eval models/runs/cpu/eval/eval.json``

Prints Markdown: the members (backbone, best epoch / epochs run, training seconds, temperature,
size, parity; the ensemble's rule and temperature), results on val per member and for the ensemble (accuracy, QWK, MAE, ECE, per-grade
accuracy), the ensemble's confusion matrix and the calibration table (ECE before and after the
temperatures). Every number comes from ``manifest.json`` and ``models.evaluate``'s ``eval.json``,
so the card says what was measured, nothing else.
"""
import argparse
import json
from pathlib import Path
from typing import List


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(head: List[str], rows: List[list]) -> str:
    return "\n".join([_row(head), _row(["---"] * len(head)), *(_row(r) for r in rows)])


def members_table(man: dict) -> str:
    rows = []
    for m in man["members"]:
        t = m.get("training", {})
        parity = (m.get("parity") or {}).get("max_abs_diff")
        rows.append([m["name"], m["backbone"], f"{t.get('best_epoch', '?')} / {t.get('epochs_run', '?')}",
                     f"{t.get('train_seconds', 0):.0f}", f"{m['temperature']:.3f}", f"{m['bytes'] / 2**20:.1f} MiB",
                     "-" if parity is None else f"{parity:.1e}"])
    total = sum(m["bytes"] for m in man["members"])
    secs = sum(m.get("training", {}).get("train_seconds", 0) for m in man["members"])
    t_ens = man.get("ensemble", {}).get("temperature", 1.0)
    rule = man.get("ensemble", {}).get("rule", "?")
    rows.append(["**ensemble**", f"rule `{rule}`", "", f"{secs:.0f}", f"{t_ens:.3f} (ensemble)", f"**{total / 2**20:.1f} MiB**", ""])
    return _table(["member", "backbone", "best epoch / epochs run", "training s", "temperature",
                   "ONNX (float16 storage)", "parity vs PyTorch (max abs)"], rows)


def results_table(ev: dict) -> str:
    rows = []
    for name, r in ev["results"].items():
        label = "**ensemble**" if name == "ensemble" else name
        rows.append([label, f"{r['accuracy']:.3f}", f"{r['qwk']:.3f}", f"{r['mae']:.3f}", f"{r['ece']:.3f}",
                     *("-" if v is None else f"{v:.2f}" for v in r["per_grade_accuracy"])])
    return _table(["model", "accuracy", "QWK", "MAE", "ECE", "KL0", "KL1", "KL2", "KL3", "KL4"], rows)


def confusion_table(ev: dict) -> str:
    cm = ev["results"]["ensemble"]["confusion"]
    return _table(["true \\ predicted", *(f"KL{g}" for g in range(5))],
                  [[f"KL{g}", *row] for g, row in enumerate(cm)])


def calibration_table(man: dict) -> str:
    cal = man.get("calibration_val") or {}
    rows = []
    for name, c in cal.items():
        after = f"{c['ece_fitted']:.3f}"
        if name == "ensemble" and "ece_ensemble_temperature" in c:
            after += f" (members' T); {c['ece_ensemble_temperature']:.3f} (+ ensemble T {c['temperature']:.3f})"
        rows.append([name, f"{c['ece_T1']:.3f}", after])
    return _table(["model", "ECE, T = 1", "ECE, fitted T"], rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="models/dist")
    ap.add_argument("--eval", required=True, help="eval.json written by models.evaluate (or cpu_run)")
    a = ap.parse_args(argv)
    man = json.loads((Path(a.models) / "manifest.json").read_text())
    ev = json.loads(Path(a.eval).read_text())
    print(members_table(man), "", results_table(ev), "", "Confusion matrix of the ensemble (rows: true KL, "
          "columns: predicted):", "", confusion_table(ev), "", calibration_table(man), sep="\n")


if __name__ == "__main__":
    main()
