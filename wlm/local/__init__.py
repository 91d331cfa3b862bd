"""Local llama.cpp models: GGUF discovery, engine processes and their supervision.

The gateway uses :class:`wlm.local.manager.LocalManager`. Nothing is imported here,
so the engine child (``python -m wlm.local.launcher``) starts without loading the
gateway's dependencies.
"""
