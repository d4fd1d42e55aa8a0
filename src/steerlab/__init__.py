"""steerlab: representation engineering of LLM behaviour, tool calling first."""

__version__ = "0.1.0"
