"""Model v2 as a campaign: 224-px PIM members trained one at a time on one core, a training that
outlives any one machine.

The campaign's state lives in ``models/campaign/campaign.json`` (committed), so a run on any machine
knows where it stands: which member is next, which are done with what figures, and the hours spent. A
finished member is kept as ``models/campaign/members/<name>.pt`` (weights in float16, its
selection-set and val logits), because the training folder ``models/runs/`` does not outlive a
machine; a member whose training did not finish on its machine starts again (its budget,
``time_budget_s`` in the config, is sized to fit one machine's run on one core).

    python3 -m models.campaign status              # the table
    python3 -m models.campaign start [--core 1]    # train the next member, detached, niced, pinned
    python3 -m models.campaign record              # take finished members into the campaign

Members are chosen on the selection set (``selection_list``); val is reported once per member and
never tuned on. See models/README.md ("Model v2 campaign").
"""
import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

from .cpu_run import _cpu_name

REPO_ROOT = Path(__file__).resolve().parent.parent
STATE = REPO_ROOT / "models" / "campaign" / "campaign.json"
RUNS = REPO_ROOT / "models" / "runs" / "campaign"
KEPT = REPO_ROOT / "models" / "campaign" / "members"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def load(path: Path = STATE) -> dict:
    return json.loads(Path(path).read_text())


def save(state: dict, path: Path = STATE) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, path)


def new_state(config: str) -> dict:
    from .config import load_config
    cfg = load_config(REPO_ROOT / config)
    return {"config": config, "selection_list": cfg["selection_list"], "input_size": cfg["input_size"],
            "members": [{"name": m["name"], "status": "pending", "runs": []} for m in cfg["members"]]}


def next_member(state: dict) -> Optional[dict]:
    return next((m for m in state["members"] if m["status"] != "done"), None)


def member_seconds(m: dict) -> float:
    """Training seconds a member has had (cumulative: a resumed run carries the time before it)."""
    if m["status"] == "done":
        return float(m["runs"][-1].get("train_s", 0))
    return float(m.get("carried", {}).get("train_s", 0))


def hours(state: dict) -> float:
    return round(sum(member_seconds(m) for m in state["members"]) / 3600, 2)


