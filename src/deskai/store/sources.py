"""Where a pulled model comes from: a pull reference resolved to one GGUF file to download.

Two kinds of reference:

``hf.co/USER/REPO[:QUANT]``
    A Hugging Face repository of GGUF files, resolved through ``huggingface_hub`` (which honours
    ``HF_ENDPOINT``). The ``.gguf`` file whose name carries ``QUANT`` (case-insensitive) is
    chosen; without one, the only GGUF in the repo, else the ``Q4_K_M`` one. Its sha256 is the
    one the Hub publishes in the file's LFS metadata.

``https://host/path/model.gguf[#sha256=HEX]``
    A direct URL. The sha256 comes from the ``#sha256=`` fragment (fragments are never sent to
    the server), the caller's ``sha256`` argument, or a ``.sha256`` sidecar beside the file;
    with none of these it is computed while downloading and reported. Plain ``http://`` is
    accepted for loopback hosts, or when the caller says ``insecure``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import httpx

from deskai.errors import DownloadError, InvalidInputError, SourceNotFoundError
from deskai.store.names import parse_model_name

HF_PREFIXES = ("hf.co/", "huggingface.co/")
DEFAULT_QUANT = "Q4_K_M"
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
_SPLIT_GGUF = re.compile(r"-\d{5}-of-\d{5}\.gguf$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class PullRef:
    """A parsed pull reference, before anything is fetched."""

    text: str
    name: str                   # the store name the model will be listed as
    repo: str | None = None     # USER/REPO for a Hugging Face reference
    quant: str | None = None
    url: str | None = None      # for a direct URL (fragment removed)
    sha256: str | None = None   # from a ``#sha256=`` fragment or the caller


@dataclass(frozen=True, slots=True)
class Source:
    """One file to download, and what the source says about it."""

    url: str
    filename: str
    name: str
    sha256: str | None      # lowercase hex, None when the source publishes none
    size: int | None


def parse_pull_ref(text: str, *, name: str | None = None, sha256: str | None = None,
                   insecure: bool = False) -> PullRef:
    """Validate a reference and decide the store name; nothing is fetched."""
    text = (text or "").strip()
    checked_sha = _check_sha256(sha256) if sha256 else None
    if text.lower().startswith(HF_PREFIXES):
        return _parse_hf_ref(text, name=name, sha256=checked_sha)
    if text.lower().startswith(("https://", "http://")):
        return _parse_url_ref(text, name=name, sha256=checked_sha, insecure=insecure)
    raise InvalidInputError(
        f"cannot pull {text!r}: give hf.co/USER/REPO[:QUANT] or an https:// URL of a .gguf "
        "file (deskai has no model registry of its own)", param="model")


def _parse_hf_ref(text: str, *, name: str | None, sha256: str | None) -> PullRef:
    rest = text.split("/", 1)[1]
    repo, _, quant = rest.partition(":")
    if not _REPO.fullmatch(repo):
        raise InvalidInputError(f"invalid Hugging Face reference {text!r}: expected "
                                "hf.co/USER/REPO[:QUANT]", param="model")
    store_name = name or f"hf.co/{repo}:{quant or 'latest'}"
    return PullRef(text, str(parse_model_name(store_name)), repo=repo, quant=quant or None,
                   sha256=sha256)


def _parse_url_ref(text: str, *, name: str | None, sha256: str | None,
                   insecure: bool) -> PullRef:
    url, _, fragment = text.partition("#")
    parts = urlsplit(url)
    if not parts.hostname:
        raise InvalidInputError(f"invalid URL {text!r}", param="model")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK and not insecure:
        raise InvalidInputError(f"refusing plain http for {parts.hostname}: use https, or "
                                "pass insecure to allow it", param="model")
    if fragment:
        key, _, value = fragment.replace(":", "=", 1).partition("=")
        if key.lower() != "sha256":
            raise InvalidInputError(f"unknown URL fragment {fragment!r}; only "
                                    "#sha256=HEX is understood", param="model")
        hinted = _check_sha256(value)
        if sha256 and sha256 != hinted:
            raise InvalidInputError("the URL's #sha256 and the sha256 given disagree",
                                    param="sha256")
        sha256 = hinted
    filename = PurePosixPath(parts.path).name
    store_name = name or _name_from_filename(filename)
    return PullRef(text, str(parse_model_name(store_name)), url=url, sha256=sha256)


def _name_from_filename(filename: str) -> str:
    stem = re.sub(r"\.gguf$", "", filename, flags=re.IGNORECASE)
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip(".-_")
    if not cleaned:
        raise InvalidInputError(f"cannot derive a model name from {filename!r}; give a name",
                                param="model")
    return cleaned.lower()


def _check_sha256(value: str) -> str:
    value = value.strip().removeprefix("sha256:")
    if not _HEX64.fullmatch(value):
        raise InvalidInputError(f"not a sha256 digest: {value!r} (64 hex digits expected)",
                                param="sha256")
    return value.lower()


# -- resolution (network) ----------------------------------------------------------------------

def resolve(ref: PullRef, client: httpx.Client) -> Source:
    """Turn a reference into the one file to download, with its published sha256 if any."""
    if ref.repo is not None:
        return _resolve_hf(ref)
    assert ref.url is not None
    sha256 = ref.sha256 or _sidecar_sha256(ref.url, client)
    filename = PurePosixPath(urlsplit(ref.url).path).name or "model.gguf"
    return Source(ref.url, filename, ref.name, sha256, None)


def _resolve_hf(ref: PullRef) -> Source:
    from huggingface_hub import HfApi, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    assert ref.repo is not None
    endpoint = hf_endpoint()
    try:
        info = HfApi(endpoint=endpoint, token=False).model_info(ref.repo, files_metadata=True)
    except RepositoryNotFoundError:
        raise SourceNotFoundError(f"no Hugging Face repository {ref.repo!r}",
                                  param="model") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status == 404:
            raise SourceNotFoundError(f"no Hugging Face repository {ref.repo!r}",
                                      param="model") from None
        raise DownloadError(f"the Hugging Face API refused {ref.repo!r}: {exc}") from None
    except Exception as exc:  # connection errors of huggingface_hub's own HTTP stack
        raise DownloadError(f"cannot reach the Hugging Face API: {exc}") from None
    ggufs = [s for s in info.siblings or [] if s.rfilename.lower().endswith(".gguf")
             and "mmproj" not in s.rfilename.lower()]
    chosen = pick_gguf([s.rfilename for s in ggufs], ref.quant, ref.repo)
    sibling = next(s for s in ggufs if s.rfilename == chosen)
    sha256 = sibling.lfs.sha256 if sibling.lfs else None
    size = sibling.lfs.size if sibling.lfs else sibling.size
    url = hf_hub_url(ref.repo, chosen, revision=info.sha or "main", endpoint=endpoint)
    return Source(url, chosen, ref.name, ref.sha256 or sha256, size)


def hf_endpoint() -> str | None:
    """``HF_ENDPOINT`` read now, not when ``huggingface_hub`` was imported, so a server that
    started before the variable changed (or a test that sets it) still sees it."""
    return os.environ.get("HF_ENDPOINT", "").strip().rstrip("/") or None


def pick_gguf(filenames: list[str], quant: str | None, repo: str) -> str:
    """The file a quantization names; the only one, or Q4_K_M, when none is named."""
    if not filenames:
        raise SourceNotFoundError(f"{repo} has no .gguf files", param="model")
    wanted = quant or (None if len(filenames) == 1 else DEFAULT_QUANT)
    if wanted is None:
        matches = filenames
    else:
        token = re.compile(rf"(^|[-_.]){re.escape(wanted.lower())}($|[-_.])")
        matches = [f for f in filenames if token.search(PurePosixPath(f).name.lower()
                                                        .removesuffix(".gguf"))]
    if not matches:
        available = ", ".join(sorted(PurePosixPath(f).name for f in filenames))
        raise SourceNotFoundError(f"{repo} has no {wanted} GGUF; it has: {available}",
                                  param="model")
    if any(_SPLIT_GGUF.search(f) for f in matches):
        raise InvalidInputError(f"{matches[0]} is split into several files, which deskai "
                                "cannot pull yet", param="model")
    if len(matches) > 1:
        raise InvalidInputError(f"{wanted} matches several files in {repo}: "
                                f"{', '.join(matches)}; name the quantization exactly",
                                param="model")
    return matches[0]


def _sidecar_sha256(url: str, client: httpx.Client) -> str | None:
    """``URL.sha256`` ("HEX" or "HEX  filename", as sha256sum writes), if the server has one."""
    try:
        response = client.get(url + ".sha256")
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    first = response.text.strip().split()
    return first[0].lower() if first and _HEX64.fullmatch(first[0]) else None
