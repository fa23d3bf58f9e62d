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


class _ScriptedStream:
    """An agent whose one turn streams the given tokens, then the stored reply; any other call raises."""

    def __init__(self, tokens: list[str], reply: str) -> None:
        self.tokens, self.reply, self.turns = tokens, reply, 0

    def stream(self, message: str, thread_id: str, user_id: str | None = None):  # type: ignore[no-untyped-def]
        self.turns += 1
        if self.turns > 1:
            raise AssertionError("the CLI ran a second turn for one message")
        yield from (("token", token) for token in self.tokens)
        from types import SimpleNamespace

        yield "result", SimpleNamespace(reply=self.reply, question=None)


def test_a_half_sentence_at_the_token_limit_never_reaches_the_screen(capsys) -> None:  # type: ignore[no-untyped-def]
    from ui.cli import _print_turn

    # The stored reply (graphs.nodes.respond) has whole_sentences' cut; the stream must match it.
    tokens = ["Talk with her", " first. ", "Then report the ", "adult. The main risk is that the child may be in"]
    reply = "Since there is a sign, yes. Talk with her first. Then report the adult."
    _print_turn(_ScriptedStream(tokens, reply), "diary?", "t1", None)
    shown = capsys.readouterr().out
    assert "may be in" not in shown
    assert "Talk with her first. Then report the adult." in shown
    assert "Since there is a sign, yes." in shown  # the decided answer the stream never had


def test_a_list_number_is_not_shown_as_a_sentence_end() -> None:
    from prompts.reply import SentenceGate

    gate = SentenceGate()
    shown = "".join(gate.feed(t) for t in ["Do this:\n", "1. ", "**Tell her**", " calmly.\n2. ", "Bo"])
    assert shown == "Do this:\n1. **Tell her** calmly."  # "2." waits for its sentence
