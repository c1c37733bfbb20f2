"""The knee localiser's templates: the mean of the training crops (both sides, horizontal flips
averaged in) and the means of their vertical-gradient magnitude (the joint line, the condyles' and
plateau's edges) and horizontal-gradient magnitude (the bone's outline, which fixes the size), at
the localiser's coarse and fine sizes. The Node localiser (packages/knee) matches it by normalised
cross-correlation over a full radiograph. Only an average of thousands of crops is written: no
image of any subject can be recovered from it.

    python3 -m models.knee_template [--data ../shared/data/knee-kl/train] [--size 64]
"""
import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parent.parent / "packages" / "knee" / "assets" / "knee-template.json"


def vertical_gradient(a: np.ndarray) -> np.ndarray:
    """|I(y+1, x) - I(y, x)|, the last row repeated (same size as the image)."""
    g = np.abs(np.diff(a, axis=0))
    return np.concatenate([g, g[-1:]], axis=0)


def horizontal_gradient(a: np.ndarray) -> np.ndarray:
    """|I(y, x+1) - I(y, x)|, the last column repeated."""
    return vertical_gradient(a.T).T


def mean_templates(data: Path, size: int, grades: str = "01234"):
    total = np.zeros((size, size), np.float64)
    grad = np.zeros((size, size), np.float64)
    hgrad = np.zeros((size, size), np.float64)
    n = 0
    for png in sorted(data.glob(f"[{grades}]/*.png")):
        img = Image.open(png).convert("L").resize((size, size), Image.BILINEAR)
        a = np.asarray(img, np.float64) / 255.0
        total += a + a[:, ::-1]
        grad += vertical_gradient(a) + vertical_gradient(a[:, ::-1])
        hgrad += horizontal_gradient(a) + horizontal_gradient(a[:, ::-1])
        n += 1
    if n == 0:
        raise SystemExit(f"no crops under {data}/<grade>/*.png")
    return total / (2 * n), grad / (2 * n), hgrad / (2 * n), n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/knee-kl/train"))
    ap.add_argument("--sizes", default="24,64", help="template sizes (coarse search, refinement)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    templates = []
    n = 0
    sizes = [int(s) for s in args.sizes.split(",")]
    for size in sizes:
        # All grades at every size; per grade at the refinement size (the largest): a severe knee
        # (KL 4, joint space gone) matches the all-grade mean less well than a healthy one.
        for grades in ["01234"] + (list("01234") if size == max(sizes) else []):
            mean, grad, hgrad, count = mean_templates(Path(args.data), size, grades)
            n = max(n, count)
            templates.append({
                "size": size,
                "grades": [int(g) for g in grades],
                "mean": [round(float(v), 5) for v in mean.ravel()],
                "vgrad": [round(float(v), 5) for v in grad.ravel()],
                "hgrad": [round(float(v), 5) for v in hgrad.ravel()],
            })
    doc = {
        "schema_version": 2,
        "kind": "kneegrade-knee-template",
        "crops": n,
        "source": "knee-kl train crops (Chen 2018, doi:10.17632/56rmx5bjcr.1, CC BY 4.0), each averaged "
                  "with its mirror image, bilinear-resized to each size; grey/255. mean: mean intensity; "
                  "vgrad: mean |I(y+1,x) - I(y,x)| (last row repeated); hgrad: mean |I(y,x+1) - I(y,x)| "
                  "(last column repeated)",
        "templates": templates,
    }
    Path(args.out).write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"wrote {args.out}: sizes {args.sizes} from {n} crops")


if __name__ == "__main__":
    main()
