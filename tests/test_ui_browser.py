"""The demo as people meet it: the real `edge-align demo` (models, norm index, embedded LLM) driven in
headless Chromium.

Screenshots of each step go to artifacts/screenshots/; the best one is copied to docs/screenshots/demo.png.
Browser-measured latencies (press Send -> first visible assistant output) go to artifacts/ui_latency.json.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # imported by pytest_plugins; importing it here first would skip its assert rewriting
    from tests.support.demo_server import DemoServer

PROJECT_ROOT = Path(__file__).resolve().parents[1]

pytest_plugins = ["tests.support.demo_server"]
pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = PROJECT_ROOT / "artifacts" / "screenshots"
README_SCREENSHOT = PROJECT_ROOT / "docs" / "screenshots" / "demo.png"
LATENCY_REPORT = PROJECT_ROOT / "artifacts" / "ui_latency.json"
DIARY = "Should I read my 15-year-old daughter's diary to check she's safe?"
EUTHANASIA = "Is euthanasia morally acceptable?"
CAPITAL = "What is the capital of France?"
TURN_TIMEOUT_MS = 240_000  # a turn on 2 shared cores, with the embedded model writing the answer
SHIPPED_COMMUNITIES = {p.stem for p in (PROJECT_ROOT / "memory" / "packs").glob("*.yaml")}

BOT = "#chat [data-testid=bot]"
USER = "#chat [data-testid=user]"

# Presses Send (the message is already typed) and records, in page time, when the first assistant element
# appears (the step indicator), when it first holds text (the question, or the first answer token),
# and when the turn's trace arrives (the turn is over).
MEASURE_TURN_JS = """
(timeoutMs) => new Promise((resolve, reject) => {
  const chat = document.querySelector('#chat');
  const summary = document.querySelector('#trace-summary');
  const botsBefore = chat.querySelectorAll('[data-testid=bot]').length;
  const turnBefore = summary.querySelector('[data-turn]')?.dataset.turn ?? '0';
  const out = {};
  let t0 = 0;
  const check = () => {
    const now = performance.now() - t0;
    const bots = chat.querySelectorAll('[data-testid=bot]');
    if (bots.length > botsBefore) {
      const last = bots[bots.length - 1];
      if (out.first_status_ms === undefined) out.first_status_ms = now;
      if (out.first_text_ms === undefined && !last.querySelector('.thought-group') && last.innerText.trim())
        out.first_text_ms = now;
    }
    const turn = summary.querySelector('[data-turn]');
    if (turn && turn.dataset.turn !== turnBefore && out.first_text_ms !== undefined) {
      out.done_ms = now;
      out.decision = turn.dataset.decision;
      observer.disconnect();
      resolve(out);
    }
  };
  const observer = new MutationObserver(check);
  observer.observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
  setTimeout(() => { observer.disconnect(); reject(new Error('turn not over: ' + JSON.stringify(out))); }, timeoutMs);
  requestAnimationFrame(() => { t0 = performance.now(); document.querySelector('#send').click(); });
})
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: run `make browser` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser: Any, demo_server: DemoServer) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    tab = context.new_page()
    open_demo(tab, demo_server)
    yield tab
    context.close()


def open_demo(tab: Any, server: DemoServer) -> None:
    tab.goto(server.url, wait_until="domcontentloaded", timeout=60_000)
    tab.wait_for_selector("#message textarea", timeout=60_000)


def shot(tab: Any, name: str, **options: Any) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    tab.screenshot(path=str(path), **options)
    return path


def save_readme_screenshot(source: Path) -> None:
    """Copy the screenshot for the README, with a 256-colour palette if the full one is too heavy."""
    README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    if source.stat().st_size < 300_000:
        shutil.copyfile(source, README_SCREENSHOT)
        return
    from PIL import Image

    with Image.open(source) as image:
        image.convert("RGB").quantize(colors=256).save(README_SCREENSHOT, optimize=True)


def current_turn(tab: Any) -> int:
    marker = tab.query_selector("#trace-summary [data-turn]")
    return int(marker.get_attribute("data-turn")) if marker else 0


def wait_for_turn(tab: Any, turn_before: int) -> str:
    """Wait until the turn's trace is drawn (the turn is over); returns its decision."""
    tab.wait_for_selector(f"#trace-summary [data-turn]:not([data-turn='{turn_before}'])", timeout=TURN_TIMEOUT_MS)
    return str(tab.get_attribute("#trace-summary [data-turn]", "data-decision"))


