"""Evaluate members and the ensemble on a folder laid out ``<dir>/<grade>/*.png``.

``python3 -m models.evaluate --data ../shared/data/knee-kl/val --models models/out/export``
``--models`` is either an export folder (manifest.json + ONNX files, run with onnxruntime or
onnxruntime-node) or a training run folder (``*.pt`` checkpoints, run with PyTorch). Writes
``<out>/eval.json``, ``<out>/confusion.png`` and ``<out>/reliability.png`` (reliability diagram): per-grade accuracy, accuracy, QWK, MAE,
confusion matrix and ECE (after each member's temperature) for every member and the ensemble, and
for the ensemble 95 % bootstrap intervals of accuracy, QWK and MAE (``interval``: 2,000 resamples
of the images, seed 0).
"""
import argparse
import json
from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np
import torch

from . import LABELS
from .data import load_folder, to_input
from .metrics import bootstrap_intervals, ensemble_probabilities, manifest_rule, report, softmax
from .onnx_io import available_runtime, run_onnx


def _members_onnx(models_dir: Path):
    man = json.loads((models_dir / "manifest.json").read_text())
    rt = available_runtime()
    if rt is None:
        raise RuntimeError("an export folder needs onnxruntime (Python) or onnxruntime-node; "
                           "pass the training run folder (*.pt) to evaluate with PyTorch instead")
    members = []
    for m in man["members"]:
        path = models_dir / m["file"]

        def fn(x, path=path):
            outs = []
            for i in range(0, len(x), 128):
                outs.append(run_onnx(path, x[i:i + 128], threads=2)["outputs"]["logits"])
            return np.concatenate(outs)
        members.append({"name": m["name"], "size": m["input"]["height"], "temperature": m["temperature"],
                        "logits_fn": fn, "backend": rt})
    return members, man


def _members_torch(models_dir: Path):
    from .train import load_checkpoint
    members = []
    for c in sorted(p for p in models_dir.glob("*.pt") if not p.name.endswith(".state.pt")):
        model, ckpt = load_checkpoint(c)

        def fn(x, model=model):
            with torch.no_grad():
                return np.concatenate([model(torch.from_numpy(x[i:i + 128]))["logits"].numpy()
                                       for i in range(0, len(x), 128)])
        members.append({"name": ckpt["config"]["name"], "size": model.input_size,
                        "temperature": ckpt["temperature"], "logits_fn": fn, "backend": "torch"})
    if not members:
        raise FileNotFoundError(f"{models_dir}: neither manifest.json nor *.pt checkpoints")
    return members, None


