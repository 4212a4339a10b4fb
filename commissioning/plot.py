"""`hemowatch site report --plot`: the profile's ROC curve and calibration, from its out-of-fold predictions."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SIZE = 480  # each panel is a square this many pixels wide
MARGIN = 70
BINS = 10  # calibration: cases grouped by predicted probability in tenths
INK, MUTED, GRID, CURVE = (33, 33, 33), (110, 110, 110), (225, 225, 225), (25, 118, 210)


def roc_points(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every threshold, from (0, 0) to (1, 1)."""
    order = np.argsort(-probabilities, kind="stable")
    hits = np.asarray(labels, dtype=bool)[order]
    tpr = np.concatenate([[0.0], np.cumsum(hits) / max(hits.sum(), 1)])
    fpr = np.concatenate([[0.0], np.cumsum(~hits) / max((~hits).sum(), 1)])
    return fpr, tpr


def calibration_points(probabilities: np.ndarray, labels: np.ndarray) -> list[tuple[float, float, int]]:
    """(mean predicted probability, observed rate, cases) for each tenth that holds cases."""
    bins = np.minimum((probabilities * BINS).astype(int), BINS - 1)
    labels = np.asarray(labels, dtype=float)
    return [(float(probabilities[bins == b].mean()), float(labels[bins == b].mean()), int((bins == b).sum()))
            for b in range(BINS) if (bins == b).any()]


def report_png(probabilities: np.ndarray, labels: np.ndarray, title: str) -> bytes:
    """Two panels side by side: ROC (with the AUC in its title) and calibration (dot area follows the cases)."""
    image = Image.new("RGB", (2 * (SIZE + MARGIN) + MARGIN, SIZE + 2 * MARGIN + 30), "white")
    draw = ImageDraw.Draw(image)
    font, small = ImageFont.load_default(size=20), ImageFont.load_default(size=16)
    draw.text((MARGIN, 12), title, fill=INK, font=font)
    fpr, tpr = roc_points(probabilities, labels)
    auc = float(np.trapezoid(tpr, fpr))
    panels = [
        (MARGIN, f"ROC (AUC {auc:.3f})", "false positive rate", "sensitivity"),
        (2 * MARGIN + SIZE, "Calibration", "predicted probability", "observed rate"),
    ]
    top = MARGIN + 30
    for left, heading, x_label, y_label in panels:
        for tick in range(0, 11, 2):
            x, y = left + SIZE * tick / 10, top + SIZE * (1 - tick / 10)
            draw.line([(x, top), (x, top + SIZE)], fill=GRID)
            draw.line([(left, y), (left + SIZE, y)], fill=GRID)
            draw.text((x - 8, top + SIZE + 6), f"{tick / 10:.1f}", fill=MUTED, font=small)
            draw.text((left - 36, y - 8), f"{tick / 10:.1f}", fill=MUTED, font=small)
        draw.rectangle([left, top, left + SIZE, top + SIZE], outline=INK)
        draw.line([(left, top + SIZE), (left + SIZE, top)], fill=MUTED)  # chance, or perfect calibration
        draw.text((left, top - 26), heading, fill=INK, font=font)
        draw.text((left + SIZE / 2 - 70, top + SIZE + 28), x_label, fill=MUTED, font=small)
        draw.text((left + 6, top + 6), y_label, fill=MUTED, font=small)

    def at(left: int, x: float, y: float) -> tuple[float, float]:
        return left + SIZE * x, top + SIZE * (1 - y)

    draw.line([at(MARGIN, x, y) for x, y in zip(fpr, tpr)], fill=CURVE, width=4)
    left = 2 * MARGIN + SIZE
    for predicted, observed, count in calibration_points(probabilities, labels):
        x, y = at(left, predicted, observed)
        radius = 4 + 12 * np.sqrt(count / len(labels))
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=CURVE)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
