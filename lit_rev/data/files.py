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
    # gzip copies (mtime 0) of the raw tabular files; their decompressed bytes are checked
    # against the public sources' hashes by shipped_gzip (see lit_rev/data/tabular_schemas.py).
    "adult.data.gz": "171e93e0be014947c678f8e0fd17485ec99e8c273d1a7a0b506bb9139e95800b",
    "adult.test.gz": "88304f2ff4ca392efdb76452aa377e96dde27622ff90070ed0913c464bb7aa32",
    "german.data.gz": "a4cc977b7fc38d60827f2f881d8377954ece4d7ade5d026e827307bb63395df2",
    "compas-scores-two-years.csv.gz": (
        "62861de08baa2abef92d528cac474dc65d773032c9120f05fedb8a508de99dc0"
    ),
}


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of the file at ``path``, read in 1 MiB chunks so large files fit in memory."""
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


def shipped_gzip(name: str, content_sha256: str) -> bytes:
    """Decompressed bytes of the shipped gzip file ``name``, checked twice.

    The ``.gz`` is checked against :data:`SHIPPED`, and the decompressed bytes against
    ``content_sha256`` (the public source's hash).
    """
    import gzip

    path = shipped_file(name)
    try:
        data = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as err:
        raise DataFileError(f"cannot decompress {path}: {err}") from err
    actual = hashlib.sha256(data).hexdigest()
    if actual != content_sha256:
        raise DataFileError(
            f"checksum mismatch for the contents of {path}: "
            f"expected SHA-256 {content_sha256}, got {actual}"
        )
    return data
