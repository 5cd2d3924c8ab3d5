"""Safe image access: paths that stay inside the catalog, pixel limits checked before decoding.

Every image in a catalog comes from user data, so nothing here trusts it: a path may try to
escape the catalog (`../x.png`), a file may be missing, truncated, not an image at all, or a
decompression bomb (a tiny file that declares a gigantic canvas). Each case raises an
`ImageError` whose `reason` is one of the fixed strings below (they end up in rejects.jsonl).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from pinclip.errors import PinclipError

# Pillow refuses images over 2 * Image.MAX_IMAGE_PIXELS (~179 Mpx) itself; ours is stricter.
DEFAULT_MAX_PIXELS = 64_000_000

MISSING_IMAGE_PATH = "missing image path"
IMAGE_PATH_ESCAPES = "image path escapes catalog"
MISSING_IMAGE = "missing image file"
UNDECODABLE_IMAGE = "undecodable image"
TRUNCATED_IMAGE = "truncated or corrupt image"
IMAGE_TOO_LARGE = "image over pixel limit"


class ImageError(PinclipError):
    """An image that cannot be used; `reason` is a fixed string, the message says what to do."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def resolve_image_path(root: Path | str, image: object, *, allow_absolute: bool = False) -> Path:
    """Join `image` onto `root` without touching the file system; refuse paths that leave root.

    The check is lexical (`..` and absolute paths), so a rejected path is never opened, and
    symlinks a catalog owner placed inside the catalog on purpose keep working.
    Absolute paths inside root are fine; outside root only with `allow_absolute`.
    """
    return Path(resolve_image_str(os.path.abspath(root), image, allow_absolute=allow_absolute))


def resolve_image_str(root: str, image: object, *, allow_absolute: bool = False) -> str:
    """`resolve_image_path` on plain strings (`root` already absolute): fast for 10^6 rows."""
    if not isinstance(image, str) or not image.strip():
        raise ImageError(
            MISSING_IMAGE_PATH, f"image is {image!r}; give a path relative to the catalog"
        )
    path = os.path.normpath(os.path.join(root, image))  # an absolute `image` replaces root
    if path.startswith(root.rstrip(os.sep) + os.sep) or (allow_absolute and os.path.isabs(image)):
        return path
    hint = " (absolute paths need --allow-absolute-paths)" if os.path.isabs(image) else ""
    raise ImageError(IMAGE_PATH_ESCAPES, f"{image!r} points outside {root}{hint}")


def _open(path: Path, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and enforce the pixel limit before any pixel is decoded."""
    if not path.is_file():
        raise ImageError(
            MISSING_IMAGE, f"{path} does not exist; fix the image path or add the file"
        )
    try:
        img = Image.open(path)
    except Image.DecompressionBombError as e:
        raise ImageError(IMAGE_TOO_LARGE, f"{path}: {e}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(UNDECODABLE_IMAGE, f"{path}: not an image Pillow can read ({e})") from None
    width, height = img.size
    if width * height > max_pixels:
        img.close()
        raise ImageError(
            IMAGE_TOO_LARGE,
            f"{path}: {width}x{height} = {width * height:,} pixels > limit {max_pixels:,}; "
            "resize the image or raise --max-pixels",
        )
    return img


def _decode(img: Image.Image, path: Path) -> None:
    try:
        img.load()
    except Exception as e:  # Pillow raises many types for broken data; all mean the same here
        img.close()
        raise ImageError(TRUNCATED_IMAGE, f"{path}: pixel data cannot be decoded ({e})") from None


def check_image(path: Path | str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Fully decode one image to prove it is usable, then drop the pixels (bounded memory)."""
    img = _open(Path(path), max_pixels)
    with img:
        _decode(img, Path(path))


def load_image(path: Path | str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Load an image as RGB: EXIF rotation applied, transparency composited onto white."""
    path = Path(path)
    img = _open(path, max_pixels)
    with img:
        _decode(img, path)
        img = ImageOps.exif_transpose(img)
        if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
            rgba = img.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB")
        return img.convert("RGB")


@contextmanager
def progress_bar(enabled: bool, total: int, description: str) -> Iterator[Callable[[int], None]]:
    """A Rich bar (when `enabled`) as a function that advances it by n."""
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import Progress

    with Progress(transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


def check_files(
    paths: Sequence[Path | str],
    check: Callable[[Path | str], object],
    *,
    workers: int | None = None,
    progress: bool = False,
    description: str = "checking images",
    chunk: int = 64,
    advance: Callable[[int], None] | None = None,
) -> dict[int, ImageError]:
    """Run `check` on every path in a thread pool; return {index: error} for the failures.

    Pillow releases the GIL while decoding, so threads scale. Work is submitted in chunks
    with a bounded window, so a million paths never become a million pending futures.
    `advance` moves a caller's progress bar instead of a bar of its own.
    """
    workers = workers or os.cpu_count() or 1
    failures: dict[int, ImageError] = {}

    def run(start: int) -> dict[int, ImageError]:
        out = {}
        for i in range(start, min(start + chunk, len(paths))):
            try:
                check(paths[i])
            except ImageError as e:
                out[i] = e
        return out

    with (
        ThreadPoolExecutor(workers) as pool,
        (
            nullcontext(advance) if advance else progress_bar(progress, len(paths), description)
        ) as advance,
    ):
        pending: deque = deque()
        for start in range(0, len(paths), chunk):
            pending.append((pool.submit(run, start), min(chunk, len(paths) - start)))
            while len(pending) >= 4 * workers:
                future, n = pending.popleft()
                failures.update(future.result())
                advance(n)
        for future, n in pending:
            failures.update(future.result())
            advance(n)
    return failures
