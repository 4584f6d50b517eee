"""Every error deskai raises on purpose.

The tree::

    DeskaiError                      anything deskai refuses or cannot do
    ├── InvalidInputError            bad user input (400 / exit 2)
    │   ├── InvalidModelNameError    a model name that could escape the store
    │   ├── InvalidModelFileError    a file that is not, or no longer, a valid GGUF
    │   ├── ContextLengthError       a prompt longer than the model's context
    │   └── TrainingDataError        training data deskai refuses (bad lines, masked labels, ...)
    ├── NotFoundError (KeyError)     a lookup that found nothing (404 / exit 2)
    │   ├── ModelNotFoundError       no model of that name in the store
    │   ├── SourceNotFoundError      a pull reference (repo, file, quant, URL) that does not exist
    │   ├── UnknownHardwareError     a hardware name not in the catalog (``deskai fit --on``)
    │   └── UnknownArchitectureError a model the planner cannot describe (not in its catalog)
    ├── AuthenticationError          missing or wrong API key (401)
    ├── OverloadedError              the queue is full; try again later (503)
    ├── RequestTimeoutError          a request outlived the server's per-request timeout (504)
    ├── InsufficientMemoryError      a model that would not fit in free memory, refused (507)
    ├── StorageFullError             the store's disk filled up during a write, undone (507)
    ├── CorruptBlobError             a model whose bytes on disk no longer match their sha256 (500)
    ├── DownloadError                a pull that failed on the way (502)
    │   └── ChecksumMismatchError    downloaded bytes that do not match the published sha256
    ├── EngineError                  the inference engine failed (500)
    └── TrainingError                a fine-tuning run that cannot start or go on (500)

The server maps these to HTTP statuses in ``deskai.server.errors`` and the CLI maps them to a
one-line message and exit status 2 in ``deskai.cli``; nothing else needs to know the mapping.
"""

from __future__ import annotations


class DeskaiError(Exception):
    """Base of every error deskai raises on purpose.

    ``param`` names the request field at fault, when there is one (OpenAI's error ``param``).
    """

    http_status: int = 500
    error_type: str = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def __str__(self) -> str:
        return self.message


class InvalidInputError(DeskaiError):
    """The caller gave something deskai cannot accept."""

    http_status = 400
    error_type = "invalid_request_error"


class InvalidModelNameError(InvalidInputError):
    """A model name that is empty, malformed, or could escape the store directory."""

    code = "invalid_model_name"


class InvalidModelFileError(InvalidInputError):
    """A file that is not GGUF, is truncated, or is corrupt."""

    code = "invalid_model_file"


class ContextLengthError(InvalidInputError):
    """A prompt (plus the room asked for generation) longer than the model's context."""

    code = "context_length_exceeded"


class TrainingDataError(InvalidInputError):
    """Fine-tuning data that would train nothing or the wrong thing; the message names lines."""

    code = "invalid_training_data"


class NotFoundError(DeskaiError, KeyError):
    """A lookup that found nothing."""

    http_status = 404
    error_type = "invalid_request_error"
    code = "not_found"

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.message


class ModelNotFoundError(NotFoundError):
    """No model of that name is in the store."""

    code = "model_not_found"


class SourceNotFoundError(NotFoundError):
    """A pull reference whose repository, file, quantization or URL does not exist."""

    code = "source_not_found"


class AuthenticationError(DeskaiError):
    """A request without the right API key."""

    http_status = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class OverloadedError(DeskaiError):
    """The server's queue is full; the caller should retry after ``retry_after`` seconds."""

    http_status = 503
    error_type = "server_overloaded"
    code = "queue_full"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RequestTimeoutError(DeskaiError):
    """A request that did not finish within the server's per-request timeout (``--timeout``)."""

    http_status = 504
    error_type = "timeout_error"
    code = "request_timeout"


class InsufficientMemoryError(DeskaiError):
    """A model the planner says will not fit in the memory free now; refused before loading
    (as Ollama does), so the server is never OOM-killed and keeps serving what it has."""

    http_status = 507
    error_type = "server_error"
    code = "insufficient_memory"

    def __init__(self, message: str, *, needed_bytes: int, free_bytes: int) -> None:
        super().__init__(message, param="model")
        self.needed_bytes = needed_bytes
        self.free_bytes = free_bytes


class StorageFullError(DeskaiError):
    """A write into the store that ran out of disk space (or quota); what it had written is
    removed, so the store is as it was before."""

    http_status = 507
    error_type = "server_error"
    code = "insufficient_storage"


class CorruptBlobError(DeskaiError):
    """A model whose blob on disk is missing, has the wrong size, or no longer matches its sha256.

    The store's fault, not the caller's: the message names the model and the repair, never the
    blob's path.
    """

    http_status = 500
    error_type = "server_error"
    code = "corrupt_blob"


class EngineError(DeskaiError):
    """The inference engine failed in a way the caller could not have prevented."""

    http_status = 500
    error_type = "server_error"
    code = "engine_error"


class DownloadError(DeskaiError):
    """A pull that failed: the source refused, the connection broke, or the file is unusable.

    A partial download is kept, so running the same pull again resumes where it stopped.
    """

    http_status = 502
    error_type = "download_error"
    code = "download_failed"


class ChecksumMismatchError(DownloadError):
    """Downloaded bytes whose sha256 is not the one the source published; they are discarded."""

    code = "checksum_mismatch"


class UnknownHardwareError(NotFoundError):
    """A hardware name that is not in the planner's catalog; the message suggests close names."""

    code = "unknown_hardware"


class UnknownArchitectureError(NotFoundError):
    """A model the planner has no architecture for (not a file, store name, or catalog model)."""

    code = "unknown_architecture"


class TrainingError(DeskaiError):
    """A fine-tuning run that cannot start or continue (missing extra, mismatched resume)."""

    http_status = 500
    error_type = "server_error"
    code = "training_failed"
