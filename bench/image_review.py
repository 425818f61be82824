"""The image pitfall table: Grad-CAM against IG and Occlusion over a set of images.

    python -m bench.image_review images DIR          # write the image set (see below)
    python -m explainers review --modality image --file DIR \
        --methods grad_cam,integrated_gradients,occlusion \
        --metric-param random_orders=20 --out image_review.jsonl
    python -m bench.image_review table image_review.jsonl
    python -m bench.image_review pointing DIR --methods grad_cam   # cheap: no metrics

The set (nothing is committed; every image is made offline from scikit-image's data):

- ``a_gallery_*``: the dashboard's gallery (skimage ``chelsea``, ``coffee``, ``astronaut``,
  ``rocket``);
- ``b_paste_*``: 24 generated composites, one object (a 224 x 224 copy of ``chelsea``,
  ``coffee``, ``rocket`` or ``astronaut``) pasted into one quadrant of a 448 x 448 canvas:
  flat grey (each object in all four quadrants) or a CC0 texture (skimage ``grass``,
  ``brick``: each object once in each). The object's quadrant is in the file name, so the
  table can say how much of each map's positive mass lies on the object;
- ``c_skimage_*``: seven more skimage photographs (``camera``, ``clock``, ``coins``,
  ``horse``, ``hubble_deep_field``, ``immunohistochemistry``, ``retina``).

Licences (from skimage's docstrings): chelsea, coffee, camera, horse, grass, brick CC0;
astronaut, rocket, clock, hubble_deep_field, retina public domain; coins and
immunohistochemistry "no known copyright restrictions".

``table`` prints, per method: deletion AOPC (mean), flips (inputs flipped, and the mean
count over those), the share beating the random control (permutation test), the mean
Spearman rank correlation to Integrated Gradients over the 16 x 16 patches, and on the
composites the share of positive mass on the pasted object's quadrant (25 % of the area).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

GALLERY = ("chelsea", "coffee", "astronaut", "rocket")
OBJECTS = GALLERY
TEXTURES = ("grass", "brick")
EXTRA = ("camera", "clock", "coins", "horse", "hubble_deep_field", "immunohistochemistry", "retina")
QUADRANTS = {"tl": (0, 0), "tr": (0, 1), "bl": (1, 0), "br": (1, 1)}


def _skimage(name: str) -> np.ndarray:
    import skimage.data
    arr = np.asarray(getattr(skimage.data, name)())
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, -1)
    return arr[..., :3].astype(np.uint8)


def _small(arr: np.ndarray, side: int = 448) -> Image.Image:
    img = Image.fromarray(arr)
    scale = side / max(img.size)
    return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                      Image.BILINEAR) if scale < 1 else img


def composites() -> list[tuple[str, np.ndarray]]:
    """``(file stem, 448 x 448 RGB)``: each object on grey in every quadrant, and on each
    texture in one quadrant (rotating, so every quadrant is used)."""
    out = []
    for i, obj in enumerate(OBJECTS):
        tile = np.asarray(Image.fromarray(_skimage(obj)).resize((224, 224), Image.BILINEAR))
        backgrounds = [("grey", None, q) for q in QUADRANTS]
        backgrounds += [(t, t, list(QUADRANTS)[(i + j) % 4]) for j, t in enumerate(TEXTURES)]
        for bg_name, texture, q in backgrounds:
            if texture is None:
                canvas = np.full((448, 448, 3), 128, np.uint8)
            else:
                canvas = np.asarray(Image.fromarray(_skimage(texture)).resize((448, 448))).copy()
            r, c = QUADRANTS[q]
            canvas[r * 224:(r + 1) * 224, c * 224:(c + 1) * 224] = tile
            out.append((len(out) % len(backgrounds), obj, bg_name, q, canvas))
    # interleaved (every object once, then again), so a partial run still covers them all
    out.sort(key=lambda t: (t[0], OBJECTS.index(t[1])))
    return [(f"b_paste_{k:02d}_{obj}_{bg}_{q}", arr) for k, (_, obj, bg, q, arr) in enumerate(out)]


def write_images(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    items = [(f"a_gallery_{n}", _skimage(n)) for n in GALLERY] + composites() + \
            [(f"c_skimage_{n}", _skimage(n)) for n in EXTRA]
    for stem, arr in items:
        _small(arr).save(folder / f"{stem}.png")
    return len(items)


def object_share(scores: list, quadrant: str) -> float | None:
    """Share of a map's positive mass inside ``quadrant`` of the model-resolution image."""
    s = np.clip(np.asarray(scores, dtype=np.float64), 0, None)
    total = s.sum()
    if total <= 0:
        return None
    h, w = s.shape
    r, c = QUADRANTS[quadrant]
    return float(s[r * h // 2:(r + 1) * h // 2, c * w // 2:(c + 1) * w // 2].sum() / total)


def _mean(values):
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return statistics.mean(vals) if vals else None


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def table(lines: list[dict], reference: str = "integrated_gradients", second: str = "occlusion") -> str:
    ok = [r for r in lines if "error" not in r]
    methods = list(ok[0]["attributions"]) if ok else []
    rows = {m: {"aopc": [], "flip": [], "beats": [], "rho": [], "rho2": [], "share": []} for m in methods}
    rand = {"aopc": [], "flip": []}
    for r in ok:
        metrics = r.get("metrics") or {}
        faith, flips, agree = (metrics.get(k) or {} for k in ("faithfulness", "flip", "agreement"))
        order = agree.get("methods") or []
        quadrant = re.search(r"_(tl|tr|bl|br)\.", str(r.get("id")))
        for m in methods:
            fm = (faith.get("methods") or {}).get(m) or {}
            rows[m]["aopc"].append(fm.get("deletion_aopc"))
            rows[m]["beats"].append(fm.get("beats_random"))
            rows[m]["flip"].append(((flips.get("methods") or {}).get(m) or {}).get("count"))
            if m != reference and m in order and reference in order:
                rows[m]["rho"].append(agree["spearman"][order.index(m)][order.index(reference)])
            if m != second and m in order and second in order:
                rows[m]["rho2"].append(agree["spearman"][order.index(m)][order.index(second)])
            if quadrant:
                rows[m]["share"].append(object_share(r["attributions"][m]["scores"], quadrant.group(1)))
        rand["aopc"].append((faith.get("random") or {}).get("deletion_aopc"))
        rand["flip"].append((flips.get("random") or {}).get("count"))
    n = len(ok)
    out = [f"{n} images ({len(lines) - n} failed)", "",
           "| method | deletion AOPC | flipped (mean count) | beats random | mean Spearman to IG "
           f"| mean Spearman to {second} | positive mass on the pasted object |",
           "|---|---|---|---|---|---|---|"]

    def flip_cell(counts):
        done = [c for c in counts if c is not None]
        return f"{len(done)}/{len(counts)} ({_fmt(_mean(done), '.1f')})"
    for m, d in rows.items():
        beats = [b for b in d["beats"] if b is not None]
        share = f"{sum(beats)}/{len(beats)}" if beats else "-"
        rho = "1 (itself)" if m == reference else _fmt(_mean(d["rho"]), ".2f")
        rho2 = "1 (itself)" if m == second else _fmt(_mean(d["rho2"]), ".2f")
        out.append(f"| {m} | {_fmt(_mean(d['aopc']), '.3f')} | {flip_cell(d['flip'])} | {share} | {rho} "
                   f"| {rho2} | {_fmt(_mean(d['share']), '.2f')} |")
    out.append(f"| (random control) | {_fmt(_mean(rand['aopc']), '.3f')} | {flip_cell(rand['flip'])} "
               f"| - | - | - | 0.25 (area) |")
    return "\n".join(out)


def pointing(folder: Path, methods: list[str]) -> str:
    """On the composites only: each method's share of positive mass on the pasted object's
    quadrant, and how often that quadrant holds the most (a quadrant-level pointing game),
    with the model's prediction on each composite. Runs the methods, no metrics."""
    from explainers import explain, load_model
    model = load_model("image")
    rows = {m: {"share": [], "hit": []} for m in methods}
    labels = []
    for path in sorted(folder.glob("b_paste_*.png")):
        q = re.search(r"_(tl|tr|bl|br)\.png$", path.name).group(1)
        r = explain(model, str(path), methods=methods, use_cache=False)
        labels.append(f"{path.stem}: {r.prediction.label}")
        for m in methods:
            scores = r.attributions[m].scores
            shares = {k: object_share(scores, k) for k in QUADRANTS}
            rows[m]["share"].append(shares[q])
            rows[m]["hit"].append(max(shares, key=lambda k: shares[k] or 0) == q)
    out = [f"{len(labels)} composites", "", "| method | positive mass on the object (mean, min) | "
           "object quadrant holds the most |", "|---|---|---|"]
    for m, d in rows.items():
        out.append(f"| {m} | {_fmt(_mean(d['share']), '.2f')}, {_fmt(min(d['share']), '.2f')} | "
                   f"{sum(d['hit'])}/{len(d['hit'])} |")
    return "\n".join(out + [""] + labels)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("images", help="write the image set into a folder").add_argument("folder")
    t = sub.add_parser("table", help="the markdown table from a review's JSON lines")
    t.add_argument("jsonl")
    q = sub.add_parser("pointing", help="object localisation on the composites (no metrics)")
    q.add_argument("folder")
    q.add_argument("--methods", default="grad_cam")
    args = p.parse_args()
    warnings.filterwarnings("ignore")  # Captum's notes on hooks, once per image
    if args.command == "pointing":
        print(pointing(Path(args.folder), args.methods.split(",")))
    elif args.command == "images":
        print(f"{write_images(Path(args.folder))} images written to {args.folder}")
    else:
        lines = [json.loads(s) for s in open(args.jsonl, encoding="utf-8") if s.strip()]
        print(table(lines))


if __name__ == "__main__":
    main()
