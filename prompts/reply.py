"""A reply plan in words: the model's prompt, and the reply shown whatever the model writes.

The plan (agent.reply_plan) decides what is said. Here it becomes (1) the prompt the model words
it from, with user and norm text only inside data blocks, and (2) the reply: the direct answer
first, then the model's wording, then every part of the plan the wording left out (safeguards),
the perspectives, and what the answer went by. Wording lives in reply.yaml beside this file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from string import Template
from typing import Any

from agent.reply_plan import Fact, Perspective, ReplyPlan, ShownReason, Verdict, View
from prompts import data_block, load_prompt, load_prompt_data, message, render, strip_echoed_markup

# Sentences that talk about the conversation's roles instead of to the person ("The user should
# ...", "As an AI assistant ..."): the embedded 135M model writes them from its training, and they
# read as if the reply were about someone else. They are dropped from the model's wording.
# "The decided answer is that ...": the 1.5B model retold the prompt's own block name in 3 of 4 diary replies.
_ROLE_TALK = re.compile(r"\b(the user|the assistant|as an ai|ai (language )?model|ai assistant|decided answer)\b",
                        re.IGNORECASE)
# An answer that lays out the perspectives takes no side: the model's own verdict ("In my opinion,
# euthanasia is justifiable") would contradict the plan it was given.
_OWN_OPINION = re.compile(
    r"\b(in my (own )?(opinion|view)|i (personally )?(think|believe|feel)|i would (argue|say)|i'd (argue|say))\b", re.I
)
# The decision is the judge's; a wording model that refuses on its own ("I'm sorry, but I can't
# assist with that request." for the capital of France, from the 0.5B at temperature 0.3) said
# nothing usable, so the sentence goes and the answer is sampled again.
_MODEL_REFUSAL = re.compile(
    r"\bI(?:'m| am) sorry\b.*\b(?:can(?:no|')t|unable to)\b|\bI (?:can(?:no|')t|am unable to|won'?t) "
    r"(?:assist|help|provide|answer)(?: you)? with (?:that|this)\b",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[a-z']+")
_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "of",
        "to",
        "in",
        "on",
        "for",
        "with",
        "your",
        "you",
        "i",
        "can",
        "it",
        "is",
        "are",
        "be",
        "that",
        "this",
        "as",
        "at",
        "by",
        "from",
        "how",
        "what",
        "about",
        "if",
        "any",
        "them",
        "they",
        "their",
        "there",
    ]
)
# Share of a safeguard's content words the wording must contain to count as having said it.
_COVERED = 0.6
# Prose sentences kept from the model (code lines do not count): enough for a how-to's steps; a
# small model that loops ("I've been doing this job long enough ...") is cut there, and repeats go.
MAX_WORDED_SENTENCES = 8


def _words() -> dict[str, Any]:
    words: dict[str, Any] = load_prompt_data("reply.yaml")
    return words


def _fill(template: str, **fields: object) -> str:
    return Template(template).substitute({k: str(v) for k, v in fields.items()})


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


def fact_text(fact: Fact) -> str:
    words = _words()
    return str(words["facts"].get(fact.slot, {}).get(fact.value) or _fill(words["fact_default"], **vars(fact)))


def unknown_text(slot: str) -> str:
    words = _words()
    return str(words["unknown"].get(slot) or _fill(words["unknown_default"], slot=slot))


def _join(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _people(views: Sequence[View]) -> str:
    names = _words()["people"]
    return _and([str(names.get(v.community) or _lower_first(v.label)) for v in views])


def _and(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def direct_answer(plan: ReplyPlan) -> str:
    """The first sentence of the reply; empty when the plan gives no verdict."""
    if plan.verdict == Verdict.OPEN or not plan.perspectives:
        return ""
    words = _words()
    views = plan.perspectives[0].views
    accept = [v for v in views if v.stance in ("expected", "okay")]
    avoid = [v for v in views if v.stance == "discouraged"]
    reject = [v for v in views if v.stance == "forbidden"]
    against = [_fill(words["avoid"], who=_people(avoid))] if avoid else []
    against += [_fill(words["reject"], who=_people(reject))] if reject else []
    given = _fill(words["given"], facts=_and([fact_text(f) for f in plan.told])) if plan.told else ""
    sentence = _fill(
        words["verdict"][str(plan.verdict)],
        given=given,
        accept=_people(accept) if accept else "",
        against=_and(against) if against else "",
    )
    return sentence[:1].upper() + sentence[1:]


def view_text(view: View) -> str:
    """A community's stance as it reads beside the situation: its words, or a vote count."""
    words = _words()
    support = view.support or {}
    overall = support.get("overall") if support else None
    if overall is not None:
        agree, decided = int(overall.get("agree", 0)), int(overall.get("agree", 0)) + int(overall.get("disagree", 0))
        text = (
            _fill(words["votes"], share=f"{agree / decided:.0%}", decided=decided) if decided else words["votes_none"]
        )
        return f"{view.label}: {text}" + (f" ({words['contested']})" if support.get("contested") else "")
    return f"{view.label}: {words['stance'][view.stance]}"


