"""The model catalogue the edge answers with: ``GET /v1/models`` and ``GET /v1/models/{id}``.

Generation models are the latency profiles (:mod:`fakeai.latency_profiles`), named exactly or
by an id that resolves to one (``meta-llama/Llama-3.1-8B-Instruct``); embedding models are
:data:`.embeddings.EMBEDDING_MODELS`. A model object is OpenAI's: ``id``, ``object``,
``created``, ``owned_by``.
"""

from __future__ import annotations

from typing import Any, Final

from fakeai.latency_profiles import get_latency_manager
from fakeai.services.edge.embeddings import EMBEDDING_MODELS, embedding_model

__all__ = ["MODEL_CREATED", "is_generation_model", "is_known_model", "model_card", "model_cards"]

MODEL_CREATED: Final = 1_704_067_200
"""``created`` of every model object (2024-01-01T00:00:00Z): the same on every edge process
and across restarts, so a client comparing model lists sees no change."""


def model_card(model_id: str) -> dict[str, Any]:
    """OpenAI's model object for ``model_id``."""
    return {"id": model_id, "object": "model", "created": MODEL_CREATED, "owned_by": "fakeai"}


def model_cards() -> list[dict[str, Any]]:
    """Every model: the generation models (sorted), then the embedding models."""
    return [model_card(m) for m in (*get_latency_manager().list_models(), *EMBEDDING_MODELS)]


def is_generation_model(model_id: str) -> bool:
    """Does ``model_id`` name a latency profile, exactly or as an id that resolves to one?"""
    try:
        get_latency_manager().get_profile(model_id, strict=True)
    except ValueError:
        return False
    return True


def is_known_model(model_id: str) -> bool:
    """A generation model or an embedding model."""
    return embedding_model(model_id) is not None or is_generation_model(model_id)
