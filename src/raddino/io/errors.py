"""The one error every image reader raises: it names the file and says why it could not be read."""

from __future__ import annotations

from pathlib import Path


class ImageReadError(ValueError):
    """An image could not be turned into pixels.

    Long runs catch this per file, write ``path`` and ``reason`` to their errors CSV and go on.

    Args:
        path: The file that failed.
        reason: Why, in words a user can act on (``"uniform image (every pixel is 0)"``).
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type[ImageReadError], tuple[str, str]]:
        # Worker processes send failures back pickled; the default reduce would call __init__ with the
        # formatted message only and lose the path/reason split.
        return (type(self), (self.path, self.reason))
