"""The knee localiser's second stage: a small CNN that tells an AP/PA knee-joint crop from what
template matching also finds — bone shafts, other regions, rotated, upside-down and edge-on
(lateral-like) knees, other radiographs (the WG04 distal tibia). Trained from scratch on the
knee-kl crops (positives) and negatives made from them and from WG04 on the fly; exported to ONNX
(packages/knee/assets/knee-verifier.onnx) and run by packages/knee/src/verify.ts.

Classes: 0 = AP/PA knee joint, 1 = no knee joint (shaft, off-centre, other anatomy, background),
2 = a knee, but not as an AP/PA view (rotated, upside down, edge-on).
Input: float32 [N, 1, 56, 56], grey / 255, the localiser's CLAHE crop (224 px) area-resized.

    python3 -m models.knee_verifier [--epochs 12] [--out packages/knee/assets/knee-verifier.onnx]
"""
import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "packages" / "knee" / "assets" / "knee-verifier.onnx"
SIZE = 56
CLASSES = ["ap_knee", "no_knee_joint", "not_ap_view"]


def load_crops(split: str):
    files = sorted((DATA / "knee-kl" / split).glob("[01234]/*.png"))
    return np.stack([cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files])


def load_wg04() -> np.ndarray:
    """RG3 (distal tibia and ankle, MONOCHROME1) as display grey, bone bright, 880 px."""
    import pydicom

    ds = pydicom.dcmread(str(DATA / "dicom" / "wg04" / "RG3_UNC.dcm"))
    a = ds.pixel_array.astype(np.float32)
    lo, hi = np.percentile(a, [0.5, 99.5])
    a = np.clip((a - lo) / (hi - lo), 0, 1)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        a = 1 - a
    return cv2.resize((a * 255).astype(np.uint8), (880, 880), interpolation=cv2.INTER_AREA)


CLAHE = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4))


