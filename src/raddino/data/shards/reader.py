"""Random access to the images of tar shards: an index of member offsets, one ``pread`` per image.

Why not ``webdataset.WebDataset``: it streams each tar file front to back through a shuffle buffer, so the
order of a pass depends on buffer state that no checkpoint holds, and a resumed run would have to replay
shards from their start to stand where it stopped. Reading by offset lets the pre-training sampler keep its
one rule (the image at stream position ``p`` is fixed by the seed), so batches equal the folder path's for
the same seed and a resume needs only the iteration. With the shard-order rule
(:class:`~raddino.pretrain.sampler.StreamSampler` ``blocks``) the reads of a pass also stay within one
shard at a time, as streaming readers do.

Shards without a raddino index (written by ``webdataset.ShardWriter`` or ``tar``) are scanned once with
``tarfile``; any member ending in ``.png``, ``.jpg``/``.jpeg`` or ``.tif``/``.tiff`` is an image.
"""

from __future__ import annotations

import glob
import io
import json
import os
import tarfile
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from raddino.data.shards.layout import WIDS_INDEX_NAME, ShardIndex, index_path
from raddino.io.errors import ImageReadError
from raddino.io.record import scale_to_unit

IMAGE_MEMBER_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_OPEN_SHARDS = 64  # file handles kept open per process (shard folders can hold thousands of files)
_GREY_16 = ("I;16", "I;16L", "I;16B", "I;16N")


class ShardError(ValueError):
    """A shard folder, pattern or file cannot be read; the message names it and says what to do."""


def shard_files(spec: str | Path) -> list[Path]:
    """The tar files a ``train.shards`` value names.

    Args:
        spec: A folder (the shards its ``shardindex.json`` lists, else every ``*.tar`` in it, sorted), one
            ``.tar`` file, or a glob pattern (``/data/cxr/shard-00*.tar``).

    Raises:
        ShardError: nothing matches.
    """
    text = str(spec)
    path = Path(text)
    if path.is_dir():
        listing = path / WIDS_INDEX_NAME
        if listing.is_file():
            try:
                entries = json.loads(listing.read_text(encoding="utf-8"))["shardlist"]
                files = [path / str(entry["url"]) for entry in entries]
            except (ValueError, KeyError, TypeError) as error:
                raise ShardError(f"{listing}: not a shard list ({type(error).__name__}: {error})") from error
        else:
            files = sorted(path.glob("*.tar"))
    elif glob.has_magic(text):
        files = sorted(Path(match) for match in glob.glob(text))
    elif path.is_file():
        files = [path]
    else:
        raise ShardError(f"{text}: no such shard folder or file")
    if not files:
        raise ShardError(f"{text}: no .tar shards found")
    return files


def _scan_tar(path: Path) -> ShardIndex:
    """The image members of a shard without an index file, read from its tar headers."""
    size = path.stat().st_size
    keys: list[str] = []
    offsets: list[int] = []
    sizes: list[int] = []
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if member.isfile() and member.name.lower().endswith(IMAGE_MEMBER_EXTENSIONS):
                    keys.append(member.name.rsplit("/", 1)[-1].split(".", 1)[0])
                    offsets.append(member.offset_data)
                    sizes.append(member.size)
            end = tar.offset
    except (tarfile.TarError, OSError, EOFError) as error:
        raise ShardError(f"{path}: not a complete tar file ({error}); write it again") from error
    # tarfile stops quietly at a member boundary: a complete archive ends with zero blocks there.
    with open(path, "rb") as handle:
        handle.seek(end)
        marker = handle.read(tarfile.BLOCKSIZE)
    if (
        len(marker) < tarfile.BLOCKSIZE
        or marker.strip(b"\0")
        or any(o + s > size for o, s in zip(offsets, sizes, strict=True))
    ):
        raise ShardError(
            f"{path}: truncated tar file (no end-of-archive blocks after byte {end}); write it again"
        )
    return ShardIndex(size, 0, 0, keys, offsets, sizes)


