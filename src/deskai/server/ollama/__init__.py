"""The Ollama API under /api: generate, chat, embed, tags, ps, show, pull, copy, delete."""