def start(state: dict, core: int, dry_run: bool = False) -> str:
    """Launch the next member's training detached (setsid, nice 10, one core) and mark it."""
    m = next_member(state)
    if m is None:
        raise SystemExit("campaign: every member is done")
    RUNS.mkdir(parents=True, exist_ok=True)
    restored = restore(m["name"])
    log = RUNS / f"{m['name']}.out"
    cmd = (f"taskset -c {core} nice -n 10 {sys.executable} -m models.train --config {state['config']} "
           f"--member {m['name']} --out {RUNS.relative_to(REPO_ROOT)} --resume")
    if not dry_run:
        with open(log, "ab") as fh:
            subprocess.Popen(cmd.split(), cwd=REPO_ROOT, stdout=fh, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
    m["status"] = "training"
    m["runs"].append({"started": _now(), "command": cmd, "host_cpu": _cpu_name(), "from_carry": restored})
    return cmd


CARRY = REPO_ROOT / "models" / "campaign" / "carry"


def _half(sd: dict) -> dict:
    return {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}


def _float(sd: dict) -> dict:
    return {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}


def carry(name: str, runs: Path = RUNS, carry_dir: Path = CARRY) -> Optional[Path]:
    """Keep a member's training state beyond this machine: the weights and the best epoch's
    weights in float16, schedule position, RNG states and history; not the optimizer momentum nor
    the EMA (both rebuild within an epoch). ``start`` on another machine continues from it."""
    import torch
    st = runs / f"{name}.state.pt"
    if not st.exists():
        return None
    s = torch.load(st, map_location="cpu")
    best = dict(s["best"])
    if "state_dict" in best:
        best["state_dict"] = _half(best["state_dict"])
    kept = {k: v for k, v in s.items() if k not in ("model", "opt", "ema", "best")}
    kept.update({"model": _half(s["model"]), "opt": None, "ema": None, "best": best, "carried": True})
    carry_dir.mkdir(parents=True, exist_ok=True)
    out = carry_dir / f"{name}.pt"
    torch.save(kept, out.with_suffix(".tmp"))
    os.replace(out.with_suffix(".tmp"), out)
    return out


def restore(name: str, runs: Path = RUNS, carry_dir: Path = CARRY) -> bool:
    """Where this machine has no state of the member but the campaign carried one, put it back."""
    import torch
    st, kept = runs / f"{name}.state.pt", carry_dir / f"{name}.pt"
    if st.exists() or not kept.exists():
        return False
    s = torch.load(kept, map_location="cpu")
    s["model"] = _float(s["model"])
    if "state_dict" in s["best"]:
        s["best"]["state_dict"] = _float(s["best"]["state_dict"])
    runs.mkdir(parents=True, exist_ok=True)
    torch.save(s, st)
    return True


def _figures(r: dict) -> dict:
    return {"accuracy": round(r["accuracy"], 4), "qwk": round(r["qwk"], 4), "mae": round(r["mae"], 4),
            "per_grade": [None if v is None else round(v, 3) for v in r["per_grade_accuracy"]]}


def record(state: dict, runs: Path = RUNS, kept: Path = KEPT, carry_dir: Path = CARRY) -> list:
    """Members whose training finished (``<name>.pt`` without a pending ``.state.pt``) become done:
    their figures go into the state and their weights into ``kept``; their carried training state,
    now superseded, leaves the tree."""
    import torch
    done = []
    for m in state["members"]:
        pt = runs / f"{m['name']}.pt"
        if m["status"] == "done" or not pt.exists() or pt.with_suffix(".state.pt").exists():
            continue
        ckpt = torch.load(pt, map_location="cpu")
        if ckpt.get("chosen_on") != "selection":
            raise SystemExit(f"campaign: {pt} was not chosen on the selection set; not recorded")
        run = m["runs"][-1] if m["runs"] else {}
        if not m["runs"]:
            m["runs"].append(run)
        run.update({"finished": _now(), "train_s": ckpt["train_seconds"], "epochs_run": ckpt["epochs_run"],
                    "best_epoch": ckpt["best_epoch"], "precision": ckpt["precision"]})
        m.update({"status": "done", "temperature": round(float(ckpt["temperature"]), 4),
                  "selection": _figures(ckpt["val"]), "val_once": _figures(ckpt["val_heldout"]),
                  "weights": str((kept / f"{m['name']}.pt").relative_to(REPO_ROOT)) if kept.is_relative_to(REPO_ROOT)
                  else str(kept / f"{m['name']}.pt")})
        kept.mkdir(parents=True, exist_ok=True)
        torch.save({"config": ckpt["config"], "temperature": ckpt["temperature"], "best_epoch": ckpt["best_epoch"],
                    "state_dict": {k: (v.half() if v.is_floating_point() else v) for k, v in ckpt["state_dict"].items()},
                    "selection_logits": ckpt["val_logits"], "val_logits": ckpt["val_heldout_logits"],
                    "history": ckpt["history"]}, kept / f"{m['name']}.pt")
        (carry_dir / f"{m['name']}.pt").unlink(missing_ok=True)
        m.pop("carried", None)
        done.append(m["name"])
    return done


def table(state: dict) -> str:
    rows = [f"campaign {state['config']} ({state['input_size']} px), {hours(state)} h of training so far",
            f"{'member':<16} {'status':<9} {'epochs':>6} {'hours':>6}  selection acc/QWK  val (once) acc/QWK"]
    for m in state["members"]:
        ep = m["runs"][-1].get("epochs_run", 0) if m["status"] == "done" else m.get("carried", {}).get("epoch", 0)
        h = member_seconds(m) / 3600
        sel = f"{m['selection']['accuracy']:.3f} / {m['selection']['qwk']:.3f}" if "selection" in m else "-"
        val = f"{m['val_once']['accuracy']:.3f} / {m['val_once']['qwk']:.3f}" if "val_once" in m else "-"
        rows.append(f"{m['name']:<16} {m['status']:<9} {ep:>6} {h:>6.2f}  {sel:<17}  {val}")
    return "\n".join(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("status")
    s = sub.add_parser("start")
    s.add_argument("--core", type=int, default=1)
    s.add_argument("--dry-run", action="store_true")
    sub.add_parser("record")
    c = sub.add_parser("carry")
    c.add_argument("--member", action="append", help="default: the members in training")
    i = sub.add_parser("init")
    i.add_argument("--config", default="models/configs/campaign224.json")
    a = ap.parse_args(argv)
    if a.cmd == "init":
        if STATE.exists():
            raise SystemExit(f"campaign: {STATE} exists")
        save(new_state(a.config))
    state = load()
    if a.cmd == "start":
        print(start(state, a.core, a.dry_run))
        if not a.dry_run:
            save(state)
    elif a.cmd == "carry":
        names = a.member or [m["name"] for m in state["members"] if m["status"] == "training"]
        for n in names:
            out = carry(n)
            m = next(m for m in state["members"] if m["name"] == n)
            if out is not None:
                import torch
                s = torch.load(out, map_location="cpu")
                m["carried"] = {"epoch": s["epoch"], "of": s["plan"]["epochs"], "train_s": round(s["elapsed_s"]),
                                "at": _now(), "file": str(out.relative_to(REPO_ROOT))}
            print(f"{n}: {'carried to ' + str(out) if out else 'no state on this machine'}")
        save(state)
    elif a.cmd == "record":
        print("recorded:", ", ".join(record(state)) or "none")
        save(state)
    print(table(state))


if __name__ == "__main__":
    main()
