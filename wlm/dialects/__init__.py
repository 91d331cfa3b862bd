"""Client dialects: how a request arrives and how its answer and errors must look.

``chat`` is OpenAI Chat Completions (and the legacy completions and embeddings
endpoints); ``messages`` is Anthropic Messages; ``responses`` is OpenAI Responses.
A backend that speaks the client's dialect gets the request as is (pass-through);
any other gets it translated through Chat Completions, the hub every adapter speaks.
"""

from wlm.dialects.base import Dialect, Translation
from wlm.dialects.registry import DIALECTS, dialect_for

__all__ = ["DIALECTS", "Dialect", "Translation", "dialect_for"]