def square(img, cx, cy, side, out=224):
    """The side×side square centred at (cx, cy), edges replicated, resized to out."""
    m = cv2.getAffineTransform(
        np.float32([[cx - side / 2, cy - side / 2], [cx + side / 2, cy - side / 2], [cx - side / 2, cy + side / 2]]),
        np.float32([[0, 0], [out, 0], [0, out]]),
    )
    return cv2.warpAffine(img, m, (out, out), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


def rotate(img, deg, scale=1.0):
    m = cv2.getRotationMatrix2D((111.5, 111.5), deg, scale)
    return cv2.warpAffine(img, m, (224, 224), borderMode=cv2.BORDER_REPLICATE)


def positive(c, rng):
    """A knee crop as the localiser cuts it: small shift and size error, either side."""
    s = 224 * rng.uniform(0.88, 1.12)
    out = square(c, 111.5 + rng.uniform(-0.07, 0.07) * 224, 111.5 + rng.uniform(-0.07, 0.07) * 224, s)
    out = rotate(out, rng.uniform(-6, 6))
    return out[:, ::-1] if rng.random() < 0.5 else out


def no_knee(c, wg04, rng):
    """Class 1: part of a bone far from the joint line, another region, or background."""
    kind = rng.integers(0, 4)
    if kind == 0:  # a shaft or a condyle alone: a zoomed, off-centre window of the crop
        s = 224 * rng.uniform(0.35, 0.6)
        cx = 112 + rng.uniform(-0.25, 0.25) * 224
        cy = 112 + rng.choice([-1, 1]) * rng.uniform(0.22, 0.32) * 224
        return square(c, cx, cy, s)
    if kind == 1:  # the joint well off-centre
        return square(c, 112 + rng.uniform(-0.5, 0.5) * 224, 112 + rng.choice([-1, 1]) * rng.uniform(0.3, 0.5) * 224, 224)
    if kind == 2:  # another radiograph (distal tibia, ankle, soft tissue, background)
        s = rng.uniform(120, 500)
        return CLAHE.apply(square(wg04, rng.uniform(s / 2, 880 - s / 2), rng.uniform(s / 2, 880 - s / 2), s))
    # smooth background with a gradient and noise
    g = np.linspace(0, 1, 224)[None, :] * rng.uniform(-80, 80) + rng.uniform(20, 200)
    n = cv2.GaussianBlur(rng.normal(0, rng.uniform(5, 40), (224, 224)), (0, 0), rng.uniform(2, 20))
    return np.clip(g + n, 0, 255).astype(np.uint8)


def not_ap(c, rng):
    """Class 2: the knee, but not seen as an AP/PA view of it."""
    kind = rng.integers(0, 3)
    if kind == 0:  # rotated well away from upright
        return rotate(c, rng.choice([-1, 1]) * rng.uniform(35, 145))
    if kind == 1:  # upside down
        return rotate(c[::-1].copy(), rng.uniform(-8, 8))
    # edge-on (lateral-like): narrowed to 40-65 % of its width, soft tissue either side
    w = int(224 * rng.uniform(0.4, 0.65))
    narrow = cv2.resize(c, (w, 224), interpolation=cv2.INTER_AREA)
    out = np.full((224, 224), int(rng.uniform(30, 80)), np.uint8)
    x0 = (224 - w) // 2
    out[:, x0:x0 + w] = narrow
    return out


def degrade(img, rng):
    """What a clinical radiograph's knee looks like after the localiser's cut and CLAHE, made from a
    knee-kl crop (released CLAHE-enhanced: dark, sharp, strong trabecular texture). Clinical exports
    show bone nearly white and smooth against grey soft tissue: the texture is softened (an 8-bit
    export scaled down from a larger image, JPEG), the tones pushed up and compressed (raw detector
    contrast, any gamma), the exposure uneven, a burned-in marker at times — then a CLAHE of varying
    strength, or none. Applied to every class alike, so that "smooth" or "bright" never means "not
    a knee"."""
    x = img.astype(np.float32)
    a = rng.uniform(0.4, 1.0)  # texture softened: a blend with a blurred copy
    x = a * cv2.GaussianBlur(x, (0, 0), rng.uniform(1.0, 4.0)) + (1 - a) * x
    if rng.random() < 0.6:  # detail lost to scaling: down by 1.3-3.5x and back
        f = rng.uniform(1.3, 3.5)
        small = cv2.resize(x, (max(16, int(224 / f)),) * 2, interpolation=cv2.INTER_AREA)
        x = cv2.resize(small, (224, 224), interpolation=cv2.INTER_LINEAR)
    lo, hi = rng.uniform(20, 130), rng.uniform(195, 255)
    x = lo + (hi - lo) * np.clip(x / 255.0, 0, 1) ** rng.uniform(0.3, 1.3)
    if rng.random() < 0.5:  # uneven exposure across the square
        gx, gy = np.meshgrid(np.linspace(-1, 1, 224), np.linspace(-1, 1, 224))
        x = x + rng.uniform(-30, 30) * gx + rng.uniform(-30, 30) * gy
    x = x + rng.normal(0, rng.uniform(0, 5), x.shape)
    out = np.clip(x, 0, 255).astype(np.uint8)
    if rng.random() < 0.15:  # a burned-in side marker
        cv2.putText(out, str(rng.choice(["R", "L", "RIGHT", "LEFT"])), (int(rng.uniform(0, 150)), int(rng.uniform(20, 220))),
                    cv2.FONT_HERSHEY_SIMPLEX, rng.uniform(0.6, 1.6), int(rng.uniform(180, 255)), 2)
    if rng.random() < 0.6:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.uniform(30, 95))])
        out = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    if rng.random() < 0.8:
        out = cv2.createCLAHE(clipLimit=rng.uniform(1.0, 2.5), tileGridSize=(4, 4)).apply(out)
    return out