def load_shard_index(path: Path) -> ShardIndex:
    """A shard's index: its raddino index file, checked against the tar file's size, or a header scan.

    Raises:
        ShardError: the file is missing, truncated, or not a tar file; names it.
    """
    try:
        size = path.stat().st_size
    except OSError as error:
        raise ShardError(f"{path}: cannot read the shard ({error.strerror or error})") from error
    sidecar = index_path(path)
    if not sidecar.is_file():
        return _scan_tar(path)
    try:
        index = ShardIndex.from_json(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ShardError(f"{sidecar}: unreadable shard index ({error}); rerun raddino shard") from error
    if index.tar_bytes != size:
        raise ShardError(
            f"{path}: truncated or changed: {size} bytes where its index says {index.tar_bytes}; "
            "rerun raddino shard on its folder to write it again"
        )
    return index


def decode_image(payload: bytes, label: str) -> np.ndarray:
    """A stored PNG/JPEG/TIFF as float32 grey pixels in [0, 1], as :func:`raddino.io.images.read_image`
    reads the same file (8/16-bit grey divided by 255/65535, colour through Pillow's luma).

    Raises:
        ImageReadError: undecodable or uniform; names ``label`` (``shard.tar:KEY.png``).
    """
    try:
        with Image.open(io.BytesIO(payload)) as image:
            image.load()
            if image.mode == "L":
                values, bits = np.asarray(image), 8
            elif image.mode in _GREY_16 or image.mode == "I":
                values, bits = np.asarray(image).astype(np.uint16), 16
            else:
                values, bits = np.asarray(image.convert("L")), 8
    except Exception as error:  # truncated streams raise OSError, SyntaxError, zlib errors...
        raise ImageReadError(label, f"corrupt image in shard: {type(error).__name__}: {error}") from error
    pixels, _, _ = scale_to_unit(values, path=label, scaling="dtype", bits=bits)  # (H, W) float32
    return pixels


class ShardImages:
    """Every image of a set of shards, by dataset index (shard order, then tar order).

    Holds only numpy arrays (no per-image Python objects), so DataLoader workers share it cheaply. File
    handles are opened lazily per process and read with ``os.pread`` (no shared seek position).

    Args:
        files: The tar files, in order.
        indexes: Their indexes (:func:`load_shard_index`).
    """

    def __init__(self, files: Sequence[Path], indexes: Sequence[ShardIndex]) -> None:
        self.files = [str(path) for path in files]
        self.lengths = np.array([len(index.keys) for index in indexes], dtype=np.int64)  # (S,)
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)  # (S,)
        self.shard = np.repeat(np.arange(len(files), dtype=np.int32), self.lengths)  # (N,)
        self.offsets = np.array([o for index in indexes for o in index.offsets], dtype=np.int64)  # (N,)
        self.sizes = np.array([s for index in indexes for s in index.sizes], dtype=np.int64)  # (N,)
        self.keys = np.array([k for index in indexes for k in index.keys], dtype=np.str_)  # (N,)
        self._handles: OrderedDict[int, int] = OrderedDict()
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.offsets)

    def locate(self, index: int) -> tuple[str, int]:
        """``(shard file name, position of the image within the shard)`` of a dataset index."""
        shard = int(self.shard[index])
        return Path(self.files[shard]).name, int(index - self.starts[shard])

    def name(self, index: int) -> str:
        """``shard.tar:KEY.png``: how errors name an image."""
        return f"{self.files[int(self.shard[index])]}:{self.keys[index]}"

    def _handle(self, shard: int) -> int:
        if os.getpid() != self._pid:  # a forked worker: the parent's descriptors stay the parent's
            self._handles, self._pid = OrderedDict(), os.getpid()
        if shard in self._handles:
            self._handles.move_to_end(shard)
            return self._handles[shard]
        if len(self._handles) >= _OPEN_SHARDS:
            os.close(self._handles.popitem(last=False)[1])
        self._handles[shard] = os.open(self.files[shard], os.O_RDONLY)
        return self._handles[shard]

    def read_bytes(self, index: int) -> bytes:
        """The stored bytes of one image.

        Raises:
            ImageReadError: the shard cannot be opened or ends before the image does.
        """
        shard, size = int(self.shard[index]), int(self.sizes[index])
        try:
            payload = os.pread(self._handle(shard), size, int(self.offsets[index]))
        except OSError as error:
            raise ImageReadError(
                self.name(index), f"cannot read the shard: {error.strerror or error}"
            ) from error
        if len(payload) != size:
            raise ImageReadError(self.name(index), f"shard ends {size - len(payload)} bytes into this image")
        return payload

    def pixels(self, index: int) -> np.ndarray:
        """One image as (H, W) float32 in [0, 1].

        Raises:
            ImageReadError: unreadable or undecodable; names the shard and key.
        """
        return decode_image(self.read_bytes(index), self.name(index))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_handles"] = OrderedDict()  # descriptors do not travel to spawned workers
        return state


def open_shards(spec: str | Path) -> ShardImages:
    """The images of the shards ``spec`` names (see :func:`shard_files`).

    Raises:
        ShardError: no shards, or one of them truncated or unreadable; one line naming the file.
    """
    files = shard_files(spec)
    images = ShardImages(files, [load_shard_index(path) for path in files])
    if len(images) == 0:
        raise ShardError(f"{spec}: the shards hold no images")
    return images
