"""Training configuration: JSON files under models/configs/, merged over these defaults.

A config has shared keys and a list of ``members``; each member's keys override the shared ones.
"""
import copy
import json
from pathlib import Path

DEFAULTS = {
    "seed": 0,
    "train_dir": "../shared/data/knee-kl/train",   # relative to the repo root
    "val_dir": "../shared/data/knee-kl/val",
    "train_pack": None,                             # a .kgpack file replaces train_dir when given
    "val_pack": None,
    "limit_per_grade": None,                        # smoke runs: first N train images per grade
    "val_limit_per_grade": None,                    # likewise for val
    "selection_list": None,                         # file names of train held apart to choose on (models.selection)
    "input_size": 224,
    "mean": 0.5,
    "std": 0.25,
    "num_classes": 5,
    "fpn_size": 128,
    "fpn_hidden_max": 0,           # 0: FPN projection hidden width = stage width (reference)
    "num_selects": [256, 128, 64, 32],
    "lambda_b": 0.5, "lambda_s": 0.0, "lambda_n": 5.0, "lambda_c": 1.0,
    "lambda_n_warmup_frac": 0.0,   # ramp lambda_n linearly from 0 over this fraction of the steps
    "ordinal_sigma": 0.0,
    "label_smoothing": 0.0,
    "class_weight_power": 0.0,     # loss weight per class = (n_c / n_mean) ** -power
    "sample_balance_power": 0.0,   # sampling weight per image = n_c ** -power (0: plain shuffle)
    "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": True,
    "warmup_frac": 0.1,            # one-cycle: linear warm-up then cosine to zero
    "batch_size": 128,
    "epochs": 30,
    "time_budget_s": None,         # when set, epochs are chosen so training fits this many seconds
    "ema_decay": 0.0,
    "grad_clip": 0.0,              # clip the gradient's global norm to this (0: off)
    "augment": {"rotate_deg": 10.0, "scale": 0.10, "shift": 0.08, "hflip": 0.5,
                "brightness": 0.10, "contrast": 0.15, "gamma": 0.15},
    "eval_every": 1,
    "eval_after_frac": 0.0,        # validate only after this fraction of the planned epochs (and the last)
    "channels_last": False,        # channels_last memory format in float32 CPU training too (bf16 and CUDA always use it)
    "bf16": "auto",                # CPU training precision: "auto" (bf16 autocast where the CPU has it), true, false
    "budget_weight": 1.0,          # models.cpu_run: this member's share of the run's time budget
    "threads": 0,                  # torch CPU threads (0: leave torch's default)
    "ensemble_rule": "mean_calibrated_probabilities",  # or "mean_calibrated_log_probabilities" (models.metrics.pool)
    "members": [{"name": "resnet_slim", "backbone": "resnet_slim"}],
}


def load_config(path) -> dict:
    cfg = copy.deepcopy(DEFAULTS)
    with open(path) as f:
        user = json.load(f)
    unknown = sorted(set(user) - set(DEFAULTS) - {"comment", "name"})
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown}")
    for k, v in user.items():
        if k == "augment":
            cfg["augment"].update(v)
        else:
            cfg[k] = v
    return cfg


def apply_overrides(cfg: dict, pairs) -> dict:
    """``KEY=JSON`` strings (e.g. ``batch_size=4``) set top-level keys; they also win over members."""
    for pair in pairs or []:
        key, _, raw = pair.partition("=")
        if key not in DEFAULTS:
            raise ValueError(f"unknown key in override {pair!r}")
        val = json.loads(raw)
        cfg[key] = val
        for m in cfg["members"]:
            m.pop(key, None)
    return cfg


def member_config(cfg: dict, member: dict) -> dict:
    m = copy.deepcopy({k: v for k, v in cfg.items() if k != "members"})
    for k, v in member.items():
        if k not in DEFAULTS and k not in ("name", "backbone"):
            raise ValueError(f"member {member.get('name')}: unknown key {k}")
        if k == "augment":
            m["augment"].update(v)
        else:
            m[k] = v
    if "backbone" not in m:
        raise ValueError("every member needs a backbone")
    m.setdefault("name", m["backbone"])
    return m


def resolve(path, repo_root: Path):
    if path is None:
        return None
    p = Path(path)
    return p if p.is_absolute() else (repo_root / p)
