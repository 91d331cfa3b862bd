"""Client dialects: how a request arrives and how its answer and errors must look.

``chat`` is OpenAI Chat Completions (and the legacy completions and embeddings
endpoints); ``messages`` is Anthropic Messages; ``responses`` is OpenAI Responses;
``rerank`` is the Jina/Cohere rerank endpoint, only passed through.
A backend that speaks the client's dialect gets the request as is (pass-through,
with the history wlm keeps for a backend that keeps no responses); any other gets it
translated through Chat Completions, the hub every adapter speaks.
"""

from wlm.dialects.base import AS_SENT, Dialect, ParsedRequest, Passage, Translation
from wlm.dialects.registry import PROXIED_ENDPOINTS, build_dialects
from wlm.dialects.response_store import ResponseStore

__all__ = [
    "AS_SENT",
    "PROXIED_ENDPOINTS",
    "Dialect",
    "ParsedRequest",
    "Passage",
    "ResponseStore",
    "Translation",
    "build_dialects",
]
