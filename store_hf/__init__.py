"""store-hf: STORE (semantic tokenization + generative recommendation with a single LLM)."""

__version__ = "0.1.0"
