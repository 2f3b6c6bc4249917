"""The one record type every reader returns, and the error every reader raises.

Coordinates: 0-based pixels, where the centre of pixel column ``i`` is at ``x = i`` (the 300-W ``.pts`` convention
after subtracting 1). Normalised crop coordinates used by models and the export contract have their origin at the
crop's top-left *edge*: ``u = (x_crop + 0.5) / width``. Conversions live in ``tfalign.data.geometry``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np


class DataError(ValueError):
    """Bad input data. The message names the file (and line, where known) and what was wrong."""

    def __init__(self, source: str, message: str, line: Optional[int] = None):
        self.source = str(source)
        self.line = line
        self.reason = message
        where = f"{self.source}:{line}" if line is not None else self.source
        super().__init__(f"{where}: {message}")


@dataclasses.dataclass
class FaceRecord:
    """One annotated face.

    Attributes:
        image_path: path of the image on disk ("" for in-memory images such as synthetic faces).
        points: float32 array [N, 2] of (x, y), 0-based pixels.
        scheme: name of the landmark scheme in ``tfalign.schemes`` (e.g. ``"300w_68"``).
        visibility: optional float32 [N] (1 visible, 0 occluded); None when the format has none.
        box: optional face box (x, y, w, h) in pixels as given by the dataset; None means "use the points' box".
        attributes: format-specific extras (WFLW pose/expression flags, MTFL gender/smile, AFLW pose angles in
            radians as ``pose_pyr`` = (pitch, yaw, roll), ...).
        source: where the record came from, for error messages (``file`` or ``file:line``).
        image: optional uint8 HxWx3 RGB array for in-memory images (synthetic faces).
    """

    image_path: str
    points: np.ndarray
    scheme: str
    visibility: Optional[np.ndarray] = None
    box: Optional[tuple] = None
    attributes: dict = dataclasses.field(default_factory=dict)
    source: str = ""
    image: Optional[np.ndarray] = None

    def __post_init__(self):
        self.points = np.asarray(self.points, dtype=np.float32)
        if self.points.ndim != 2 or self.points.shape[1] != 2:
            raise DataError(self.source or self.image_path, f"points must have shape [N, 2], got {self.points.shape}")
        if not np.all(np.isfinite(self.points)):
            raise DataError(self.source or self.image_path, "points contain NaN or infinite values")
        if self.visibility is not None:
            self.visibility = np.asarray(self.visibility, dtype=np.float32)

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])

    def points_box(self) -> tuple:
        """Tight (x, y, w, h) box of the points: the box the export contract's crop is defined on."""
        lo = self.points.min(axis=0)
        hi = self.points.max(axis=0)
        return (float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1]))

    def to_json(self) -> dict[str, Any]:
        return {
            "image_path": self.image_path,
            "scheme": self.scheme,
            "points": self.points.tolist(),
            "box": list(self.box) if self.box is not None else None,
            "source": self.source,
        }
