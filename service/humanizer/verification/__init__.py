"""Verification that meaning and facts survived the rewrite.

``verify_document`` checks each rewritten chunk (and the joined document) for the numbers, dates,
URLs, quoted strings and capitalised names of the original, the length ratio and a cheap
content-overlap signal, and scores the prose for AI tells before and after (``tells``: a report only,
never a failure); ``render_report`` summarises the result for the CLI.
"""

from humanizer.verification.check import (
    ChunkReport,
    FactDiff,
    VerificationOptions,
    VerificationReport,
    verify_chunk,
    verify_document,
)
from humanizer.verification.facts import Facts, extract_facts
from humanizer.verification.report import render_report, render_text
from humanizer.verification.tells import CATALOGUE, TellReport, TellScore, score_text, tell_report

__all__ = [
    "CATALOGUE",
    "ChunkReport",
    "FactDiff",
    "Facts",
    "TellReport",
    "TellScore",
    "VerificationOptions",
    "VerificationReport",
    "extract_facts",
    "render_report",
    "render_text",
    "score_text",
    "tell_report",
    "verify_chunk",
    "verify_document",
]