def perspective_lines(perspectives: Sequence[Perspective], *, one_view: bool = False) -> list[str]:
    lines = []
    for perspective in perspectives:
        if one_view:  # steerable mode: the followed community's stance only, without its name
            stance = view_text(perspective.views[0]).split(": ", 1)[1]
            lines.append(f"- {perspective.says}: {stance}.")
        else:
            lines.append(f"- {perspective.says}: {'; '.join(_lower_first(view_text(v)) for v in perspective.views)}.")
    return lines


def perspectives_text(plan: ReplyPlan) -> str:
    if not plan.perspectives:
        return ""
    header = message("steered_header", community=plan.followed) if plan.followed else message("perspectives_header")
    return "\n".join([header, *perspective_lines(plan.perspectives, one_view=bool(plan.followed))])


def situation_text(plan: ReplyPlan) -> str:
    """What the answer went by and what it assumed, as one or two sentences."""
    words = _words()
    parts = []
    if plan.known:
        parts.append(_fill(words["known_line"], facts="; ".join(fact_text(f) for f in plan.known)))
    if plan.in_own_words:
        parts.append(_fill(words["own_words_line"], answers="; ".join(f"“{a.rstrip('.!?')}”" for a in plan.in_own_words)))
    if plan.unknown:
        unknown = _join([unknown_text(s) for s in plan.unknown])
        parts.append(message("assumptions", assumptions=_fill(words["assumptions_line"], unknown=unknown)))
    return " ".join(parts)


def reason_text(plan: ReplyPlan) -> str:
    """The reason to show for this answer: the policy's sentence unless the state contradicts it."""
    if plan.reason == ShownReason.POLICY:
        return plan.policy_reason
    return str(_words()["reasons"][str(plan.reason)])


def _content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 2}


def said(part: str, text: str) -> bool:
    """Whether ``text`` says ``part``: most of its content words appear in it."""
    wanted = _content_words(part)
    return bool(wanted) and len(wanted & _content_words(text)) / len(wanted) >= _COVERED


