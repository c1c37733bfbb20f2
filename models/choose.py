"""Choose model v2's ensemble on the selection set, then report it once on val against the shipped model.

    python3 -m models.choose [--tta] [--out models/campaign/choice.json]

Candidates are the non-empty subsets of the campaign's finished members (``models/campaign/members/
<name>.pt``: float16 weights with the selection-set and val logits they were chosen with) under both
ensemble rules, each with its ensemble temperature fitted on the selection set. The chosen candidate
has the highest selection accuracy + QWK (a tie goes to fewer members). Only the chosen one is scored
on val, once, with 95 % bootstrap intervals, and against the shipped ensemble (``models/dist``, run here
with onnxruntime on the same val knees) as a **paired** difference: the interval of (v2 − shipped)
over 2,000 resamples of the knees says whether v2 is better beyond chance — the condition for shipping.

``--tta`` recomputes each member's logits as the mean over the crop and its mirror image (horizontal
flip test-time augmentation) and keeps it only where it raises that member's selection score.
"""
import argparse
import itertools
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from .data import load_folder, to_input
from .metrics import (LOG_MEAN, MEAN, bootstrap_intervals, ensemble_probabilities, fit_ensemble_temperature,
                      fit_temperature, qwk, report, softmax)

REPO_ROOT = Path(__file__).resolve().parent.parent
CAMPAIGN = REPO_ROOT / "models" / "campaign"
RULES = (MEAN, LOG_MEAN)


def score(probs: np.ndarray, y: np.ndarray) -> Dict[str, float]:
    pred = probs.argmax(1)
    return {"accuracy": float((pred == y).mean()), "qwk": float(qwk(y, pred))}


def candidates(members: Dict[str, dict], y_sel: np.ndarray) -> List[dict]:
    """Every subset of ``members`` under every rule, scored on the selection set."""
    names = sorted(members)
    out = []
    for k in range(1, len(names) + 1):
        for subset in itertools.combinations(names, k):
            probs = [softmax(members[n]["selection_logits"], members[n]["temperature"]) for n in subset]
            for rule in RULES if k > 1 else (MEAN,):
                t = fit_ensemble_temperature(probs, y_sel, rule)
                s = score(ensemble_probabilities(probs, t, rule), y_sel)
                out.append({"members": list(subset), "rule": rule, "temperature": round(float(t), 4), "selection": s})
    return out


def choose(cands: Sequence[dict]) -> dict:
    """The candidate with the highest selection accuracy + QWK; ties go to fewer members."""
    return max(cands, key=lambda c: (round(c["selection"]["accuracy"] + c["selection"]["qwk"], 6),
                                     -len(c["members"])))


def paired_difference(y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, resamples: int = 2000,
                      seed: int = 0, level: float = 0.95) -> Dict[str, object]:
    """Accuracy and QWK of a minus b on the same cases, and their percentile intervals over paired
    bootstrap resamples (the same resampled cases for both)."""
    rng = np.random.default_rng(seed)
    n, d_acc, d_qwk = len(y), [], []
    for _ in range(resamples):
        i = rng.integers(0, n, n)
        d_acc.append((pred_a[i] == y[i]).mean() - (pred_b[i] == y[i]).mean())
        d_qwk.append(qwk(y[i], pred_a[i]) - qwk(y[i], pred_b[i]))
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    return {"level": level, "resamples": resamples, "seed": seed,
            "accuracy": float((pred_a == y).mean() - (pred_b == y).mean()),
            "accuracy_interval": [float(v) for v in np.percentile(d_acc, q)],
            "qwk": float(qwk(y, pred_a) - qwk(y, pred_b)),
            "qwk_interval": [float(v) for v in np.percentile(d_qwk, q)]}


def load_members(campaign: dict) -> Dict[str, dict]:
    members = {}
    for m in campaign["members"]:
        if m["status"] != "done":
            continue
        kept = torch.load(REPO_ROOT / m["weights"], map_location="cpu", weights_only=False)
        members[m["name"]] = {"temperature": float(kept["temperature"]), "config": kept["config"],
                              "state_dict": kept["state_dict"],
                              "selection_logits": np.asarray(kept["selection_logits"], np.float32),
                              "val_logits": np.asarray(kept["val_logits"], np.float32)}
    return members


def selection_and_val(config: dict):
    """uint8 crops and grades of the selection set (in the order the members' logits were kept) and of val."""
    from .train import _load_named  # the same loader (and order) training used
    from .selection import read_selection, split_by_names
    x, y, names = _load_named(config, "train")
    _, (sx, sy) = split_by_names(x, y, names, read_selection(REPO_ROOT / config["selection_list"]))
    vx, vy, _ = load_folder(REPO_ROOT / config["val_dir"], 224)
    return (sx, sy), (vx, vy)


