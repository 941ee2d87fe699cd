"""Images embedded in the report as ``data:`` URIs: QC images given by the pipeline and figures
an analysis wrote to files (the voxel-wise contrasts)."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence


@dataclass
class QcImage:
    title: str
    data_uri: str | None
    path: str
    problem: str | None = None


_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"))


def image_data_uri(path: str | os.PathLike) -> str:
    """A PNG, JPEG, GIF or SVG file as a ``data:`` URI; ValueError when it is none of them."""
    data = Path(path).read_bytes()
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            break
    else:
        head = data[:512].lstrip().lower()
        if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:4096].lower()):
            mime = "image/svg+xml"
        else:
            raise ValueError("not a PNG, JPEG, GIF or SVG image")
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _qc_title(path: str | os.PathLike) -> str:
    """A readable title from a QC file name: ``sub-01_qc_atlas.png`` -> ``sub-01 qc atlas``."""
    name = Path(path).name
    for suffix in (".png", ".jpg", ".jpeg", ".gif", ".svg"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name.replace("_", " ")


def qc_images(qc_images: Sequence[tuple[str, str | os.PathLike] | str | os.PathLike]) -> list[QcImage]:
    images = []
    for item in qc_images or ():
        if isinstance(item, (str, os.PathLike)):
            title, path = _qc_title(item), item
        else:
            title, path = item
        try:
            images.append(QcImage(str(title), image_data_uri(path), os.fspath(path)))
        except FileNotFoundError:
            images.append(QcImage(str(title), None, os.fspath(path), "file not found"))
        except (OSError, ValueError) as error:
            images.append(QcImage(str(title), None, os.fspath(path), str(error)))
    return images
