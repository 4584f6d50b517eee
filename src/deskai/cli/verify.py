"""The ``verify`` verb: re-hash the store's blobs and name the models a bad one breaks."""

from __future__ import annotations

import typer

from deskai.cli._app import app, byte_progress, console
from deskai.store import BlobUse, Store

EXIT_CORRUPT = 1


@app.command("verify")
def verify_models(
    name: str | None = typer.Argument(None, help="A model in the store (default: every model)."),
) -> None:
    """Re-hash the blobs of NAME (or of every model); exit 1 if any is corrupt."""
    store = Store()
    uses = store.blob_uses(name)
    bad = _verify_all(store, uses)
    for use, problem in bad:
        console.print(f"corrupt: blob {use.digest[:19]} {problem}; used by "
                      f"{', '.join(use.models)}", markup=False, highlight=False, soft_wrap=True)
    if bad:
        console.print(f"{len(bad)} of {len(uses)} blob(s) corrupt: re-import or re-pull the "
                      "models using them to repair them", markup=False, highlight=False,
                      soft_wrap=True)
        raise typer.Exit(EXIT_CORRUPT)
    console.print(f"{len(uses)} blob(s) verified, all intact" if uses
                  else "no models to verify", highlight=False)


def _verify_all(store: Store, uses: tuple[BlobUse, ...]) -> list[tuple[BlobUse, str]]:
    """Each blob's problem, re-hashed under one rich bar over all their bytes (rate, ETA)."""
    progress = byte_progress()
    task = progress.add_task("verifying", total=sum(use.size for use in uses) or None)
    bad = []
    with progress:
        for use in uses:
            progress.update(task, description=f"verifying {use.digest[:19]}")
            problem = store.verify_blob(use.digest, use.size,
                                        progress=lambda n: progress.advance(task, n))
            if problem is not None:
                bad.append((use, problem))
    return bad