def to_input(batch):
    x = torch.from_numpy(np.stack(batch)).float().unsqueeze(1) / 255.0
    return F.adaptive_avg_pool2d(x, SIZE)  # area resampling, as the Node side's areaResize


def make_batch(crops, wg04, rng, n, degrade_p=0.0):
    imgs, labels = [], []
    for _ in range(n):
        c = crops[rng.integers(0, len(crops))]
        y = rng.choice(3, p=[0.5, 0.3, 0.2])
        img = positive(c, rng) if y == 0 else no_knee(c, wg04, rng) if y == 1 else not_ap(c, rng)
        if degrade_p and rng.random() < degrade_p:
            img = degrade(np.ascontiguousarray(img), rng)
        imgs.append(np.ascontiguousarray(img))
        labels.append(y)
    return to_input(imgs), torch.tensor(labels)


class Verifier(nn.Module):
    def __init__(self):
        super().__init__()
        ch = [1, 12, 24, 32, 48]
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU()) for a, b in zip(ch, ch[1:])
        )
        self.head = nn.Linear(ch[-1], len(CLASSES))

    def forward(self, x):
        x = (x - 0.5) / 0.25
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i < len(self.convs) - 1:
                x = F.max_pool2d(x, 2)
        return self.head(x.mean((2, 3)))


def evaluate(model, crops, wg04, seed, n=1500, degrade_p=0.0):
    rng = np.random.default_rng(seed)
    model.eval()
    x, y = make_batch(crops, wg04, rng, n, degrade_p)
    with torch.no_grad():
        p = model(x).softmax(1)
    pred = p.argmax(1)
    accept = p[:, 0] >= 0.5
    return {
        "n": n,
        "accuracy": float((pred == y).float().mean()),
        "knees_accepted": float(accept[y == 0].float().mean()),
        "no_knee_refused": float((~accept[y == 1]).float().mean()),
        "not_ap_refused": float((~accept[y == 2]).float().mean()),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--steps", type=int, default=60, help="batches per epoch")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--degrade", type=float, default=0.8,
                    help="share of samples made to look like a clinical radiograph's crop (degrade())")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    train, val, wg04 = load_crops("train"), load_crops("val"), load_wg04()
    # WG04 is one image: its left half for training, its right half for validation.
    wg_train, wg_val = wg04[:, :440].copy(), wg04[:, 440:].copy()
    wg_train = cv2.resize(wg_train, (880, 880))
    wg_val = cv2.resize(wg_val, (880, 880))
    model = Verifier()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=args.epochs * args.steps)
    rng = np.random.default_rng(1)
    t0 = time.time()
    for epoch in range(args.epochs):
        model.train()
        total = 0.0
        for _ in range(args.steps):
            x, y = make_batch(train, wg_train, rng, args.batch, args.degrade)
            loss = F.cross_entropy(model(x), y, label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss)
        print(f"epoch {epoch + 1}: loss {total / args.steps:.3f}  val {evaluate(model, val, wg_val, 7, 600)}  "
              f"degraded {evaluate(model, val, wg_val, 8, 600, 1.0)}  {time.time() - t0:.0f}s", flush=True)
    figures = evaluate(model, val, wg_val, 11)
    figures_degraded = evaluate(model, val, wg_val, 12, degrade_p=1.0)
    print("val (held-out crops, WG04 right half):", json.dumps(figures))
    print("val, every sample degraded:", json.dumps(figures_degraded))
    model.eval()
    torch.onnx.export(
        model, torch.zeros(1, 1, SIZE, SIZE), args.out, input_names=["image"], output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=13,
    )
    Path(args.out).with_suffix(".json").write_text(json.dumps(
        {"classes": CLASSES, "input": {"size": SIZE, "scale": 1 / 255}, "val": figures,
         "val_degraded": figures_degraded,
         "training": {"epochs": args.epochs, "steps": args.steps, "batch": args.batch, "degrade": args.degrade,
                      "seconds": round(time.time() - t0)}}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
