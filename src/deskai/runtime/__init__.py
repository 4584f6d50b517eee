"""The runtime: which models are live on which engine (leases, keep-alive, shared bases,
backend selection, the fit check before a load)."""

from deskai.runtime.manager import LoadedModel, ModelManager

__all__ = ["LoadedModel", "ModelManager"]