@torch.no_grad()
def flip_logits(member: dict, x8: np.ndarray) -> np.ndarray:
    """Mean logits of the crops and their mirror images."""
    from .pim import build_model
    model = build_model(member["config"])
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in member["state_dict"].items()})
    model.eval()
    out = []
    for i in range(0, len(x8), 64):
        xb = to_input(torch.from_numpy(x8[i:i + 64]), member["config"]["input_size"])
        out.append(((model(xb)["logits"] + model(torch.flip(xb, dims=[-1]))["logits"]) / 2).numpy())
    return np.concatenate(out)


def apply_tta(members: Dict[str, dict], sel, val) -> Dict[str, dict]:
    """Per member: flip TTA where it raises the selection accuracy + QWK (temperature refitted)."""
    decisions = {}
    for name, m in members.items():
        plain = score(softmax(m["selection_logits"], m["temperature"]), sel[1])
        sl, vl = flip_logits(m, sel[0]), flip_logits(m, val[0])
        t = fit_temperature(sl, sel[1])
        flipped = score(softmax(sl, t), sel[1])
        adopt = flipped["accuracy"] + flipped["qwk"] > plain["accuracy"] + plain["qwk"]
        decisions[name] = {"plain": plain, "flip": flipped, "adopted": bool(adopt)}
        if adopt:
            m.update({"selection_logits": sl, "val_logits": vl, "temperature": float(t)})
    return decisions


def shipped_val(dist: Path, vx: np.ndarray) -> np.ndarray:
    """The shipped ensemble's probabilities on val (onnxruntime), as `kneegrade evaluate` computes them."""
    from .evaluate import _members_onnx
    from .metrics import manifest_rule
    members, man = _members_onnx(dist)
    probs = [softmax(m["logits_fn"](to_input(torch.from_numpy(vx), m["size"]).numpy()), m["temperature"])
             for m in members]
    return ensemble_probabilities(probs, float((man.get("ensemble") or {}).get("temperature", 1.0)),
                                  manifest_rule(man))


def main(argv: Optional[list] = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tta", action="store_true", help="try flip test-time augmentation per member")
    ap.add_argument("--dist", default=str(REPO_ROOT / "models" / "dist"), help="the shipped model to compare with")
    ap.add_argument("--out", default=str(CAMPAIGN / "choice.json"))
    a = ap.parse_args(argv)
    campaign = json.loads((CAMPAIGN / "campaign.json").read_text())
    members = load_members(campaign)
    if not members:
        raise SystemExit("choose: no finished member in the campaign yet")
    config = next(iter(members.values()))["config"]
    sel, val = selection_and_val(config)
    tta = apply_tta(members, sel, val) if a.tta else None
    cands = candidates(members, sel[1])
    best = choose(cands)
    probs = [softmax(members[n]["val_logits"], members[n]["temperature"]) for n in best["members"]]
    p_v2 = ensemble_probabilities(probs, best["temperature"], best["rule"])
    p_old = shipped_val(Path(a.dist), val[0])
    r_v2, r_old = report(p_v2, val[1]), report(p_old, val[1])
    doc = {"chosen_on": "selection", "selection_n": int(len(sel[1])), "val_n": int(len(val[1])),
           "tta": tta, "candidates": sorted(cands, key=lambda c: -(c["selection"]["accuracy"] + c["selection"]["qwk"])),
           "chosen": best,
           "val_once": {"accuracy": r_v2["accuracy"], "qwk": r_v2["qwk"], "per_grade": r_v2["per_grade_accuracy"],
                        "confusion": r_v2["confusion"], "interval": bootstrap_intervals(val[1], p_v2.argmax(1))},
           "shipped_val": {"accuracy": r_old["accuracy"], "qwk": r_old["qwk"], "per_grade": r_old["per_grade_accuracy"]},
           "paired_v2_minus_shipped": paired_difference(val[1], p_v2.argmax(1), p_old.argmax(1))}
    Path(a.out).write_text(json.dumps(doc, indent=2, default=float) + "\n")
    d = doc["paired_v2_minus_shipped"]
    print(f"chosen on selection: {'+'.join(best['members'])} ({best['rule']}, t={best['temperature']}): "
          f"selection {best['selection']['accuracy']:.3f} / {best['selection']['qwk']:.3f}")
    print(f"val once: {r_v2['accuracy']:.3f} / {r_v2['qwk']:.3f}; shipped {r_old['accuracy']:.3f} / {r_old['qwk']:.3f}; "
          f"paired difference accuracy {d['accuracy']:+.3f} [{d['accuracy_interval'][0]:+.3f}, "
          f"{d['accuracy_interval'][1]:+.3f}], QWK {d['qwk']:+.3f} [{d['qwk_interval'][0]:+.3f}, {d['qwk_interval'][1]:+.3f}]")
    return doc


if __name__ == "__main__":
    main()
