"""Image folders, the compact pack format for the GPU machine, and augmentation on the device.

Folders are laid out ``<dir>/<grade>/*.png`` (grade 0-4). A pack file holds one split as WebP
bytes (lossy: both splits and the working tree stay within 64 MiB, see pack.py) behind a JSON index:
    b"KGPACK1\\n" | uint32 LE header length | header JSON | concatenated image bytes
header = {"format": "webp", "quality": q, "items": [{"name", "grade", "offset", "length"}, ...]}
"""
import json
import math
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List, Optional, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

MAGIC = b"KGPACK1\n"


def list_folder(root: Path, limit_per_grade: Optional[int] = None) -> List[Tuple[Path, int]]:
    """(path, grade) for every image under ``root/<grade>/``, sorted; optionally the first N per grade."""
    root = Path(root)
    items = []
    for gdir in sorted(p for p in root.iterdir() if p.is_dir() and p.name.isdigit()):
        files = sorted(f for f in gdir.iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
        if limit_per_grade is not None:
            files = files[:limit_per_grade]
        items += [(f, int(gdir.name)) for f in files]
    if not items:
        raise FileNotFoundError(f"no images under {root}/<grade>/")
    return items


def _decode(buf: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ValueError("undecodable image")
    return img


def _read(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ValueError(f"cannot read {path}")
    return img


def _stack(imgs: List[np.ndarray], size: int) -> np.ndarray:
    out = np.empty((len(imgs), 1, size, size), np.uint8)
    for i, im in enumerate(imgs):
        if im.shape != (size, size):
            im = cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA)
        out[i, 0] = im
    return out


def load_folder(root: Path, size: int = 224, limit_per_grade: Optional[int] = None, workers: int = 4):
    """uint8 images N,1,size,size, int64 grades N, and the file names."""
    items = list_folder(root, limit_per_grade)
    with ThreadPoolExecutor(workers) as ex:
        imgs = list(ex.map(_read, [p for p, _ in items]))
    return _stack(imgs, size), np.array([g for _, g in items], np.int64), [p.name for p, _ in items]


def write_pack(root: Path, out: Path, quality: int = 80, limit_per_grade: Optional[int] = None,
               workers: int = 4) -> dict:
    items = list_folder(root, limit_per_grade)

    def enc(item):
        ok, buf = cv2.imencode(".webp", _read(item[0]), [cv2.IMWRITE_WEBP_QUALITY, int(quality)])
        if not ok:
            raise ValueError(f"cannot encode {item[0]}")
        return buf.tobytes()

    with ThreadPoolExecutor(workers) as ex:
        blobs = list(ex.map(enc, items))
    entries, off = [], 0
    for (p, g), b in zip(items, blobs):
        entries.append({"name": p.name, "grade": g, "offset": off, "length": len(b)})
        off += len(b)
    header = json.dumps({"format": "webp", "quality": int(quality), "items": entries}).encode()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:
        f.write(MAGIC + struct.pack("<I", len(header)) + header)
        for b in blobs:
            f.write(b)
    return {"file": str(out), "images": len(entries), "bytes": out.stat().st_size}


def read_pack(path: Path, size: int = 224, workers: int = 8):
    """Decode a pack: uint8 images N,1,size,size, int64 grades, names."""
    data = Path(path).read_bytes()
    if data[:8] != MAGIC:
        raise ValueError(f"{path} is not a kneegrade pack")
    (hlen,) = struct.unpack("<I", data[8:12])
    header = json.loads(data[12:12 + hlen])
    base = 12 + hlen
    items = header["items"]
    with ThreadPoolExecutor(workers) as ex:
        imgs = list(ex.map(lambda it: _decode(data[base + it["offset"]: base + it["offset"] + it["length"]]), items))
    return _stack(imgs, size), np.array([it["grade"] for it in items], np.int64), [it["name"] for it in items]


def to_input(x_uint8: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 N,1,H,W -> float32 in [0, 1] at ``size`` (the model's input; grey / 255)."""
    x = x_uint8.float() / 255.0
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="area")
    return x


def augment(x_uint8: torch.Tensor, size: int, cfg: dict, gen: Optional[torch.Generator] = None) -> torch.Tensor:
    """Random affine (rotation, scale, shift), horizontal flip, brightness/contrast/gamma, on the
    tensor's device; returns float32 N,1,size,size in [0, 1]."""
    n, dev = x_uint8.shape[0], x_uint8.device

    def u(lo, hi):
        return torch.rand(n, device=dev, generator=gen) * (hi - lo) + lo

    x = x_uint8.float() / 255.0
    rot = u(-1, 1) * math.radians(cfg.get("rotate_deg", 10.0))
    scale = 1 + u(-1, 1) * cfg.get("scale", 0.10)
    tx, ty = u(-1, 1) * cfg.get("shift", 0.08) * 2, u(-1, 1) * cfg.get("shift", 0.08) * 2
    flip = torch.where(torch.rand(n, device=dev, generator=gen) < cfg.get("hflip", 0.5), -1.0, 1.0)
    cos, sin = torch.cos(rot) / scale, torch.sin(rot) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, [n, 1, size, size], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    b = u(-1, 1) * cfg.get("brightness", 0.1)
    c = 1 + u(-1, 1) * cfg.get("contrast", 0.15)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * c.view(-1, 1, 1, 1) + mean + b.view(-1, 1, 1, 1)).clamp(0, 1)
    g = cfg.get("gamma", 0.15)
    if g:
        x = x.clamp_min(1e-6) ** torch.exp(u(-1, 1) * g).view(-1, 1, 1, 1)
    return x