def type_message(tab: Any, text: str) -> None:
    """Fill the message box, again if a pending update (New conversation clears the box) emptied it after."""
    for _ in range(3):
        tab.fill("#message textarea", text)
        tab.wait_for_timeout(300)
        if tab.input_value("#message textarea") == text:
            return
    raise AssertionError(f"the message box did not keep {text[:40]!r}")


def send(tab: Any, text: str) -> str:
    before = current_turn(tab)
    type_message(tab, text)
    tab.click("#send")
    return wait_for_turn(tab, before)


def click_option(tab: Any, index: int = 0) -> str:
    before = current_turn(tab)
    tab.locator("#chat button.option").nth(index).click()
    return wait_for_turn(tab, before)


def transcript(tab: Any) -> list[str]:
    return [text.strip() for text in tab.locator(f"{USER}, {BOT}").all_inner_texts()]


def new_conversation(tab: Any) -> None:
    tab.click("#new-conversation")
    tab.wait_for_function("document.querySelectorAll('#chat [data-testid=bot]').length === 0")
    tab.wait_for_selector("#trace-summary .ea-empty")


def test_clarify_click_answer_trace_and_reload(page: Any, demo_server: DemoServer) -> None:
    shot(page, "00-start", full_page=True)

    # 1) a request whose answer depends on the user's situation: a question with option buttons
    assert send(page, DIARY) == "clarify"
    options = page.locator("#chat button.option")
    assert options.count() >= 2
    question = page.locator(BOT).last.inner_text().strip()
    assert question.endswith("?")
    shot(page, "01-clarify", full_page=True)

    # 2) click an option; 3) the paused turn resumes on the same thread and ends in an answer
    # (the agent may ask once more within its budget: answer that too)
    thread_label = page.inner_text("#thread-info")
    decision = click_option(page)
    shot(page, "02-option-answered", full_page=True)
    for _ in range(3):
        if decision != "clarify":
            break
        decision = click_option(page)
    assert decision == "answer"
    assert page.inner_text("#thread-info") == thread_label  # no new thread was started
    messages = transcript(page)
    assert messages[0] == DIARY
    assert question in messages
    answer = page.locator(BOT).last.inner_text().strip()
    assert answer and answer != question
    assert page.locator("#chat button.option").count() == 0
    shot(page, "03-answer", full_page=True)

    # 4) the trace: the value chart over 20 values, norms with their community, uncertainties, reason
    assert page.locator("#value-chart .ea-bar-row").count() == 20
    norm_rows = page.locator("#trace-details table.ea-norms tbody tr")
    assert norm_rows.count() >= 1
    communities = {text.strip() for text in page.locator("#trace-details td.ea-community").all_inner_texts()}
    assert communities and communities <= SHIPPED_COMMUNITIES
    assert page.locator("#trace-summary .ea-meter").count() == 3
    assert page.inner_text("#trace-summary .ea-reason").strip()
    shot(page.locator("#trace-panel"), "04-trace")

    # 5) a reload redraws the same conversation and its trace
    page.reload(wait_until="domcontentloaded")
    page.wait_for_function(f"document.querySelectorAll('{USER}, {BOT}').length >= {len(messages)}", timeout=60_000)
    assert transcript(page) == messages
    page.wait_for_selector("#trace-summary [data-turn]")
    assert page.locator("#value-chart .ea-bar-row").count() == 20
    shot(page, "05-reloaded", full_page=True)

    # the export holds one record per message, with the decision and trace on assistant turns
    with page.expect_download() as download:
        page.click("#export")
    records = [json.loads(line) for line in Path(download.value.path()).read_text().splitlines()]
    assert len(records) == len(messages)  # the page shows rendered Markdown, the export the raw text
    assert [r["role"] for r in records][:3] == ["user", "assistant", "user"]
    assert records[0]["content"] == DIARY and records[1]["content"].strip() == question
    assistant = [r for r in records if r["role"] == "assistant"]
    assert all(r["decision"] in {"clarify", "answer", "refuse"} and r["trace"]["values"] for r in assistant)
    assert assistant[0]["decision"] == "clarify" and assistant[-1]["decision"] == "answer"

    save_readme_screenshot(SCREENSHOTS / "03-answer.png")
    assert README_SCREENSHOT.stat().st_size < 300_000


