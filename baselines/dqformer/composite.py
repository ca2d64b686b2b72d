"""Composite training images: a defect of another image pasted into a training image.

Most MVTec images hold one defect, so for most sentences "segment every anomaly" is the right
answer and a model need not read them. A composite adds a defect of another training image of
the same category (usually another type) at another place, so that the host's own sentences
now target part of the image, the donor's sentences written for its old place target nothing
(or the moved defect, where their words still hold), and sentences naming a type the image
lacks target nothing too.

- **Paste**: one region of the donor (its mask and the pixels under a few pixels' margin),
  moved so that its centre shifts by at least ``MIN_MOVE`` of the frame, stays on the object
  (objects) and keeps ``GAP`` pixels from the host's defects (so no two regions of different
  types can merge). Blended with Poisson image editing (``cv2.seamlessClone``): the host's
  light and colour at the seam, the donor's gradients inside, so the seam is no cue.
- **Regions**: re-derived from the composite's mask and pixels by the build's own
  ``regions_from_mask`` and ``find_frame``; each region records its ``defect_type``.
- **Refs**: written by the build's generator (``annotate.refs_for``) for the regions of each
  type (and for all of them, for universal phrases), plus the host's and donor's dataset
  sentences; every candidate is then re-targeted at what it denotes in the composite and
  kept only when both judges agree: the parser-based checker (``annotate.faithful.judge``)
  and, for a non-empty target, the pixel judge (``annotate.pixel_judge``). A typed sentence
  is judged among the regions of its type, a universal one among all.

Everything is a pure function of (seed, epoch, host image): ``Composites.view`` gives the
``RefSegDataset`` view whose ``group`` draws the unit as for a dataset image.

Shapes: images ``(H, W, 3)`` uint8 RGB; masks ``(H, W)`` bool; frames ``[x, y, w, h]``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

MIN_MOVE = 0.3  # centre shift, in frame widths/heights (Euclidean): old place words become false
BLEND_PAD = 4  # pixels of the donor's surround cloned with the defect (Poisson needs a border)
GAP = 20  # pixels kept from the host's defects: > the build's 16-pixel speck merge distance
TRIES = 30  # placements tried before giving up on a donor
DONORS = 3  # donors tried per composite


@dataclass(frozen=True)
class Composite:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    record: dict  # a samples.jsonl-like record: regions (each with "defect_type") and refs
    pasted: np.ndarray  # (H, W) bool: the pasted defect's pixels (the target of its region)


def paste(host: np.ndarray, host_mask: np.ndarray, donor: np.ndarray, donor_mask: np.ndarray,
          frame: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:  # fmt: skip
    """``(image, pasted mask)``: ``donor_mask``'s pixels of ``donor`` moved to a new place on
    ``host`` and Poisson-blended; None when no place fits. Donor and host have one size."""
    import cv2

    from mvtec_ref.regions.frame import object_mask

    H, W = host_mask.shape
    ys, xs = np.nonzero(donor_mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    fx, fy, fw, fh = frame["bbox"]
    margin = BLEND_PAD + 2  # seamlessClone needs its mask clear of the image border
    if x1 - x0 + 2 * margin >= W or y1 - y0 + 2 * margin >= H:
        return None
    on_object = None
    if frame.get("source") == "object":
        found = object_mask(host)
        if found is not None:
            obj, scale = found
            on_object = (obj, scale)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * GAP + 1, 2 * GAP + 1))
    keep_out = cv2.dilate(host_mask.astype(np.uint8), kernel) > 0
    cy, cx = ys.mean(), xs.mean()
    for _ in range(TRIES):
        dx = int(rng.integers(margin - x0, W - margin - x1 + 1))
        dy = int(rng.integers(margin - y0, H - margin - y1 + 1))
        if np.hypot(dx / max(fw, 1), dy / max(fh, 1)) < MIN_MOVE:
            continue
        nx, ny = xs + dx, ys + dy
        if not (fx <= cx + dx < fx + fw and fy <= cy + dy < fy + fh) or keep_out[ny, nx].any():
            continue
        if on_object is not None:
            obj, scale = on_object
            oy = np.minimum((ny * scale).astype(int), obj.shape[0] - 1)
            ox = np.minimum((nx * scale).astype(int), obj.shape[1] - 1)
            if not obj[oy, ox].all():
                continue
        moved = np.zeros((H, W), bool)
        moved[ny, nx] = True
        shifted = np.roll(donor, (dy, dx), axis=(0, 1))  # donor pixels at the new place (wrap unused)
        clone = cv2.dilate(moved.astype(np.uint8), np.ones((2 * BLEND_PAD + 1,) * 2, np.uint8))
        bx, by, bw, bh = cv2.boundingRect(clone)
        # The mask's box lands centred on ``center``: its own centre keeps every pixel in place.
        center = (bx + bw // 2, by + bh // 2)
        cloned = cv2.seamlessClone(shifted, host, clone * 255, center, cv2.NORMAL_CLONE)
        # seamlessClone solves over the mask's whole box, so it also shifts pixels far outside
        # the mask a little: keep the defect, fade to the untouched host over BLEND_PAD pixels
        away = cv2.distanceTransform((~moved).astype(np.uint8), cv2.DIST_L2, 3)
        alpha = np.clip(1 - away / (BLEND_PAD + 1), 0, 1)[..., None]
        out = np.rint(alpha * cloned + (1 - alpha) * host).astype(np.uint8)
        return out, moved
    return None


def make_composite(host_record: dict, host_image: np.ndarray, donor_record: dict, donor_image: np.ndarray,
                   donor_region: int, rng: np.random.Generator, vocab, region_config, *,
                   language: bool = True) -> Composite | None:  # fmt: skip
    """The host with one region of the donor pasted in; None when it does not fit or a region
    of the composite would mix the two images' defects. ``language=False``: only the universal
    prompt, targeting every region (what the no-language ablation reads)."""
    import cv2

    from mvtec_ref.regions import regions_from_mask
    from mvtec_ref.regions.frame import find_frame
    from mvtec_ref.regions.mask import decode_rle

    H, W = host_image.shape[:2]
    host_mask = np.zeros((H, W), bool)
    for region in host_record["regions"]:
        host_mask |= decode_rle(region["segmentation"]) > 0
    region = next(g for g in donor_record["regions"] if g["region_id"] == donor_region)
    donor_mask = decode_rle(region["segmentation"]) > 0
    if donor_image.shape[:2] != (H, W):
        donor_image = cv2.resize(donor_image, (W, H), interpolation=cv2.INTER_AREA)
        donor_mask = cv2.resize(donor_mask.astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST) > 0
    if not donor_mask.any():
        return None
    placed = paste(host_image, host_mask, donor_image, donor_mask, host_record["frame"], rng)
    if placed is None:
        return None
    image, moved = placed
    binary = (host_mask | moved).astype(np.uint8)
    frame = find_frame(image, host_record["frame"]["kind"], binary)
    regions = []
    for r in regions_from_mask(binary, image, frame, region_config):
        pixels = decode_rle(r.segmentation) > 0
        from_host, from_donor = (pixels & host_mask).any(), (pixels & moved).any()
        if from_host and from_donor:
            return None  # one region of two types: nothing could name it
        defect_type = host_record["defect_type"] if from_host else donor_record["defect_type"]
        regions.append({"ann_id": 0, **r.to_record(), "defect_type": defect_type})
    host_type = host_record["defect_type"] if host_record["regions"] else donor_record["defect_type"]
    record = {
        **{k: v for k, v in host_record.items() if k not in ("regions", "refs", "frame")},
        "id": f"{host_record['id']}+{donor_record['id']}#{donor_region}",
        "defect_type": host_type,
        "frame": frame,
        "regions": regions,
        "refs": [],
    }
    if language:
        sources = [host_record, donor_record]
        record["refs"] = composite_refs(record, image, vocab, rng, sources)
    else:
        everything = [g["region_id"] for g in regions]
        record["refs"] = [_ref("universal", everything, ["anomaly"])]
    return Composite(image, record, moved)


def composite_refs(record: dict, image: np.ndarray, vocab, rng: np.random.Generator,
                   sources: list[dict]) -> list[dict]:  # fmt: skip
    """Refs of a composite: the generator's for each type's regions and for all of them, and the
    ``sources``' sentences, each re-targeted at its denotation and kept when both judges agree."""
    from annotate import refs_for
    from annotate.pixel_judge import Vetter

    types = sorted({g["defect_type"] for g in record["regions"]})
    subs = {
        t: {**record, "defect_type": t, "regions": [g for g in record["regions"] if g["defect_type"] == t]}
        for t in types
    }
    judges = {t: Vetter(sub, image, vocab) for t, sub in subs.items()}
    judges[None] = Vetter(record, image, vocab)
    candidates: dict[str, str] = {}  # text -> kind of the ref it came from (first seen)
    for t in types:
        for ref in refs_for(subs[t], vocab, rng, accept=judges[t]):
            for s in ref["sentences"]:
                candidates.setdefault(s["text"], ref["kind"])
    for ref in refs_for(record, vocab, rng, accept=judges[None]):
        if ref["kind"] == "universal":
            for s in ref["sentences"]:
                candidates.setdefault(s["text"], ref["kind"])
    for source in sources:
        for ref in source["refs"]:
            for s in ref["sentences"]:
                candidates.setdefault(s["text"], ref["kind"])
    refs: dict[tuple, list[str]] = {}  # (target, kind) -> texts
    for text, kind in candidates.items():
        target = judged_target(text, record, subs, judges, vocab)
        if target is None:
            continue
        if not target and kind not in ("no_target", "other_type"):
            kind = "moved"  # written for a target in its own image; here it names nothing
        refs.setdefault((target, kind), []).append(text)
    return [_ref(kind, list(target), texts) for (target, kind), texts in sorted(refs.items())]