def draw_confusions(results: Dict[str, dict], path: Path, cell: int = 44):
    """One panel per model: counts, with row-normalised shading (white = 0, dark = whole row)."""
    names = list(results)
    k = len(LABELS)
    pw, ph = cell * k + 70, cell * k + 100
    img = np.full((ph, pw * len(names), 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for n, name in enumerate(names):
        cm = np.array(results[name]["confusion"], float)
        ox, oy = n * pw + 55, 50
        r = results[name]
        cv2.putText(img, f"{name}", (n * pw + 5, 16), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, f"acc {r['accuracy']:.3f} qwk {r['qwk']:.3f}", (n * pw + 5, 34), font, 0.4, (0, 0, 0), 1,
                    cv2.LINE_AA)
        for i in range(k):
            cv2.putText(img, str(i), (ox - 18, oy + i * cell + cell // 2 + 5), font, 0.45, (0, 0, 0), 1)
            cv2.putText(img, str(i), (ox + i * cell + cell // 2 - 5, oy + k * cell + 16), font, 0.45, (0, 0, 0), 1)
            rs = cm[i].sum()
            for j in range(k):
                f = cm[i, j] / rs if rs else 0.0
                col = tuple(int(255 - f * v) for v in (200, 120, 40))
                x0, y0 = ox + j * cell, oy + i * cell
                cv2.rectangle(img, (x0, y0), (x0 + cell, y0 + cell), col, -1)
                cv2.rectangle(img, (x0, y0), (x0 + cell, y0 + cell), (160, 160, 160), 1)
                txt = str(int(cm[i, j]))
                cv2.putText(img, txt, (x0 + 6, y0 + cell // 2 + 5), font, 0.42,
                            (255, 255, 255) if f > 0.55 else (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, "true (rows) / predicted (cols)", (n * pw + 5, ph - 6), font, 0.35, (80, 80, 80), 1)
    cv2.imwrite(str(path), img)


def reliability_bins(probs: np.ndarray, y: np.ndarray, bins: int = 10):
    """Per confidence bin (max probability): count, mean confidence, accuracy."""
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0, 1, bins + 1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        n = int(m.sum())
        out.append({"lo": float(lo), "hi": float(hi), "n": n,
                     "confidence": float(conf[m].mean()) if n else None,
                     "accuracy": float((pred[m] == y[m]).mean()) if n else None})
    return out


def draw_reliability(curves: Dict[str, dict], path: Path, size: int = 260):
    """Reliability diagram per model: accuracy per confidence bin (bars) against the diagonal;
    bar shading shows how many images fall in the bin. Title: accuracy and ECE."""
    names = list(curves)
    pad, top = 40, 46
    pw, ph = size + pad + 10, size + top + 34
    img = np.full((ph, pw * len(names), 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for n, name in enumerate(names):
        c = curves[name]
        ox, oy = n * pw + pad, top
        cv2.putText(img, name, (n * pw + 5, 16), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, f"acc {c['accuracy']:.3f} ECE {c['ece']:.3f}", (n * pw + 5, 34), font, 0.4,
                    (0, 0, 0), 1, cv2.LINE_AA)
        cv2.rectangle(img, (ox, oy), (ox + size, oy + size), (160, 160, 160), 1)
        total = max(1, sum(b["n"] for b in c["bins"]))
        for b in c["bins"]:
            if not b["n"]:
                continue
            x0, x1 = ox + int(b["lo"] * size), ox + int(b["hi"] * size)
            y0 = oy + size - int(b["accuracy"] * size)
            share = min(1.0, 4 * b["n"] / total)
            col = tuple(int(255 - share * v) for v in (120, 160, 60))
            cv2.rectangle(img, (x0 + 1, y0), (x1 - 1, oy + size), col, -1)
            cv2.rectangle(img, (x0 + 1, y0), (x1 - 1, oy + size), (90, 90, 90), 1)
        cv2.line(img, (ox, oy + size), (ox + size, oy), (0, 0, 200), 1, cv2.LINE_AA)
        for t in (0.0, 0.5, 1.0):
            cv2.putText(img, f"{t:.1f}", (ox + int(t * size) - 8, oy + size + 14), font, 0.35, (0, 0, 0), 1)
            cv2.putText(img, f"{t:.1f}", (ox - 26, oy + size - int(t * size) + 4), font, 0.35, (0, 0, 0), 1)
        cv2.putText(img, "confidence (x) / accuracy (y)", (n * pw + 5, ph - 6), font, 0.35, (80, 80, 80), 1)
    cv2.imwrite(str(path), img)


def evaluate(data_dir: Path, models_dir: Path, out_dir: Path, limit_per_grade=None) -> Dict[str, object]:
    models_dir = Path(models_dir)
    if (models_dir / "manifest.json").exists():
        members, man = _members_onnx(models_dir)
    else:
        members, man = _members_torch(models_dir)
    x8, y, _ = load_folder(Path(data_dir), 224, limit_per_grade)
    results, probs = {}, []
    for m in members:
        x = to_input(torch.from_numpy(x8), m["size"]).numpy()
        logits = m["logits_fn"](x)
        p = softmax(logits, m["temperature"])
        probs.append(p)
        results[m["name"]] = dict(report(p, y), temperature=m["temperature"], backend=m["backend"])
    t_ens = float(((man or {}).get("ensemble") or {}).get("temperature", 1.0))
    rule = manifest_rule(man)
    p_ens = ensemble_probabilities(probs, t_ens, rule)
    results["ensemble"] = dict(report(p_ens, y), rule=rule, temperature=t_ens,
                               interval=bootstrap_intervals(y, p_ens.argmax(1)))
    curves = {}
    for name, p in [*zip([m["name"] for m in members], probs), ("ensemble", p_ens)]:
        results[name]["reliability"] = reliability_bins(p, y)
        curves[name] = {"bins": results[name]["reliability"], "accuracy": results[name]["accuracy"],
                        "ece": results[name]["ece"]}
    doc = {"data": str(data_dir), "models": str(models_dir), "status": (man or {}).get("status"),
           "labels": LABELS, "results": results}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval.json").write_text(json.dumps(doc, indent=2))
    draw_confusions(results, out_dir / "confusion.png")
    draw_reliability(curves, out_dir / "reliability.png")
    return doc


def format_table(doc: Dict[str, object]) -> str:
    lines = ["| model | n | accuracy | QWK | MAE | ECE | per-grade accuracy KL0..4 |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in doc["results"].items():
        pg = " / ".join("-" if v is None else f"{v:.2f}" for v in r["per_grade_accuracy"])
        lines.append(f"| {name} | {r['n']} | {r['accuracy']:.3f} | {r['qwk']:.3f} | {r['mae']:.3f} | {r['ece']:.3f} | {pg} |")
    iv = doc["results"].get("ensemble", {}).get("interval")
    if iv:
        lines.append("")
        lines.append(f"ensemble, {iv['level']:.0%} bootstrap interval ({iv['resamples']} resamples of the images): "
                     + ", ".join(f"{k} {iv[k][0]:.3f}–{iv[k][1]:.3f}" for k in ("accuracy", "qwk", "mae")))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", required=True, help="folder laid out <dir>/<grade>/*.png")
    ap.add_argument("--models", required=True, help="export folder (manifest.json) or run folder (*.pt)")
    ap.add_argument("--out", default=None, help="output folder (default <models>/eval-<data folder name>)")
    ap.add_argument("--limit-per-grade", type=int, default=None)
    args = ap.parse_args(argv)
    out = Path(args.out) if args.out else Path(args.models) / f"eval-{Path(args.data).name}"
    doc = evaluate(Path(args.data), Path(args.models), out, args.limit_per_grade)
    print(format_table(doc))
    print(f"wrote {out / 'eval.json'}, {out / 'confusion.png'} and {out / 'reliability.png'}")


if __name__ == "__main__":
    main()
