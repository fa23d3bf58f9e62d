"""What the CLI prints after a streamed answer: the reply's parts the stream did not show, once."""

from __future__ import annotations

from prompts.reply import unshown_parts


def test_sentences_the_stream_showed_are_not_printed_again() -> None:
    streamed = "Use pkill to stop it. The user should be careful. Check it with ps first."
    reply = "Use pkill to stop it. Check it with ps first.\n\nSafeguards:\n- Save your work first."
    assert unshown_parts(streamed, reply) == "Safeguards:\n- Save your work first."


def test_a_decided_answer_in_front_of_the_wording_is_printed_alone() -> None:
    streamed = "Talk with her tonight."
    reply = "Since there is a concrete sign of danger, yes, with care. Talk with her tonight."
    assert unshown_parts(streamed, reply) == "Since there is a concrete sign of danger, yes, with care."


def test_a_reply_the_stream_never_showed_is_printed_whole() -> None:
    reply = "I could not write a full answer just now (timeout).\n\nHow different communities see this:\n- a"
    assert unshown_parts("partial wor", reply) == reply


def test_a_short_header_is_printed_even_if_the_stream_used_its_words() -> None:
    streamed = "The main risk to keep in mind is the danger."
    reply = "Keep in mind:\n- Talk with her first."
    assert unshown_parts(streamed, reply) == reply


def test_list_items_the_stream_showed_leave_no_bare_numbers_behind() -> None:
    streamed = "Do this:\n1. **Tell her**: Let her know you are worried.\n2. Boil water."
    reply = "Since there is a sign, yes.\n1. **Tell her**: Let her know you are worried.\n2. Boil water."
    assert unshown_parts(streamed, reply) == "Since there is a sign, yes."
