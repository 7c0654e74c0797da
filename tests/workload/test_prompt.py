"""The RAG prompt component renders what Haystack's ChatPromptBuilder renders for the same template."""

from __future__ import annotations

import pytest
from haystack import Document
from haystack.components.builders import ChatPromptBuilder
from haystack.core.serialization import component_from_dict, component_to_dict
from haystack.dataclasses import ChatMessage
from jinja2 import UndefinedError

from workload.service.prompt import SYSTEM_PROMPT, USER_TEMPLATE, RagPromptBuilder

DOCS = [Document(content="GPU nodes carry the nvidia.com/gpu taint."),
        Document(content="Qdrant stores vectors; {{ not a template }} stays text.")]


def test_same_messages_as_chat_prompt_builder():
    reference = ChatPromptBuilder(template=[ChatMessage.from_system(SYSTEM_PROMPT),
                                            ChatMessage.from_user(USER_TEMPLATE)])
    query = "Which taint do GPU nodes carry? <b>&amp;</b>"
    ours = RagPromptBuilder().run(query=query, documents=DOCS)["prompt"]
    theirs = reference.run(query=query, documents=DOCS)["prompt"]
    assert [m.to_openai_dict_format() for m in ours] == [m.to_openai_dict_format() for m in theirs]
    assert "[2] Qdrant stores vectors; {{ not a template }} stays text." in ours[1].text


def test_no_documents_still_asks_the_question():
    prompt = RagPromptBuilder().run(query="Anything?", documents=[])["prompt"]
    assert prompt[1].text == "Context:\n\nQuestion: Anything?"


def test_a_template_naming_an_unknown_variable_fails_loudly():
    builder = RagPromptBuilder(user_template="{{ query }} {{ missing }}")
    with pytest.raises(UndefinedError):
        builder.run(query="q", documents=[])


def test_round_trips_through_haystack_serialisation():
    builder = RagPromptBuilder(system_prompt="Be brief.")
    restored = component_from_dict(RagPromptBuilder, component_to_dict(builder, "prompt"), "prompt")
    assert restored.run(query="q", documents=DOCS) == builder.run(query="q", documents=DOCS)