def judged_target(text: str, record: dict, subs: dict, judges: dict, vocab) -> tuple[int, ...] | None:
    """The region ids ``text`` denotes in the composite, or None when a judge objects (the parser's
    checker: ambiguous, a false claim, a wrong count or number; the pixel judge: any rule)."""
    from annotate.claims import denotation
    from annotate.faithful import OK, judge
    from annotate.parse import ParseError, parse

    try:
        claims = parse(text, record["category"], vocab, tuple(subs))
    except ParseError:
        return None
    if claims.is_empty():
        return None
    kind = claims.defect_type
    regions = subs[kind]["regions"] if kind in subs else [] if kind is not None else record["regions"]
    defect_type = kind or record["defect_type"]
    target = denotation(claims, regions, defect_type)
    if judge(claims, target, regions, defect_type).verdict != OK:
        return None
    if target and not judges[kind](text, sorted(target)):
        return None
    return tuple(sorted(target))


def _ref(kind: str, target: list[int], texts: list[str]) -> dict:
    return {
        "ref_id": 0,
        "kind": kind,
        "region_ids": target,
        "sentences": [{"sent_id": -1, "text": t, "origin": "composite"} for t in texts],
    }


class Composites:
    """Per training unit, with chance ``share``, a composite in place of the dataset's image:
    ``view(epoch, r)`` -> a ``RefSegDataset`` view holding only the composite (record 0), or None.

    Hosts are any training image (defect-free or not); donors the defect images of the same
    category, drawn uniformly (so usually of another type)."""

    def __init__(self, dataset, share: float) -> None:
        from mvtec_ref.regions import RegionConfig

        self.dataset = dataset
        self.share = share
        self.seed = dataset.seed
        self.region_config = RegionConfig.from_record(dataset.manifest.get("config", {}).get("regions", {}))
        self.vocabulary = dataset.manifest.get("config", {}).get("refs", {}).get("vocabulary", "mvtec_ad")
        self.donors: dict[str, list[int]] = {}
        for r, record in enumerate(dataset.records):
            if record["regions"]:
                self.donors.setdefault(record["category"], []).append(r)

    def composite(self, epoch: int, r: int) -> Composite | None:
        from annotate import load_vocabulary

        rng = np.random.default_rng([self.seed, epoch, r, 23])
        if rng.random() >= self.share:
            return None
        data = self.dataset
        host = data.records[r]
        donors = [d for d in self.donors.get(host["category"], []) if d != r]
        if not donors:
            return None
        host_image = None
        for d in rng.choice(len(donors), size=min(DONORS, len(donors)), replace=False):
            donor = data.records[donors[d]]
            region = donor["regions"][int(rng.integers(len(donor["regions"])))]["region_id"]
            host_image = data.image(host) if host_image is None else host_image
            made = make_composite(
                host, host_image, donor, data.image(donor), region, rng, load_vocabulary(self.vocabulary),
                self.region_config, language=not data.no_language,
            )  # fmt: skip
            if made is not None and made.record["refs"]:
                return made
        return None

    def view(self, epoch: int, r: int):
        """A shallow copy of the dataset whose one record is the composite (its image in memory,
        its own sentence items, no borrowed negatives), or None: the unit stays the image's own."""
        from baselines.dqformer.data import Item, part_pools, universal_pools

        made = self.composite(epoch, r)
        if made is None:
            return None
        view = copy.copy(self.dataset)
        view.records = [made.record]
        view.items = [
            Item(0, k, -1, s["text"]) for k, ref in enumerate(made.record["refs"]) for s in ref["sentences"]
        ]
        view.by_record = [list(range(len(view.items)))]
        view.negatives = [[]]
        view.contrast = [[]]
        view.parts = part_pools(view.records, view.items)
        view.universals = universal_pools(view.records, view.items)
        view.is_good = [False]
        view.image = lambda record, image=made.image: image
        # its own draws (sentences, flip, jitter), not those of dataset record 0
        view.seed = int(np.random.default_rng([self.seed, epoch, r, 29]).integers(2**62))
        return view