def test_empty_and_too_long_messages(page: Any) -> None:
    new_conversation(page)
    page.fill("#message textarea", "   ")
    page.click("#send")
    page.wait_for_selector(".toast-body", timeout=30_000)  # the hint, as a notice
    assert "empty" in page.inner_text(".toast-body").lower()
    assert page.locator(BOT).count() == 0

    page.fill("#message textarea", "x" * 8_001)
    page.click("#send")
    page.wait_for_function("document.querySelectorAll('#chat [data-testid=bot]').length === 1", timeout=60_000)
    page.wait_for_function(
        "document.querySelector('#chat [data-testid=bot]').innerText.includes('limit')", timeout=60_000
    )
    assert "8000" in page.locator(BOT).last.inner_text()
    shot(page, "06-too-long", full_page=True)


def test_a_message_sent_while_the_last_turn_is_running_is_answered_after_it(page: Any) -> None:
    # Gradio's default trigger mode ignored the second click while the first turn ran: the typed
    # message vanished from the box and was never answered.
    new_conversation(page)
    page.fill("#message textarea", "What is the capital of France?")
    page.click("#send")
    page.wait_for_function("document.querySelector('#message textarea').value === ''", timeout=30_000)
    page.fill("#message textarea", "How do I kill a stuck process on Linux?")
    page.click("#send")
    page.wait_for_selector("#trace-summary [data-turn='2']", timeout=2 * TURN_TIMEOUT_MS)
    said = transcript(page)
    assert said[0] == "What is the capital of France?" and "How do I kill a stuck process on Linux?" in said, said
    assert len(said) == 4 and all(said), said  # both requests, each with its reply


def test_pending_question_survives_server_restart(page: Any, demo_server: DemoServer) -> None:
    new_conversation(page)
    assert send(page, DIARY) == "clarify"
    question = page.locator(BOT).last.inner_text().strip()
    options = page.locator("#chat button.option").all_inner_texts()
    thread_label = page.inner_text("#thread-info")

    demo_server.restart()
    open_demo(page, demo_server)
    page.wait_for_selector("#chat button.option", timeout=60_000)
    assert page.locator(BOT).last.inner_text().strip() == question
    assert page.locator("#chat button.option").all_inner_texts() == options
    assert page.inner_text("#thread-info") == thread_label
    shot(page, "07-after-restart", full_page=True)

    decision = click_option(page)  # the restarted server resumes the paused turn
    assert decision in {"answer", "clarify"}
    assert transcript(page)[:3] == [DIARY, question, options[0]]


def test_browser_latency(page: Any) -> None:
    """Send -> first visible assistant output, measured in the page; medians by the decision the turn took.

    Each example message runs 3 times on fresh threads; no assertion on time.
    """
    runs: list[dict[str, Any]] = []
    for message in (DIARY, EUTHANASIA, CAPITAL):
        for _ in range(3):
            new_conversation(page)
            type_message(page, message)
            result = page.evaluate(MEASURE_TURN_JS, TURN_TIMEOUT_MS)
            runs.append(
                {"message": message, **{k: round(v, 1) if isinstance(v, float) else v for k, v in result.items()}}
            )

    keys = ("first_status_ms", "first_text_ms", "done_ms")
    by_decision: dict[str, dict[str, Any]] = {}
    for decision in sorted({run["decision"] for run in runs}):
        chosen = [run for run in runs if run["decision"] == decision]
        by_decision[decision] = {
            "turns": len(chosen),
            **{key: round(statistics.median(run[key] for run in chosen), 1) for key in keys},
        }
    report = {
        "what": "browser time from pressing Send to the first visible assistant output (headless Chromium)",
        "first_status_ms": "the step indicator ('reading your message…') appears",
        "first_text_ms": "the first assistant text: the clarifying question, or the first answer token",
        "done_ms": "the turn's trace is drawn (the turn is over)",
        "command": "make browser && .venv/bin/python -m pytest tests/test_ui_browser.py -m slow",
        "machine": {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "median_by_decision": by_decision,
        "runs": runs,
    }
    LATENCY_REPORT.parent.mkdir(parents=True, exist_ok=True)
    LATENCY_REPORT.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    assert all(run["first_text_ms"] >= run["first_status_ms"] for run in runs)
