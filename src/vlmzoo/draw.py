"""Draw canonical boxes and points onto a copy of an image (``vlmzoo ground/point/detect --draw``)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from vlmzoo.tasks import Box, Point

COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6")


def draw_boxes(image: Image.Image, boxes: list[Box] | tuple[Box, ...],
               points: list[Point] | tuple[Point, ...] = ()) -> Image.Image:
    """A copy of ``image`` with each box outlined and labelled and each point marked (a ringed
    dot); the original is left alone."""
    out = image.convert("RGB").copy()
    pen = ImageDraw.Draw(out)
    width = max(2, round(min(out.size) / 200))
    radius = 2 * width + 2
    for i, p in enumerate(points):
        colour = COLOURS[i % len(COLOURS)]
        pen.ellipse((p.x - radius, p.y - radius, p.x + radius, p.y + radius), fill=colour, outline="white",
                    width=max(1, width // 2))
    for i, box in enumerate(boxes):
        colour = COLOURS[i % len(COLOURS)]
        pen.rectangle((box.x0, box.y0, box.x1, box.y1), outline=colour, width=width)
        if box.label:
            left, top, right, bottom = pen.textbbox((box.x0, box.y0), box.label)
            y = max(0, box.y0 - (bottom - top) - 2)
            pen.rectangle((box.x0, y, box.x0 + (right - left) + 4, y + (bottom - top) + 2), fill=colour)
            pen.text((box.x0 + 2, y), box.label, fill="white")
    return out


def save_drawn(image: Image.Image, boxes, path: str | Path, points=()) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    draw_boxes(image, boxes, points).save(path)
    return path
