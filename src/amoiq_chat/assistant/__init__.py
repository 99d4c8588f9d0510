"""The AI assistant that answers visitors first: its interface and the two implementations.

`FaqAssistant` (faq.py) needs no network: the widget's welcome message on the first message,
the best FAQ entry, else a polite fallback that offers a person. `LlmAssistant` (llm.py) asks
an OpenAI-compatible chat-completions endpoint and falls back to the FAQ assistant.
"""
from __future__ import annotations

from ..settings import Settings
from .base import Assistant, Conversation
from .faq import FaqAssistant, wants_person
from .llm import LlmAssistant

__all__ = ["Assistant", "Conversation", "FaqAssistant", "LlmAssistant", "make_assistant", "wants_person"]


def make_assistant(settings: Settings) -> Assistant:
    """The configured assistant: the LLM one when BOT_LLM_URL is set, else the FAQ one."""
    fallback = FaqAssistant()
    if settings.bot_llm_url:
        return LlmAssistant(settings.bot_llm_url, settings.bot_llm_model, settings.bot_llm_api_key,
                            timeout=settings.bot_llm_timeout, fallback=fallback)
    return fallback
