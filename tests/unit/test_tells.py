"""The AI-tell detector: its catalogue, its scoring, its false-positive rate on human prose.

Corpora (see docs/ai-tells.md, which publishes the figures printed here as FIGURE lines):

- ``tests/data/human_corpus``: ordinary prose in everyday registers (letters, recipes, local news, forum
  posts, reviews, diaries, work notes, stories, explainers, essays), written for this project;
- the Python Language Reference as CPython ships it (``pydoc_data.topics``, written by people over two
  decades): prose paragraphs of 40 words or more, code and grammar left out;
- ``tests/data/ai_corpus``: text in the stock chat-model register (blog, travel, report, essay, assistant
  replies), written for this project to exhibit it.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path

import pytest

from humanizer.verification import VerificationOptions, render_text, verify_document
from humanizer.verification.tells import (
    BY_ID,
    CATALOGUE,
    CATEGORY_TITLES,
    FLAG_SCORE,
    MEASURED,
    MIN_WORDS,
    TellStats,
    analyse,
    catalogue_markdown,
    phrases_to_avoid,
    score_stats,
    score_text,
    tell_report,
)

pytestmark = pytest.mark.unit

DATA = Path(__file__).resolve().parents[1] / "data"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "ai-tells.md"

# stated thresholds (docs/ai-tells.md)
HUMAN_MAX_FLAGGED = 0.05  # share of paragraphs of our human corpus
PYDOC_MAX_FLAGGED = 0.01  # share of paragraphs of the Python reference
AI_MIN_FLAGGED = 0.85  # share of paragraphs of the AI-style corpus


def paragraphs(folder: Path) -> list[tuple[str, str]]:
    out = []
    for path in sorted(folder.glob("*.txt")):
        out += [(path.name, p.strip()) for p in re.split(r"\n\s*\n", path.read_text()) if p.strip()]
    return out


def pydoc_paragraphs() -> list[tuple[str, str]]:
    """Prose paragraphs of the Python Language Reference: no indented code or grammar, no headings."""
    import pydoc_data.topics

    out = []
    for topic, text in sorted(pydoc_data.topics.topics.items()):
        for block in re.split(r"\n\s*\n", text):
            lines = block.split("\n")
            if any(line.startswith(" ") for line in lines) or set(block.strip()) <= set("*=-~^"):
                continue
            prose = " ".join(line.strip() for line in lines)
            if len(prose.split()) >= 40 and prose[0].isupper():
                out.append((topic, prose))
    return out


# ---- the catalogue ------------------------------------------------------------------------------
EXAMPLES: dict[str, str] = {
    "hope_this_helps": "Restart the router first. I hope this helps!",
    "as_an_ai": "As an AI language model, I have no opinion on football.",
    "knowledge_cutoff": "As of my last knowledge update, the bridge was still closed.",
    "certainly": "Certainly! The meeting is on Monday.",
    "great_question": "Great question, and the answer is yes.",
    "happy_to_help": "I'd be happy to help with the garden.",
    "let_me_know": "Let me know if you want the longer version.",
    "heres_the_rewrite": "Here's the rewritten version of your note.",
    "apologize_confusion": "I apologize for the confusion about the dates.",
    "todays_world": "In today's fast-paced world, nobody reads letters.",
    "ever_evolving": "Shops must keep up with an ever-changing market.",
    "in_an_era": "In an era where everyone has a phone, the box rarely rings.",
    "lets_dive_in": "Let's dive into the numbers.",
    "imagine_a_world": "Imagine a world without traffic.",
    "when_it_comes_to": "When it comes to bread, flour matters.",
    "in_this_article": "In this article, we'll look at tides.",
    "delve": "We delve into the archive.",
    "tapestry": "The city is a rich tapestry of cultures.",
    "testament": "The bridge is a testament to Victorian engineering.",
    "navigate_complexities": "Parents navigate the complexities of school admissions.",
    "realm": "This is new in the realm of baking.",
    "landscape": "Shops struggle in the digital landscape.",
    "crucial_role": "Bees play a crucial role in farming.",
    "pivotal": "It was a pivotal moment for the club.",
    "seamless": "The handover was seamless.",
    "robust": "We need a robust plan.",
    "leverage": "We leverage our contacts.",
    "harness_unlock": "Unlock the full potential of your garden.",
    "embark_journey": "We embark on a new journey.",
    "game_changer": "The new bus route is a game-changer.",
    "cutting_edge": "They sell cutting-edge bikes.",
    "foster_elevate": "The club fosters a sense of belonging.",
    "importance_of": "The flood highlights the importance of drains.",
    "underscore": "The result underscores the need for rain.",
    "meticulous": "Her notes were meticulous.",
    "multifaceted": "The problem is multifaceted.",
    "myriad_plethora": "There is a plethora of choice.",
    "intricate": "The lace is intricate.",
    "showcase": "The fair showcases local cheese.",
    "vibrant": "The market is vibrant on Saturdays.",
    "resonate": "The song resonates with older listeners.",
    "dive_deep": "We dive deep into the data.",
    "shed_light": "The letters shed light on the war years.",
    "beacon_trove": "The library is a treasure trove of maps.",
    "forefront": "The town was at the forefront of the wool trade.",
    "insights": "The survey gave valuable insights.",
    "commendable": "Her effort was commendable.",
    "fast_paced": "It is a fast-paced job.",
    "streamline": "We streamline the forms.",
    "important_to_note": "It's important to note that the shop shuts at five.",
    "worth_noting": "It is worth noting that the road floods.",
    "goes_without_saying": "Needless to say, we got wet.",
    "furthermore": "The rent went up. Moreover, the heating broke.",
    "in_conclusion": "In conclusion, the bridge needs work.",
    "ultimately": "Ultimately, the vote was close.",
    "that_being_said": "That being said, the soup was good.",
    "essential_to": "It is essential to book early.",
    "potentially": "The rain could potentially flood the road.",
    "could_be_argued": "It could be argued that the bus is late.",
    "generally_speaking": "Generally speaking, the trains run on time.",
    "not_only_but_also": "The fair was not only busy but also cheap.",
    "not_just_its": "It's not just a bakery, it's a meeting place.",
    "whether_youre": "Whether you're a beginner or an expert, the class helps.",
    "more_than_just": "The pub is more than just a pub.",
    "uniform_rhythm": " ".join(f"The {w} team met on the first day of the month to plan the work." for w in
                               ["red", "blue", "green", "gold", "grey", "pink", "brown"]),
    "rule_of_three": "We bought eggs, milk, and bread. They sold hats, scarves, and gloves.",
    "em_dash": "The house — old, damp — stood there — empty — and the garden — wild — grew.",
    "signpost_stack": "The rent rose. However, we stayed. Moreover, the heating broke. Also, the roof leaked.",
    "hedge_stack": "It seems the plan could perhaps work. Possibly it will, though arguably it typically fails.",
}


def test_catalogue_is_well_formed() -> None:
    ids = [t.id for t in CATALOGUE]
    assert len(ids) == len(set(ids)) and set(BY_ID) == set(ids)
    for t in CATALOGUE:
        assert t.category in CATEGORY_TITLES, t.id
        assert 0 < t.weight <= 6 and t.max_count >= 1 and t.explanation.strip(), t.id
        assert re.fullmatch(r"[a-z][a-z_]*", t.id), t.id
        if t.pattern is not None:
            re.compile(t.pattern)
    assert {t.id for t in CATALOGUE if t.category == "rhythm"} == MEASURED


@pytest.mark.parametrize("tell_id", [t.id for t in CATALOGUE])
def test_every_tell_fires_on_its_example(tell_id: str) -> None:
    hits = {h.id for h in score_text(EXAMPLES[tell_id]).hits}
    assert tell_id in hits, (tell_id, hits)


def test_curly_apostrophes_and_case_count_too() -> None:
    assert {h.id for h in score_text("IT’S IMPORTANT TO NOTE THAT in today’s world we delve.").hits} == {
        "important_to_note", "todays_world", "delve"}


def test_docs_list_the_whole_catalogue() -> None:
    """docs/ai-tells.md carries the table generated from the catalogue (``humanizer tells --catalogue``)."""
    assert catalogue_markdown() in DOCS.read_text(), "regenerate the table: uv run humanizer tells --catalogue"


def test_phrases_to_avoid_come_from_the_catalogue() -> None:
    avoid = phrases_to_avoid()
    assert "delve" in avoid and "I hope this helps" in avoid and "In today's fast-paced world" in avoid
    assert len(avoid) == len({t.id for t in CATALOGUE if t.avoid})
    assert "delve" not in phrases_to_avoid({"stock_phrase": False})


# ---- scoring ------------------------------------------------------------------------------------
def test_scores_are_bounded_and_deterministic() -> None:
    assert score_text("").score == 0.0 and score_text("").words == 0
    text = "Certainly! " * 200
    assert score_text(text) == score_text(text) and 0 <= score_text(text).score <= 100
    plain = "We walked to the shop, bought bread and came home along the river before it rained."
    assert score_text(plain).score == 0 and not score_text(plain).flagged


def test_short_texts_are_not_blown_up_by_one_match() -> None:
    one = score_text("The plan is robust.")  # 4 words: counted over MIN_WORDS
    assert one.points == 1 and one.score == pytest.approx(100 * (1 - 2.718281828 ** (-100 / MIN_WORDS / 8)), 0.1)
    assert not one.flagged
    assert score_text("Certainly! I hope this helps.").flagged  # chatbot artefacts are strong on their own


def test_counts_are_capped_per_paragraph() -> None:
    many = score_text("We delve. " * 10)
    assert [(h.id, h.count) for h in many.hits if h.id != "uniform_rhythm"] == [("delve", 3)]
    two = score_text("We delve. We delve.\n\nWe delve. We delve.")
    assert [(h.id, h.count) for h in two.hits] == [("delve", 4)]


def test_a_document_adds_up_its_chunks() -> None:
    chunks = [p for _, p in paragraphs(DATA / "ai_corpus")]
    total = TellStats()
    for c in chunks:
        total += analyse(c)
    assert score_stats(total) == score_text("\n\n".join(chunks))


def test_report_before_and_after() -> None:
    originals = ["In today's fast-paced world, it's important to note that we delve deep into data.",
                 "```code```", "Plain words about a walk by the river with the dog on Sunday."]
    rewrites = ["These days we look closely at data.", "```code```", originals[2]]
    report = tell_report(originals, rewrites, [0, 2])
    assert report.chunks_scored == 2 and report.before.score > 50 and report.after.score == 0
    assert (report.chunks_flagged_before, report.chunks_flagged_after) == (1, 0)
    assert [c.index for c in report.worst_chunks] == []  # nothing left after
    data = report.model_dump_json()
    assert "delve" in data and "river" not in data and "fast-paced world" not in data  # ids, never text


def test_verification_carries_the_report() -> None:
    originals = ["It is worth noting that the team utilizes robust tools. Furthermore, 42 tests pass."]
    report = verify_document(originals, ["The team uses good tools, and 42 tests pass."])
    assert report.tells is not None and report.tells.before.score > report.tells.after.score
    assert report.passed  # tells never fail verification
    assert "AI tells: " in render_text(report) and "before" in render_text(report)
    assert verify_document(originals, originals, VerificationOptions(tells=False)).tells is None


# ---- corpora: false positives on human prose, and AI-style text scoring high -------------------
def _flagged(corpus: list[tuple[str, str]]) -> tuple[list[tuple[str, float]], list[float]]:
    scores = [(name, score_text(text).score) for name, text in corpus]
    return [(n, s) for n, s in scores if s >= FLAG_SCORE], [s for _, s in scores]


def test_human_corpus_is_not_flagged() -> None:
    corpus = paragraphs(DATA / "human_corpus")
    assert len(corpus) >= 30 and sum(len(t.split()) for _, t in corpus) >= 3000
    flagged, scores = _flagged(corpus)
    rate = len(flagged) / len(corpus)
    print(f"\nFIGURE human corpus: {len(flagged)}/{len(corpus)} paragraphs flagged ({rate:.1%}), "
          f"median score {statistics.median(scores):.1f}, mean {statistics.fmean(scores):.1f}; flagged: {flagged}")
    assert rate <= HUMAN_MAX_FLAGGED, flagged
    docs = {p.name: score_text(p.read_text()).score for p in sorted((DATA / "human_corpus").glob("*.txt"))}
    print(f"FIGURE human documents: max {max(docs.values()):.1f} ({max(docs, key=docs.__getitem__)})")
    assert max(docs.values()) < FLAG_SCORE, docs


def test_python_reference_is_not_flagged() -> None:
    corpus = pydoc_paragraphs()
    assert len(corpus) >= 200
    flagged, scores = _flagged(corpus)
    rate = len(flagged) / len(corpus)
    print(f"\nFIGURE Python reference: {len(flagged)}/{len(corpus)} paragraphs flagged ({rate:.1%}), "
          f"mean score {statistics.fmean(scores):.1f}, max {max(scores):.1f}")
    assert rate <= PYDOC_MAX_FLAGGED, flagged


def test_ai_style_corpus_scores_high() -> None:
    corpus = paragraphs(DATA / "ai_corpus")
    assert len(corpus) >= 15
    flagged, scores = _flagged(corpus)
    rate = len(flagged) / len(corpus)
    docs = {p.name: score_text(p.read_text()).score for p in sorted((DATA / "ai_corpus").glob("*.txt"))}
    print(f"\nFIGURE AI-style corpus: {len(flagged)}/{len(corpus)} paragraphs flagged ({rate:.1%}), "
          f"median score {statistics.median(scores):.1f}; documents {docs}")
    assert rate >= AI_MIN_FLAGGED
    assert statistics.median(scores) >= 60 and min(docs.values()) >= 50, docs


def test_cli_scores_files_offline(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from humanizer.cli import app

    path = tmp_path / "post.md"
    path.write_text("Certainly! In today's fast-paced world, it's important to note that we delve deeper.\n")
    result = CliRunner().invoke(app, ["tells", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)[str(path)]
    assert data["flagged"] and {"certainly", "todays_world", "delve"} <= {h["id"] for h in data["hits"]}
    result = CliRunner().invoke(app, ["tells", "--catalogue"])
    assert result.exit_code == 0 and "`delve`" in result.output
    assert CliRunner().invoke(app, ["tells"]).exit_code == 2


def test_one_line_note_for_status_messages() -> None:
    from humanizer.verification.tells import report_note

    report = verify_document(["It is worth noting that we delve."], ["We look."]).model_dump(mode="json")
    assert report_note(report) == f"; AI-tell score {report['tells']['before']['score']:.1f} → 0.0"
    assert report_note({"passed": True}) == "" and report_note(None) == ""


def test_patterns_are_lower_case() -> None:
    """They are matched against lower-cased text (tells._alternation)."""
    for t in CATALOGUE:
        if t.pattern is not None:
            assert not re.search(r"(?<!\\)[A-Z]", re.sub(r"\\[A-Za-z]", "", t.pattern)), t.id
