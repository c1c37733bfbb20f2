"""The selection set: a fixed, stratified 10 % of the train split, held apart from training.

Member epochs, ensemble composition, rule and temperature are chosen on it, so that ``val`` is
reported once per candidate and never tuned on. Knees of one subject (left and right) stay on the
same side of the split: the crops' file name is the 7-digit subject id plus ``L``/``R``.

    python3 -m models.selection --train-dir ../shared/data/knee-kl/train --out models/splits/selection.txt

The list (file names, one per line, sorted) is committed; training reads it through the config key
``selection_list``.
"""
import argparse
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, List, Sequence, Set, Tuple

import numpy as np

from .data import list_folder


def subject_of(name: str) -> str:
    """The subject a crop belongs to: its file name without the side letter and extension."""
    stem = Path(name).stem
    return stem[:-1] if stem[-1:] in ("L", "R") else stem


def choose_selection(items: Sequence[Tuple[str, int]], frac: float = 0.10, seed: int = 20261207) -> List[str]:
    """File names of a seeded selection set of about ``frac`` of the images per grade, whole subjects.

    Subjects are visited in a seeded random order; a subject joins when every grade it has is still
    below its target (``frac`` of that grade's count, rounded), so each grade ends within one subject's
    knees of its target and the draw does not depend on the order of ``items``."""
    if not 0 < frac < 1:
        raise ValueError(f"frac must be in (0, 1), got {frac}")
    by_subject: Dict[str, List[Tuple[str, int]]] = defaultdict(list)
    for name, grade in items:
        by_subject[subject_of(name)].append((name, int(grade)))
    counts = Counter(int(g) for _, g in items)
    target = {g: max(1, round(frac * n)) for g, n in counts.items()}
    taken: Counter = Counter()
    rng = np.random.default_rng(seed)
    subjects = sorted(by_subject)
    chosen: List[str] = []
    for i in rng.permutation(len(subjects)):
        knees = by_subject[subjects[i]]
        need = Counter(g for _, g in knees)
        if all(taken[g] + k <= target[g] for g, k in need.items()):
            taken.update(need)
            chosen += [n for n, _ in knees]
    return sorted(chosen)


def read_selection(path) -> Set[str]:
    names = {ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip() and not ln.startswith("#")}
    if not names:
        raise ValueError(f"{path}: empty selection list")
    return names


def split_by_names(x: np.ndarray, y: np.ndarray, names: Sequence[str], selection: Set[str]):
    """(train_x, train_y), (sel_x, sel_y): the images whose name is in ``selection`` go to the second."""
    mask = np.array([n in selection for n in names], bool)
    missing = selection - set(names)
    if missing:
        raise ValueError(f"{len(missing)} names of the selection list are not in the train split "
                         f"(e.g. {sorted(missing)[0]}): the list belongs to other data")
    return (x[~mask], y[~mask]), (x[mask], y[mask])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-dir", default="../shared/data/knee-kl/train")
    ap.add_argument("--out", default="models/splits/selection.txt")
    ap.add_argument("--frac", type=float, default=0.10)
    ap.add_argument("--seed", type=int, default=20261207)
    a = ap.parse_args(argv)
    items = [(p.name, g) for p, g in list_folder(Path(a.train_dir))]
    names = choose_selection(items, a.frac, a.seed)
    grade = dict(items)
    per = Counter(grade[n] for n in names)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# selection set: {len(names)} of {len(items)} train crops, frac {a.frac}, seed {a.seed}, "
              f"per grade {[per[g] for g in sorted(per)]} (models.selection)\n")
    out.write_text(header + "\n".join(names) + "\n")
    print(header.strip())


if __name__ == "__main__":
    main()
