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
