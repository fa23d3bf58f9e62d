"""A scripted chat model for unit tests of graph logic: it fails loudly on any call it was not given a reply for."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage


class UnexpectedLLMCallError(AssertionError):
    """The code under test called the LLM more often than the test scripted."""


class ScriptedChatModel(GenericFakeChatModel):
    """Replies with the scripted texts in order, records every prompt, and raises when it runs out."""

    def __init__(self, replies: list[str]) -> None:
        super().__init__(messages=self._replies(list(replies)))
        self.prompts: list[Any] = []

    @staticmethod
    def _replies(replies: list[str]) -> Iterator[AIMessage]:
        yield from (AIMessage(text) for text in replies)
        while True:
            raise UnexpectedLLMCallError("the LLM was called more often than the test scripted")

    def _generate(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
        self.prompts.append(messages)
        return super()._generate(messages, *args, **kwargs)
