"""Files shipped inside the package or found on disk, always checked against a SHA-256."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path


class DataFileError(RuntimeError):
    """A data file is missing, has the wrong checksum, or cannot be parsed. The message names it."""


# name -> SHA-256 of every file under lit_rev/data/files/ (also the public sources' hashes).
SHIPPED = {
    "mnist_5k.csv.gz": "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
}


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verified_path(path: str | Path, expected_sha256: str | None) -> Path:
    """Return ``path`` after checking that it exists and, if given, that its SHA-256 matches."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"data file not found: {path}")
    if expected_sha256 is not None:
        actual = sha256(path)
        if actual != expected_sha256:
            raise DataFileError(
                f"checksum mismatch for {path}: expected SHA-256 {expected_sha256}, got {actual}. "
                "The file is corrupt or not the published version; delete it and fetch it again."
            )
    return path


def shipped_file(name: str) -> Path:
    """Path of a file shipped in ``lit_rev/data/files``, verified against :data:`SHIPPED`."""
    if name not in SHIPPED:
        raise DataFileError(f"no shipped data file named {name!r}; known: {sorted(SHIPPED)}")
    path = Path(str(resources.files("lit_rev.data") / "files" / name))
    return verified_path(path, SHIPPED[name])
