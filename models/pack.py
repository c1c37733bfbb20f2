"""Pack the train and val crops compactly for training on a GPU machine.

``python3 -m models.pack`` writes models/.pack/{train,val}.kgpack (WebP q75 by default, format
in models/data.py) and reports their size next to the size of the rest of the working tree: packs
and tree together stay within 64 MiB, so that they travel to the training machine as one. Packs
written outside the repository (test models, rehearsals) never travel: for them the figure is only
reported.
"""
import argparse
import subprocess
from pathlib import Path

from .data import write_pack

REPO_ROOT = Path(__file__).resolve().parent.parent
CARRY_LIMIT = 64 * 1024 * 1024


def tree_bytes() -> int:
    """Bytes of tracked + untracked-not-ignored files: the working tree that travels with the packs."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO_ROOT,
                         capture_output=True, check=True).stdout.split(b"\0")
    return sum((REPO_ROOT / f.decode()).stat().st_size for f in out if f and (REPO_ROOT / f.decode()).is_file())


def travels(out: Path) -> bool:
    """Packs travel to the training machine when they are written inside the repository, outside var/."""
    out = out.resolve()
    return out.is_relative_to(REPO_ROOT) and not out.is_relative_to(REPO_ROOT / "var")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(REPO_ROOT.parent / "shared" / "data" / "knee-kl"))
    ap.add_argument("--out", default=str(Path(__file__).parent / ".pack"))
    ap.add_argument("--quality", type=int, default=75)
    ap.add_argument("--limit-per-grade", type=int, default=None, help="smoke packs: first N per grade")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    total = 0
    for split in ("train", "val"):
        r = write_pack(Path(args.data) / split, Path(args.out) / f"{split}.kgpack", args.quality,
                       args.limit_per_grade, args.workers)
        total += r["bytes"]
        print(f"{split}: {r['images']} images, {r['bytes'] / 2**20:.2f} MiB -> {r['file']}")
    tree = tree_bytes()
    print(f"packs {total / 2**20:.2f} MiB + working tree {tree / 2**20:.2f} MiB = "
          f"{(total + tree) / 2**20:.2f} MiB of the 64 MiB budget")
    if travels(Path(args.out)) and total + tree > CARRY_LIMIT:
        raise SystemExit(f"packs ({total / 2**20:.1f} MiB) and working tree ({tree / 2**20:.1f} MiB) exceed the 64 MiB "
                         "that travel to the training machine: lower --quality, or shrink the tracked tree")


if __name__ == "__main__":
    main()