def _normal(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


# Markup a small model invents around its prose (`"https://..." type="live">You are ...</textual
# ref="...">`, seen in the demo from the 0.5B): tags, attribute pairs and the brackets they leave.
_TAG = re.compile(r"</?[A-Za-z][^<>\n]*>")
_ATTRIBUTE = re.compile(r"""(?:\b[\w:-]+\s*=\s*)?"(?:https?://|www\.)[^"\s]*"|\b[\w:-]+="[^"]*"|(?<=")\s*>""")
_STRAY = re.compile(r"(?:^|(?<=\s))(?:\"|/>)(?=\s|$)")


def _without_markup(line: str) -> str:
    """A prose line without invented tags and attributes (code spans in backticks are left alone)."""
    parts = re.split(r"(`[^`]*`)", line)
    cleaned = [p if p.startswith("`") else _STRAY.sub(" ", _ATTRIBUTE.sub(" ", _TAG.sub(" ", p))) for p in parts]
    return re.sub(r"\s{2,}", " ", "".join(cleaned)).strip()


_LIST_MARKER = re.compile(r"^(\s*(?:[-*+]|\d{1,2}[.)])\s+)")
_FENCE = "```"


def _kept_sentences(line: str, copied: Sequence[str], seen: set[str], take_no_side: bool, room: int) -> list[str]:
    kept: list[str] = []
    for sentence in _SENTENCE.split(line):
        plain = _normal(sentence)
        if len(kept) >= room or not plain or plain in seen or _ROLE_TALK.search(sentence):
            continue
        if _MODEL_REFUSAL.search(sentence):
            continue
        if take_no_side and _OWN_OPINION.search(sentence):
            continue
        seen.add(plain)
        if len(plain) >= 12 and any(plain in data for data in copied):
            continue
        kept.append(sentence.strip())
    return kept


def whole_sentences(text: str) -> str:
    """Drop a trailing half sentence (the model hit its token limit), keeping at least the first sentence.

    Only the last line is cut, and a list number is not a sentence's end: "...\n1. **Paren" used to
    keep "1." as a dangling item. A last line with no whole sentence left goes entirely.
    """
    text = text.strip()
    if not text or text[-1] in ".!?\"')`":
        return text
    head, _, last = text.rpartition("\n")
    marker_match = _LIST_MARKER.match(last)
    marker = marker_match.group(1) if marker_match else ""
    body = last[len(marker) :]
    cut = max(body.rfind(mark) for mark in (". ", "! ", "? "))
    if cut > 0:
        return (head + "\n" if head else "") + marker + body[: cut + 1]
    return _without_trailing_headers(head.rstrip()) if head.strip() else text


def _without_trailing_headers(text: str) -> str:
    """Drop lead-in lines left last once the cut-off text after them went ("The steps involved are:",
    "**Plot:**"): the embedded model's vaccine answer ended on such a line, announcing steps it never gave."""
    lines = text.splitlines()
    while len(lines) > 1 and (not lines[-1].strip() or lines[-1].strip().strip("*_#` ").endswith(":")):
        lines.pop()
    return "\n".join(lines).rstrip()


# A sentence's end inside a streamed answer: its mark, then white space (the next sentence has begun).
_STREAMED_END = re.compile(r"[.!?](?=\s)")
_LIST_NUMBER = re.compile(r"\s*\d{1,2}")


def _last_sentence_end(text: str) -> int:
    """Index of the last sentence mark that ends a sentence, or -1; a list number ("1.") is no end."""
    for match in reversed(list(_STREAMED_END.finditer(text))):
        line_start = text.rfind("\n", 0, match.start()) + 1
        if not _LIST_NUMBER.fullmatch(text[line_start : match.start()]):
            return match.start()
    return -1


class SentenceGate:
    """Lets a streamed answer through a sentence at a time.

    The stored reply drops a trailing half sentence (``whole_sentences``: the model hit its token
    limit), so a stream that printed every token (`edge-align ask` did) could show words the reply then
    lacks. Text up to the last sentence end of what has arrived is safe to show, so a client never shows
    words it must unsee.
    """

    def __init__(self) -> None:
        self.raw = ""
        self.sent = ""

    def feed(self, token: str) -> str:
        """What of the stream is newly safe to show (empty until a sentence is complete)."""
        self.raw += token
        cleaned = strip_echoed_markup(self.raw)
        cut = _last_sentence_end(cleaned)
        if cut < 0:
            return ""
        ready = cleaned[: cut + 1]
        if len(ready) <= len(self.sent) or not ready.startswith(self.sent):
            return ""
        new, self.sent = ready[len(self.sent) :], ready
        return new

    def finish(self, reply: str) -> str:
        """The rest of the reply; if the model failed after sentences went out, the whole stored reply
        (the note saying so) follows them."""
        rest = reply[len(self.sent) :] if reply.startswith(self.sent) else "\n\n" + reply
        self.sent += rest
        return rest


def clean_wording(text: str, echoes: Sequence[str] = (), *, take_no_side: bool = False) -> str:
    """The model's wording without sentences about "the user" or "the assistant", without lines
    copied from its prompt's data (a small model repeats the situation it was shown) or repeated,
    and at most ``MAX_WORDED_SENTENCES`` sentences of prose. ``take_no_side`` also drops the model's
    own opinions (a pluralistic answer).

    Lines, list markers and code blocks keep their shape: a how-to answer flattened into one line
    lost its commands.
    """
    copied = [_normal(e) for e in echoes if e.strip()]
    lines: list[str] = []
    seen: set[str] = set()
    sentences = 0
    in_code = False
    for raw in text.strip().splitlines():
        line = raw.rstrip()
        if line.strip().startswith(_FENCE):
            in_code = not in_code
            lines.append(line.strip())
            continue
        if in_code:
            lines.append(line)
            continue
        if not line.strip():
            if lines and lines[-1]:
                lines.append("")
            continue
        line = _without_markup(line) if "<" in line or "=" in line or ">" in line else line
        if not line:
            continue
        marker_match = _LIST_MARKER.match(line)
        marker = marker_match.group(1) if marker_match else ""
        kept = _kept_sentences(
            line[len(marker) :].strip(), copied, seen, take_no_side, MAX_WORDED_SENTENCES - sentences
        )
        if kept:
            sentences += len(kept)
            lines.append(marker + " ".join(kept))
    if in_code:  # cut off inside a code block: close it, or the rest of the reply renders as code
        lines.append(_FENCE)
    # The sentence cap can end the wording on a lead-in whose content it cut ("Plot Summary:" after a
    # story's title, setting and characters, read in the demo): it goes too.
    return _without_trailing_headers("\n".join(_without_empty_code(lines)).strip())


def _without_empty_code(lines: list[str]) -> list[str]:
    """Drop fenced blocks with nothing inside (left when the model was cut off right after a fence)."""
    out: list[str] = []
    for line in lines:
        if line == _FENCE and out and out[-1].startswith(_FENCE):
            out.pop()
            continue
        out.append(line)
    return out


# What the prompt's empty data blocks say; a small model copies them into its wording.
PLACEHOLDERS = ("(nothing stated)", "(none)")


def usable_wording(plan: ReplyPlan, wording: str, echoes: Sequence[str] = ()) -> str:
    """What of the model's wording reaches the reply: placeholders, echoes and role talk removed.

    Empty means the model said nothing the reply can use, so the caller may ask it again.
    """
    for placeholder in PLACEHOLDERS:
        wording = wording.replace(placeholder, " ")
    copied = [*echoes, *(fact_text(f) for f in plan.known), direct_answer(plan)]
    return clean_wording(wording, copied, take_no_side=plan.style == "pluralistic")


def _plain(text: str) -> str:
    # Digits count here ("1. Boil water."), unlike _normal's words.
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def _word_count(text: str) -> int:
    return len(_plain(text).split())


def unshown_parts(streamed: str, reply: str) -> str:
    """The reply's paragraphs, less every sentence the stream already printed.

    A sentence of four or more words counts as shown when it occurs in the stream; a shorter line (a
    header, "1. Boil water.") only when the stream had the same line, since short phrases recur by chance.
    """
    shown = f" {_plain(streamed)} "
    streamed_lines = {_plain(_LIST_MARKER.sub("", line)) for line in streamed.splitlines()}
    parts = []
    for paragraph in reply.split("\n\n"):
        lines = []
        for line in paragraph.splitlines():
            marker = _LIST_MARKER.match(line)
            body = line[marker.end() :] if marker else line
            sentences = [s for s in _SENTENCE.split(body) if _plain(s)]
            long = [s for s in sentences if _word_count(s) >= 4]
            if not long:
                if _plain(body) and _plain(body) not in streamed_lines:
                    lines.append(line)
                continue
            fresh = [s for s in long if f" {_plain(s)} " not in shown]
            if len(fresh) == len(long):
                lines.append(line)
            elif fresh:
                lines.append((marker.group(0) if marker else "") + " ".join(fresh))
        if lines:
            parts.append("\n".join(lines))
    return "\n\n".join(parts)


def compose(plan: ReplyPlan, wording: str, echoes: Sequence[str] = (), notice: str = "") -> str:
    """The reply: the direct answer, the model's wording, then what the wording left out.

    ``notice`` (the model could not be reached) stands in for the wording, unedited.
    """
    words = _words()
    answer = direct_answer(plan)
    wording = usable_wording(plan, wording, echoes)
    opening = " ".join(part for part in (answer, notice or wording) if part)
    missing = [s for s in plan.safeguards if not said(s, wording)]
    safeguards = "\n".join([words["safeguards_header"], *(f"- {s}" for s in missing)]) if missing else ""
    return "\n\n".join(p for p in (opening, safeguards, perspectives_text(plan), situation_text(plan)) if p)


def _task(plan: ReplyPlan, compact: bool) -> str:
    plans: dict[str, Any] = load_prompt_data("plans.yaml")
    if compact:
        plans = {**plans, **plans["compact"]}
    style = _fill(str(plans.get(plan.style, plans["direct"])), community=plan.followed or "")
    words = _words()
    task = style + " " + str(words["task_common"]).strip()
    if direct_answer(plan):
        task += " " + str(words["task_with_answer"]).strip()
    return task


def norm_lines(norms: Sequence[Mapping[str, Any]], community: str | None = None, limit: int = 6) -> str:
    """Applicable norms for the full prompt's data block, in plain words, one per line."""
    stance_words = _words()["stance"]
    chosen = [n for n in norms if n.get("applies") and community in (None, n["community"])]
    lines = [
        f"[{n['community']}, {stance_words.get(n['stance'], n['stance'])}] {n.get('says') or n['text']}"
        for n in chosen[:limit]
    ]
    return "\n".join(lines) or "(none)"


def answer_prompt(
    plan: ReplyPlan,
    conversation: str,
    norms: Sequence[Mapping[str, Any]],
    *,
    compact: bool,
) -> tuple[str, str]:
    """(system, user) texts: the rules, then the question, situation and norms as data, then the task.

    ``compact`` leaves the norms out, for a model too small to read them as guidance rather than
    as a story to retell: they reach the reply through ``compose`` instead.
    """
    situation = "\n".join(fact_text(f) for f in plan.known)
    answer = direct_answer(plan)

    # The compact prompt leaves empty blocks out: given "decided answer: (none)", the 0.5B model declined
    # to answer "What is the capital of France?" ("I don't have enough information..."). The full
    # prompt keeps every block, so a configured model always sees the same frame.
    def block(kind: str, text: str) -> str:
        if text or not compact:
            return data_block(kind, text or (PLACEHOLDERS[0] if kind == "situation" else PLACEHOLDERS[1]))
        return ""

    blocks = {
        "request_block": data_block("question", conversation),
        "context_block": block("situation", situation),
        "answer_block": block("decided answer", answer),
        "safeguards_block": block("safeguards", "\n".join(plan.safeguards)),
    }
    if not compact:
        blocks["norms_block"] = data_block("community norms", norm_lines(norms, plan.followed))
    user = render("answer_compact.md" if compact else "answer.md", **blocks, task=_task(plan, compact))
    return load_prompt("system.md"), user
