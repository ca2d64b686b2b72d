"""Referring-segmentation metrics for any model's masks: reset / update / compute.

Rules (LAVT for oIoU/mIoU/Prec, ReLA/GRES for gIoU and the no-target scores):

- A sample is one (image, sentence) pair with a ground-truth mask (the union of the
  sentence's target regions; empty for no-target sentences) and a predicted binary mask.
  Every sentence of every evaluated image is scored.
- Scores are computed at the **original mask resolution**: a prediction of another size
  is resized to the ground truth with nearest-neighbour before scoring.
- I = |pred AND gt|, U = |pred OR gt|. Sample IoU = I / U; when the ground truth is empty,
  IoU = 1 if the prediction is empty too, else 0 (GRES).
- **mIoU**: mean sample IoU over samples with a target. **gIoU**: mean sample IoU over
  all samples. **oIoU** (= cIoU): sum I / sum U over all samples, so a false positive on
  a no-target sample adds its area to U.
- **Prec@t** for t in 0.5..0.9: share of samples with a target whose IoU >= t.
- **N-acc**: share of no-target samples predicted empty; **T-acc**: share of samples
  with a target predicted non-empty.
- Empty denominators give None, never 0 or 1 by default.

``RefSegMetrics.update(pred, gt, groups)`` also accumulates each group it is given
(e.g. ``{"size": "small", "category": "hazelnut"}``) so ``compute()`` returns the same
figures broken down by size bucket, category, defect type or expression kind.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


class _Totals:
    def __init__(self) -> None:
        self.n = self.n_target = self.n_empty = 0
        self.sum_iou_target = self.sum_iou_all = 0.0
        self.cum_i = self.cum_u = 0
        self.hits = dict.fromkeys(THRESHOLDS, 0)
        self.empty_right = self.target_right = 0

    def add(self, i: int, u: int, gt_empty: bool, pred_empty: bool) -> None:
        self.n += 1
        self.cum_i += i
        self.cum_u += u
        if gt_empty:
            self.n_empty += 1
            iou = 1.0 if pred_empty else 0.0
            self.empty_right += pred_empty
        else:
            self.n_target += 1
            iou = i / u
            self.sum_iou_target += iou
            self.target_right += not pred_empty
            for t in THRESHOLDS:
                self.hits[t] += iou >= t
        self.sum_iou_all += iou

    def compute(self) -> dict:
        def ratio(a, b):
            return None if b == 0 else a / b

        return {
            "samples": self.n,
            "samples_with_target": self.n_target,
            "samples_without_target": self.n_empty,
            "mIoU": ratio(self.sum_iou_target, self.n_target),
            "gIoU": ratio(self.sum_iou_all, self.n),
            "oIoU": ratio(self.cum_i, self.cum_u),
            **{f"Prec@{t}": ratio(self.hits[t], self.n_target) for t in THRESHOLDS},
            "N-acc": ratio(self.empty_right, self.n_empty),
            "T-acc": ratio(self.target_right, self.n_target),
        }


class RefSegMetrics:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.total = _Totals()
        self.groups: dict[str, dict[str, _Totals]] = defaultdict(lambda: defaultdict(_Totals))

    def update(self, pred: np.ndarray, gt: np.ndarray, groups: dict[str, str] | None = None) -> None:
        """Score one sample. ``pred`` and ``gt`` are ``(H, W)`` masks (bool or {0,1}/{0,255});
        ``pred`` of another size is resized to ``gt`` with nearest-neighbour first."""
        gt = np.asarray(gt) > 0
        pred = np.asarray(pred)
        if pred.shape != gt.shape:
            import cv2

            pred = cv2.resize(
                pred.astype(np.uint8), (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_NEAREST
            )
        pred = pred > 0
        i = int(np.count_nonzero(pred & gt))
        u = int(np.count_nonzero(pred | gt))
        gt_empty, pred_empty = not gt.any(), not pred.any()
        self.total.add(i, u, gt_empty, pred_empty)
        for name, value in (groups or {}).items():
            self.groups[name][str(value)].add(i, u, gt_empty, pred_empty)

    def compute(self) -> dict:
        return {
            "overall": self.total.compute(),
            "by": {
                name: {k: t.compute() for k, t in sorted(table.items())}
                for name, table in sorted(self.groups.items())
            },
        }


def target_size(area_ratio: float, cuts: tuple[float, float]) -> str:
    """Size bucket of a whole target (its total area / image area); 'none' when empty."""
    if area_ratio <= 0:
        return "none"
    if area_ratio < cuts[0]:
        return "small"
    return "medium" if area_ratio < cuts[1] else "large"


class ContrastMetrics:
    """Scores on a contrast set (``mvtec-ref probes``): does a model's mask follow the words?

    A probe is a sentence with one claim edited; its source is the sentence it was made from.
    ``update(pred, pred_source, gt, gt_source, edit)`` takes the model's ``(H, W)`` masks for
    the probe and for its source and the two targets (masks of another size are resized to
    ``gt`` with nearest-neighbour). Rules, per edit kind and overall:

    - **mIoU**: mean IoU(pred, gt) over probes whose target is not empty (``RefSegMetrics``'
      rule); **gIoU** over all probes, with empty truth + empty prediction = IoU 1.
    - **empty_answered_empty**: share of probes with an empty target whose mask is empty.
    - **moved**: the probe's target differs from its source's (pixel for pixel); **same**: it
      does not.
    - **sensitivity_moved** / **sensitivity_same**: mean of 1 - IoU(pred, pred_source) over
      moved / same probes, where two empty masks have IoU 1. A model that ignores the text gives
      the same mask for both sentences: 0. High on moved and low on same is reading the words.
    - **truth_shift_moved**: mean 1 - IoU(gt, gt_source) over moved probes, i.e. the
      sensitivity_moved of a model that is always right: the scale to read it against.
    - Empty denominators give None.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.total = _ContrastTotals()
        self.by_edit: dict[str, _ContrastTotals] = defaultdict(_ContrastTotals)

    def update(self, pred, pred_source, gt, gt_source, edit: str) -> None:
        gt, gt_source = np.asarray(gt) > 0, np.asarray(gt_source) > 0
        pred, pred_source = _fit(pred, gt.shape), _fit(pred_source, gt.shape)
        scores = (
            mask_iou(pred, gt),
            not gt.any(),
            not pred.any(),
            not np.array_equal(gt, gt_source),
            1.0 - mask_iou(pred, pred_source),
            1.0 - mask_iou(gt, gt_source),
        )
        self.total.add(*scores)
        self.by_edit[edit].add(*scores)

    def compute(self) -> dict:
        return {
            "overall": self.total.compute(),
            "by_edit": {k: t.compute() for k, t in sorted(self.by_edit.items())},
        }


