"""Unit tests of the verification package: fact extraction, chunk/document checks, reports."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from humanizer.verification import (
    ChunkReport,
    Facts,
    VerificationOptions,
    VerificationReport,
    extract_facts,
    render_report,
    render_text,
    verify_chunk,
    verify_document,
)

pytestmark = pytest.mark.unit

ORIGINAL = (
    "In 2023 the World Health Organization reported that vaccination coverage rose to 84% across "
    "194 member states, according to Dr. Maria Chen. The full report, published on March 5, 2024, "
    'is available at https://who.int/report. She said "progress is real but fragile" during the '
    "briefing in Geneva, where 1,250 delegates attended."
)
PARAPHRASE = (
    "Vaccination coverage climbed to 84% across all 194 member states in 2023, the World Health "
    "Organization reported, citing Dr. Maria Chen. Published on 5 March 2024, the full report can be "
    "read at https://who.int/report. Speaking to 1250 delegates at the Geneva briefing, Chen noted "
    'that "progress is real but fragile".'
)


# ---------------------------------------------------------------------------------------------
# Fact extraction: numbers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("It grew by 42 units.", {"42"}),
        ("Version 3.5 shipped.", {"3.5"}),
        ("The answer was 3.", {"3"}),  # a sentence-final full stop is not a decimal point
        ("We counted 1,234,567 votes and 1000 more.", {"1234567", "1000"}),
        ("It cost 3.50 then.", {"3.5"}),
        ("Prices fell -5 points, or −7 on the other index.", {"-5", "-7"}),
        ("A 12.5% rise", {"12.5%"}),
        ("50 percent and 60 per cent", {"50%", "60%"}),
        ("It raised $3.2 million.", {"$3200000"}),
        ("It raised $3,200,000.", {"$3200000"}),
        ("It raised 3.2 million dollars.", {"$3200000"}),
        ("It raised US$3.2M.", {"$3200000"}),
        ("It cost €40 and £12.", {"€40", "£12"}),
        ("A range of 10–20 items.", {"10", "20"}),
        ("Growth of 10-20% is expected.", {"10%", "20%"}),
        ("Between 10 - 20 people.", {"10", "20"}),
        ("A $10–20 million budget.", {"$10000000", "$20000000"}),
        ("In 1999 and again in 2024.", {"1999", "2024"}),
        ("A 10km run on the 21st.", {"10", "21"}),
        ("Run 5m further.", {"5"}),  # a unit, not a scale, without a currency
        ("Address 192.168.0.1 and v1.2.3.", {"192.168.0.1"}),
        ("The B2B market", set()),
        ("Five people came.", set()),  # spelled-out numbers are evidence, not facts
    ],
)
def test_numbers(text: str, expected: set[str]) -> None:
    assert set(extract_facts(text).numbers) == expected


def test_number_normalisation_makes_spellings_equal() -> None:
    assert extract_facts("1,000 people").numbers == extract_facts("1000 people").numbers
    assert extract_facts("50%").numbers == extract_facts("50 percent").numbers
    assert extract_facts("$3.2 million").numbers == extract_facts("$3,200,000").numbers


# ---------------------------------------------------------------------------------------------
# Dates, URLs, e-mails, quotes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Due 2024-03-05.", {"2024-03-05"}),
        ("Due March 5, 2024.", {"2024-03-05"}),
        ("Due March 5th 2024.", {"2024-03-05"}),
        ("Due 5 March 2024.", {"2024-03-05"}),
        ("Due the 5th of March, 2024.", {"2024-03-05"}),
        ("Due Mar. 2024.", {"2024-03"}),
        ("Due March 2024.", {"2024-03"}),
        ("Due on March 5.", {"--03-05"}),
        ("Due 25/12/2023.", {"2023-12-25"}),
        ("Due 12/25/2023.", {"2023-12-25"}),
        ("Due 03/05/2024.", {"3/5/2024"}),  # ambiguous order: kept as written
        ("Logged at 2024-03-05T10:00.", {"2024-03-05"}),
        ("We march 5 miles.", set()),  # month names must be capitalised
        ("Due in May.", set()),  # a bare month is no date
    ],
)
def test_dates(text: str, expected: set[str]) -> None:
    assert set(extract_facts(text).dates) == expected


def test_dates_are_not_numbers() -> None:
    facts = extract_facts("On March 5, 2024 we shipped 7 crates.")
    assert facts.dates == ["2024-03-05"]
    assert facts.numbers == ["7"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("See https://example.com/a/b.", {"https://example.com/a/b"}),
        ("See https://example.com/a, then go.", {"https://example.com/a"}),
        ("(see https://example.com/x)", {"https://example.com/x"}),
        ("Read https://en.wikipedia.org/wiki/Foo_(bar).", {"https://en.wikipedia.org/wiki/Foo_(bar)"}),
        ("[docs](https://docs.example.org/guide?x=1#top)!", {"https://docs.example.org/guide?x=1#top"}),
        ("Visit www.Example.com/Path today", {"www.example.com/Path"}),
        ("Go to HTTPS://EXAMPLE.COM/", {"https://example.com"}),
    ],
)
def test_urls(text: str, expected: set[str]) -> None:
    assert set(extract_facts(text).urls) == expected


def test_url_digits_are_not_numbers() -> None:
    facts = extract_facts("See https://example.com/2024/42 for details.")
    assert facts.numbers == []


def test_emails() -> None:
    facts = extract_facts("Write to Jane.Doe@Example.org. Or ops+alerts@example.co.uk, thanks.")
    assert facts.emails == ["jane.doe@example.org", "ops+alerts@example.co.uk"]


def test_email_inside_url_is_part_of_the_url() -> None:
    facts = extract_facts("Open https://user@example.com/x now.")
    assert facts.urls == ["https://user@example.com/x"]
    assert facts.emails == []


def test_quotes() -> None:
    facts = extract_facts('He said "we  will win" and she wrote “never again”, then «fin».')
    assert facts.quotes == ["fin", "never again", "we will win"]


def test_quotes_need_content() -> None:
    assert extract_facts('An empty "" or "  " or "..." quote.').quotes == []


# ---------------------------------------------------------------------------------------------
# Names


def test_multi_word_names() -> None:
    facts = extract_facts("The first program was written by Ada Lovelace for the World Health Organization.")
    assert {"Ada Lovelace", "World Health Organization"} <= set(facts.names)


def test_names_not_at_sentence_start() -> None:
    facts = extract_facts("Researchers found that Google agreed. Paris is big. They moved to Berlin.")
    assert "Google" in facts.names
    assert "Berlin" in facts.names
    assert "Researchers" not in facts.names
    assert "Paris" not in facts.names  # sentence-initial single word: not evidently a name
    assert "They" not in facts.names


def test_sentence_initial_word_known_elsewhere_is_a_name() -> None:
    facts = extract_facts("Paris is big. We love Paris.")
    assert facts.names == ["Paris"]


def test_sentence_initial_common_words_are_stripped() -> None:
    facts = extract_facts(
        "The World Health Organization met. However Microsoft declined. Yesterday Google spoke."
    )
    assert set(facts.names) == {"World Health Organization", "Microsoft", "Google"}


def test_names_exclusions() -> None:
    facts = extract_facts("Then I said that on Monday in May we would go. I'm sure It's fine.")
    assert facts.names == []


def test_acronyms_titles_connectors_and_possessives() -> None:
    facts = extract_facts(
        "NASA agreed. A report by Dr. Smith at the University of Oxford cited Google's results "
        "and Ludwig van Beethoven."
    )
    assert {"NASA", "Smith", "University of Oxford", "Google", "Ludwig van Beethoven"} <= set(facts.names)
    assert "Dr" not in facts.names


def test_capitalised_common_word_splits_a_run() -> None:
    facts = extract_facts("We met Alice And Bob.")
    assert set(facts.names) == {"Alice", "Bob"}


def test_facts_model_shape() -> None:
    facts = extract_facts(ORIGINAL)
    assert isinstance(facts, Facts)
    assert facts.numbers == ["1250", "194", "2023", "84%"]
    assert facts.dates == ["2024-03-05"]
    assert facts.urls == ["https://who.int/report"]
    assert facts.quotes == ["progress is real but fragile"]
    assert set(facts.names) == {"World Health Organization", "Maria Chen", "Geneva"}
    assert facts.surface("numbers", "1250") == "1,250"
    assert Facts.model_validate_json(facts.model_dump_json()).model_dump() == facts.model_dump()
    assert Facts().is_empty() and not facts.is_empty()


# ---------------------------------------------------------------------------------------------
# verify_chunk


def test_faithful_paraphrase_passes() -> None:
    report = verify_chunk(0, ORIGINAL, PARAPHRASE, VerificationOptions())
    assert report.passed, report.issues
    assert report.issues == []
    assert report.missing.total() == 0
    assert report.length_ratio is not None and 0.9 < report.length_ratio < 1.2
    assert report.content_overlap is not None and report.content_overlap > 0.5


def test_name_moved_to_sentence_start_is_present() -> None:
    original = "The new model was praised by researchers at OpenAI and by Ada Lovelace fans alike."
    rewritten = "OpenAI researchers praised the new model. Ada Lovelace fans did so too, alike."
    report = verify_chunk(0, original, rewritten)
    assert report.missing.names == []


def test_dropped_number_fails() -> None:
    rewritten = PARAPHRASE.replace(" across all 194 member states", " across member states")
    report = verify_chunk(3, ORIGINAL, rewritten)
    assert not report.passed
    assert report.missing.numbers == ["194"]
    assert "number 194 missing" in report.issues


def test_changed_number_is_missing_and_added() -> None:
    report = verify_chunk(0, ORIGINAL, PARAPHRASE.replace("84%", "85%"))
    assert not report.passed
    assert "number 84% missing" in report.issues
    assert report.added.numbers == ["85%"]


def test_number_message_uses_the_original_spelling() -> None:
    report = verify_chunk(0, ORIGINAL, PARAPHRASE.replace("1250 delegates", "many delegates"))
    assert "number 1,250 missing" in report.issues
    assert report.missing.numbers == ["1250"]


def test_changed_date_fails() -> None:
    report = verify_chunk(0, ORIGINAL, PARAPHRASE.replace("5 March 2024", "6 March 2024"))
    assert not report.passed
    assert report.missing.dates == ["2024-03-05"]
    assert "date March 5, 2024 missing" in report.issues


def test_dropped_url_fails() -> None:
    report = verify_chunk(0, ORIGINAL, PARAPHRASE.replace("at https://who.int/report", "online"))
    assert not report.passed
    assert report.missing.urls == ["https://who.int/report"]
    assert "URL https://who.int/report missing" in report.issues


def test_dropped_email_fails() -> None:
    original = "Questions about the new billing process should go to billing@example.com before Friday."
    rewritten = "Send your questions about the new billing process to the billing team before Friday."
    report = verify_chunk(0, original, rewritten)
    assert report.missing.emails == ["billing@example.com"]
    assert "email billing@example.com missing" in report.issues


def test_dropped_quote_fails() -> None:
    report = verify_chunk(
        0, ORIGINAL, PARAPHRASE.replace('"progress is real but fragile"', "progress was fragile")
    )
    assert not report.passed
    assert report.missing.quotes == ["progress is real but fragile"]
    assert "quote “progress is real but fragile” missing" in report.issues


def test_quote_with_other_quote_marks_is_present() -> None:
    report = verify_chunk(
        0, ORIGINAL, PARAPHRASE.replace('"progress is real but fragile"', "“progress is real but fragile”")
    )
    assert report.passed, report.issues


def test_dropped_name_fails() -> None:
    report = verify_chunk(0, ORIGINAL, PARAPHRASE.replace("at the Geneva briefing", "at the briefing"))
    assert not report.passed
    assert report.missing.names == ["Geneva"]
    assert "name Geneva missing" in report.issues


def test_name_presence_is_case_sensitive_and_whole_word() -> None:
    original = "The grant went to researchers working with Ada on the early analytical engine designs."
    assert verify_chunk(0, original, original.replace("Ada", "ada")).missing.names == ["Ada"]
    assert verify_chunk(0, original, original.replace("Ada", "Adam")).missing.names == ["Ada"]


def test_lenient_evidence() -> None:
    original = "The committee met in 2024 and approved five proposals from 5 teams on March 5."
    rewritten = "On March 5, 2024 the committee approved proposals from five teams after a meeting."
    report = verify_chunk(0, original, rewritten)
    assert report.missing.numbers == [] and report.missing.dates == []


def test_negative_number_may_be_rephrased_as_a_fall() -> None:
    original = "Quarterly revenue changed by -3.2% compared with the previous quarter of the year."
    rewritten = "Compared with the previous quarter of the year, quarterly revenue saw a 3.2% decline."
    assert verify_chunk(0, original, rewritten).passed


def test_ambiguous_numeric_date_matches_either_reading() -> None:
    original = "The contract between both parties was signed on 03/05/2024 at the regional office."
    for date in ("March 5, 2024", "3 May 2024", "03/05/2024"):
        rewritten = f"Both parties signed the contract at the regional office on {date}."
        assert verify_chunk(0, original, rewritten).passed, date
    assert not verify_chunk(0, original, original.replace("03/05/2024", "03/06/2024")).passed


def test_quote_trailing_punctuation_may_move_outside() -> None:
    original = 'The team called them "anchor days." Staff liked the anchor day policy a great deal.'
    rewritten = 'Staff liked the policy a great deal; the team called them "anchor days".'
    assert verify_chunk(0, original, rewritten).missing.quotes == []


def test_length_ratio_too_long_fails() -> None:
    report = verify_chunk(0, ORIGINAL, PARAPHRASE + " " + PARAPHRASE)
    assert not report.passed
    assert report.length_ratio is not None and report.length_ratio > 1.8
    assert any(i.startswith("length ratio") and "above maximum 1.80" in i for i in report.issues)


def test_length_ratio_too_short_fails() -> None:
    original = ORIGINAL + " " + ORIGINAL.replace("Geneva", "Lyon")
    report = verify_chunk(0, original, PARAPHRASE.replace("Geneva", "Geneva and Lyon"))
    assert not report.passed
    assert any("below minimum 0.50" in i for i in report.issues)


def test_length_ratio_bounds_are_options() -> None:
    opts = VerificationOptions(max_length_ratio=3.0)
    assert verify_chunk(0, ORIGINAL, PARAPHRASE + " " + PARAPHRASE, opts).passed


def test_empty_rewrite_fails() -> None:
    report = verify_chunk(0, "Hi there.", "")
    assert not report.passed
    assert "rewrite is empty" in report.issues


def test_empty_original() -> None:
    report = verify_chunk(0, "", "")
    assert report.passed
    assert report.length_ratio is None and report.content_overlap is None


def test_placeholder_error_fails_the_chunk() -> None:
    report = verify_chunk(5, ORIGINAL, ORIGINAL, placeholder_error="placeholder ⟦P3⟧ missing from output")
    assert not report.passed
    assert report.placeholder_error == "placeholder ⟦P3⟧ missing from output"
    assert report.issues[0].startswith("protected-span placeholders altered: placeholder ⟦P3⟧")


def test_placeholder_error_is_clipped() -> None:
    report = verify_chunk(0, "a", "a", placeholder_error="x" * 5000)
    assert report.placeholder_error is not None and len(report.placeholder_error) <= 200


def test_completely_different_text_fails_on_overlap() -> None:
    original = (
        "Photosynthesis converts sunlight, water and carbon dioxide into glucose and oxygen inside "
        "the chloroplasts of green plant leaves."
    )
    rewritten = (
        "Medieval merchants traded wool, spices and silver across crowded harbour markets during "
        "long winter festivals each season."
    )
    report = verify_chunk(0, original, rewritten)
    assert not report.passed
    assert report.content_overlap is not None and report.content_overlap < 0.35
    assert any(i.startswith("content overlap") for i in report.issues)


def test_overlap_is_not_enforced_on_tiny_chunks() -> None:
    report = verify_chunk(0, "Introduction to the topic", "Overview of the subject")
    assert report.passed
    assert report.content_overlap == 0


def test_toggles_disable_categories() -> None:
    rewritten = (
        PARAPHRASE.replace("84%", "most").replace("Geneva", "the").replace("https://who.int/report", "x")
    )
    opts = VerificationOptions(check_numbers=False, check_names=False, check_urls=False)
    report = verify_chunk(0, ORIGINAL, rewritten, opts)
    assert report.passed, report.issues


def test_fail_on_added() -> None:
    rewritten = PARAPHRASE + " Roughly 17 countries lagged."
    assert verify_chunk(0, ORIGINAL, rewritten).passed
    report = verify_chunk(0, ORIGINAL, rewritten, VerificationOptions(fail_on_added=True))
    assert not report.passed
    assert "number 17 added" in report.issues


def test_issue_values_are_short() -> None:
    long_quote = "word " * 60
    long_url = "https://example.com/" + "a" * 300
    original = f'She wrote "{long_quote.strip()}" and linked {long_url} for all of the readers to see.'
    report = verify_chunk(0, original, "She wrote something and linked a page for the readers to see it.")
    assert not report.passed
    assert report.missing.quotes and report.missing.urls
    for value in report.missing.quotes + report.missing.urls:
        assert len(value) <= 60
    for issue in report.issues:
        assert len(issue) < 100
        assert long_quote.strip() not in issue


def test_issue_list_is_capped() -> None:
    original = " ".join(f"Item {n} costs {n * 7} dollars." for n in range(1, 40))
    report = verify_chunk(
        0, original, "Everything is cheap here.", VerificationOptions(max_issues_per_chunk=10)
    )
    assert len(report.issues) == 10
    assert report.issues[-1].startswith("… and ")
    assert report.issues[0].startswith("length ratio")  # structural issues come first
    assert len(report.missing.numbers) > 10  # the missing lists themselves are complete


def test_options_validation() -> None:
    with pytest.raises(ValueError):
        VerificationOptions(min_length_ratio=2.0, max_length_ratio=1.5)
    with pytest.raises(ValueError):
        VerificationOptions(min_content_overlap=1.5)


# ---------------------------------------------------------------------------------------------
# verify_document


def test_document_all_good() -> None:
    report = verify_document([ORIGINAL, ORIGINAL], [PARAPHRASE, PARAPHRASE], VerificationOptions())
    assert report.passed
    counts = (report.chunks_total, report.chunks_checked, report.chunks_skipped, report.chunks_failed)
    assert counts == (2, 2, 0, 0)
    assert report.failed_chunks == [] and report.failed_indices == []
    assert report.document is not None and report.document.passed and report.document.index is None


def test_document_reports_only_failed_chunks() -> None:
    bad = PARAPHRASE.replace("84%", "85%")
    report = verify_document([ORIGINAL] * 3, [PARAPHRASE, bad, PARAPHRASE], VerificationOptions())
    assert not report.passed
    assert report.chunks_failed == 1
    assert report.failed_indices == [1]
    assert [c.index for c in report.failed_chunks] == [1]
    assert report.missing_totals["numbers"] == 1


def test_document_level_check_of_joined_texts() -> None:
    extra = " It was a long and tiring day for everyone in the room, and the coffee ran out early."
    report = verify_document(
        [ORIGINAL] * 4, [PARAPHRASE + extra] * 4, VerificationOptions(max_length_ratio=1.2)
    )
    doc = report.document
    assert doc is not None and doc.index is None
    assert not doc.passed
    assert doc.length_ratio == pytest.approx(report.failed_chunks[0].length_ratio, rel=0.01)
    assert any("above maximum 1.20" in i for i in doc.issues)
    assert doc.original_chars > 4 * len(ORIGINAL) - 10


def test_document_level_accepts_a_fact_moved_between_chunks() -> None:
    first = (
        "The survey of regional hospitals, led by Maria Chen, covered staffing, budgets and waiting times."
    )
    second = "Its findings were presented to health ministers at a meeting in the spring of that year."
    new_first = "Regional hospitals were surveyed on staffing, budgets and waiting times in a study."
    new_second = "Led by Maria Chen, it presented its findings to health ministers at a spring meeting."
    report = verify_document([first, second], [new_first, new_second])
    assert report.failed_indices == [0]
    assert report.document is not None and report.document.missing.names == []


def test_skip_set_is_respected() -> None:
    code = "```python\nprint(42)  # Answer https://x.io\n```"
    report = verify_document([ORIGINAL, code], [PARAPHRASE, "garbage"], VerificationOptions(), skip={1})
    assert report.passed
    assert report.chunks_checked == 1 and report.chunks_skipped == 1


def test_placeholder_errors_fail_their_chunk() -> None:
    report = verify_document(
        [ORIGINAL, ORIGINAL],
        [PARAPHRASE, ORIGINAL],
        VerificationOptions(),
        placeholder_errors={1: "placeholder ⟦P0⟧ altered"},
    )
    assert not report.passed
    assert report.failed_indices == [1]
    assert report.failed_chunks[0].placeholder_error == "placeholder ⟦P0⟧ altered"
    assert report.document is not None and report.document.passed  # the text itself is fine


def test_placeholder_error_wins_over_skip() -> None:
    report = verify_document([ORIGINAL], [ORIGINAL], placeholder_errors={0: "bad"}, skip={0})
    assert not report.passed and report.chunks_checked == 1


def test_all_skipped() -> None:
    report = verify_document(["a", "b"], ["a", "b"], skip={0, 1})
    assert report.passed and report.document is None and report.chunks_checked == 0


def test_empty_document() -> None:
    report = verify_document([], [])
    assert report.passed and report.chunks_total == 0


def test_length_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        verify_document(["a"], [])


def test_failed_details_are_capped() -> None:
    opts = VerificationOptions(max_failed_details=2)
    report = verify_document([ORIGINAL] * 5, [PARAPHRASE.replace("84%", "x")] * 5, opts)
    assert report.chunks_failed == 5
    assert report.failed_indices == [0, 1, 2, 3, 4]
    assert len(report.failed_chunks) == 2 and report.details_truncated


def test_report_json_round_trip() -> None:
    report = verify_document(
        [ORIGINAL, ORIGINAL, "code"],
        [PARAPHRASE.replace("Geneva", "the city"), ORIGINAL, "code"],
        VerificationOptions(min_content_overlap=0.3),
        placeholder_errors={1: "placeholder ⟦P1⟧ missing"},
        skip={2},
    )
    data = report.model_dump(mode="json")
    text = json.dumps(data)
    again = VerificationReport.model_validate(json.loads(text))
    assert again == report
    assert VerificationReport.model_validate_json(report.model_dump_json()) == report
    assert ChunkReport.model_validate(data["failed_chunks"][0]) == report.failed_chunks[0]


# ---------------------------------------------------------------------------------------------
# Rendering


def test_render_report_pass_and_fail() -> None:
    good = verify_document([ORIGINAL], [PARAPHRASE])
    text = render_text(good)
    assert "PASS" in text and "1 of 1 chunks checked" in text

    bad = verify_document([ORIGINAL] * 3, [PARAPHRASE.replace("84%", "85%").replace("Geneva", "the")] * 3)
    text = render_text(bad, max_issues=4)
    assert "FAIL" in text and "3 failed" in text
    assert "number 84% missing" in text and "name Geneva missing" in text
    assert "more issue(s)" in text
    assert ORIGINAL[:80] not in text  # no document text dumped


def test_render_report_is_printable_by_rich() -> None:
    from rich.console import Console

    console = Console(record=True, width=80, color_system=None)
    console.print(render_report(verify_document([ORIGINAL], [""])))
    assert "rewrite is empty" in console.export_text()


# ---------------------------------------------------------------------------------------------
# Properties

_TEXT = st.text(
    alphabet=st.characters(codec="utf-8"),
    max_size=300,
)
_TOKENS = [
    "The", "Ada Lovelace", "World Health Organization", "said", "that", "in", "2024", "$3.2 million",
    "1,000", "50%", "March 5, 2024", "https://example.com/a).", '"quoted words"', "“curly”", ".", ",",
    "\n", "-5", "10–20", "Dr.", "Smith's", "I", "and", "of", "x@y.com", "⟦P3⟧", "Mar.", "NASA",
]  # fmt: skip
_PROSEISH = st.lists(
    st.one_of(
        st.sampled_from(_TOKENS),
        st.text(max_size=12),
    ),
    max_size=60,
).map(" ".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_TEXT, _PROSEISH))
def test_identical_text_always_passes(text: str) -> None:
    report = verify_chunk(0, text, text)
    assert report.passed, report.issues
    assert verify_document([text, text], [text, text]).passed


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_TEXT, _PROSEISH), st.one_of(_TEXT, _PROSEISH), st.one_of(st.none(), _TEXT))
def test_verify_never_crashes(original: str, rewritten: str, error: str | None) -> None:
    report = verify_chunk(1, original, rewritten, placeholder_error=error)
    assert isinstance(report.passed, bool)
    VerificationReport.model_validate_json(
        verify_document(
            [original], [rewritten], placeholder_errors={0: error} if error else None
        ).model_dump_json()
    )
    render_text(verify_document([original, rewritten], [rewritten, original]))
    extract_facts(original)
