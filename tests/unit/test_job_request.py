import pytest
from pydantic import ValidationError

from humanizer.config import Settings
from humanizer.jobs.models import JobRequest
from humanizer.jobs.submit import SubmissionError, validate_text

pytestmark = pytest.mark.unit


def test_exactly_one_input() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        JobRequest()
    with pytest.raises(ValidationError, match="exactly one"):
        JobRequest(text="a", chunks=["b"])
    assert JobRequest(chunks=["a"]).chunks == ["a"]


def test_job_id_format() -> None:
    with pytest.raises(ValidationError):
        JobRequest(text="x", job_id="../../etc")
    assert JobRequest(text="x", job_id="job-1.a_b").job_id == "job-1.a_b"


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), ("  \n\t ", "empty"), ("abc\x00def", "NUL"), ("x" * 101, "limit is 100")],
)
def test_validate_text(text: str, message: str) -> None:
    s = Settings(_env_file=None, max_document_bytes=100)  # type: ignore[call-arg]
    with pytest.raises(SubmissionError, match=message):
        validate_text(text, s)