class _ContrastTotals:
    def __init__(self) -> None:
        self.n = self.n_target = self.n_empty = self.empty_right = self.n_moved = 0
        self.sum_iou_target = self.sum_iou_all = 0.0
        self.shift_moved = self.shift_same = self.truth_moved = 0.0

    def add(self, iou, gt_empty, pred_empty, moved, shift, truth_shift) -> None:
        self.n += 1
        self.sum_iou_all += iou
        if gt_empty:
            self.n_empty += 1
            self.empty_right += pred_empty
        else:
            self.n_target += 1
            self.sum_iou_target += iou
        if moved:
            self.n_moved += 1
            self.shift_moved += shift
            self.truth_moved += truth_shift
        else:
            self.shift_same += shift

    def compute(self) -> dict:
        def ratio(a, b):
            return None if b == 0 else a / b

        same = self.n - self.n_moved
        return {
            "probes": self.n,
            "moved": self.n_moved,
            "same": same,
            "with_target": self.n_target,
            "without_target": self.n_empty,
            "mIoU": ratio(self.sum_iou_target, self.n_target),
            "gIoU": ratio(self.sum_iou_all, self.n),
            "empty_answered_empty": ratio(self.empty_right, self.n_empty),
            "sensitivity_moved": ratio(self.shift_moved, self.n_moved),
            "sensitivity_same": ratio(self.shift_same, same),
            "truth_shift_moved": ratio(self.truth_moved, self.n_moved),
        }


def _fit(mask, shape) -> np.ndarray:
    """``(H, W)`` bool mask at ``shape`` (nearest-neighbour when the size differs)."""
    mask = np.asarray(mask)
    if mask.shape != shape:
        import cv2

        mask = cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return mask > 0


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two bool masks; 1.0 when both are empty (GRES)."""
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union
