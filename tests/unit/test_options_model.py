"""The guard against drift of a job's options: ``JobOptions`` (jobs/options.py) is the one declaration, and the
CLI's options, the API's request schema (the served OpenAPI document), ``JobRequest``, the operator's spec
mapping and the HumanizeJob CRD's openAPIV3Schema must agree with it field by field: type, minimum, maximum,
lengths, pattern, choices and defaults — and each front end must accept and refuse the same values at every
limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from pydantic import ValidationError
from typer.core import TyperOption
from typer.testing import CliRunner

from humanizer import cli
from humanizer.api.app import create_app
from humanizer.api.schemas import JobCreate
from humanizer.api.settings import ApiSettings
from humanizer.config import Settings
from humanizer.jobs.models import JobRequest
from humanizer.jobs.options import CHOICE_FIELDS, SPEC_PATHS, JobOptions, choice_of, limits_text
from humanizer.jobs.submit import SubmissionError, TooManyChunks, submit_job
from humanizer.providers import PROVIDERS, STYLES
from humanizer.providers.targets import OPT_IN_NAMES
from humanizer_operator.handlers.jobs import build_request

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
FIELDS = list(JobOptions.model_fields)
#: spec properties that are not job options (the input, the output, the object's own life)
NOT_OPTIONS = {"input", "output", "suspend", "activeDeadlineSeconds", "ttlSecondsAfterFinished"}
CLI_COMMANDS = ("run", "eval", "submit")


def properties(model: type[JobOptions]) -> dict[str, dict[str, Any]]:
    """A model's property schemas, without ``default: null`` (FastAPI leaves it out of the document)."""
    props = model.model_json_schema()["properties"]
    return {k: {key: v for key, v in p.items() if not (key == "default" and v is None)} for k, p in props.items()}


def option_schemas() -> dict[str, dict[str, Any]]:
    return properties(JobOptions)


def value_schema(prop: dict[str, Any]) -> dict[str, Any]:
    """The non-null variant of an optional property."""
    variants = [v for v in prop.get("anyOf", [prop]) if v.get("type") != "null"]
    assert len(variants) == 1, prop
    return variants[0]


def constraints(schema: dict[str, Any]) -> dict[str, Any]:
    """What a value must satisfy, in one form for JSON Schema 2020-12 (pydantic) and OpenAPI 3.0 (the CRD:
    ``exclusiveMinimum: true`` next to ``minimum``); enums as sets (their order means nothing)."""
    out: dict[str, Any] = {"type": schema.get("type")}
    if schema.get("exclusiveMinimum") is True:
        out["exclusiveMinimum"] = float(schema["minimum"])
    elif "exclusiveMinimum" in schema:
        out["exclusiveMinimum"] = float(schema["exclusiveMinimum"])
    elif "minimum" in schema:
        out["minimum"] = float(schema["minimum"])
    for key in ("maximum",):
        if key in schema:
            out[key] = float(schema[key])
    for key in ("minLength", "maxLength", "pattern", "maxItems", "minItems"):
        if key in schema:
            out[key] = schema[key]
    if "enum" in schema:
        out["enum"] = set(schema["enum"])
    if "items" in schema:
        out["items"] = constraints(schema["items"])
    return out


def crd_spec() -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "charts/humanizer/crds/humanizejobs.yaml").read_text())
    schema = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return dict(schema["properties"]["spec"])


def crd_property(path: tuple[str, ...]) -> dict[str, Any]:
    node = crd_spec()
    for key in path:
        node = node["properties"][key]
    return dict(node)


def bounds(name: str) -> list[tuple[Any, bool]]:
    """Values at and just beyond each numeric limit of option ``name``, with whether they are valid."""
    schema = value_schema(option_schemas()[name])
    step: float = 1 if schema["type"] == "integer" else 0.001
    cases: list[tuple[Any, bool]] = []
    if "minimum" in schema:
        cases += [(schema["minimum"], True), (schema["minimum"] - step, False)]
    if "exclusiveMinimum" in schema:
        cases += [(schema["exclusiveMinimum"], False), (schema["exclusiveMinimum"] + step, True)]
    if "maximum" in schema:
        cases += [(schema["maximum"], True), (schema["maximum"] + step, False)]
    cast = int if schema["type"] == "integer" else float
    return [(cast(v), ok) for v, ok in cases]


NUMERIC = [n for n in FIELDS if value_schema(option_schemas()[n]).get("type") in ("integer", "number")]
BOUNDS = [(name, value, ok) for name in NUMERIC for value, ok in bounds(name)]


# ---- the API's request schema and JobRequest -------------------------------------------------------------
def test_the_served_api_schema_is_the_options_model() -> None:
    """The OpenAPI document's JobCreate has every option, with exactly the model's schema (the served
    ``fallback`` lists this server's target names instead of a pattern: api/app.py)."""
    served = create_app(Settings(), ApiSettings(tokens="t0ken-unit")).openapi()["components"]["schemas"]["JobCreate"]
    options = option_schemas()
    assert set(options) <= set(served["properties"])
    assert set(served["properties"]) - set(options) == {"text", "chunks", "job_id"}
    for name, prop in options.items():
        got = served["properties"][name]
        if name == "fallback":
            assert value_schema(got)["maxItems"] == 0 and value_schema(got)["uniqueItems"] is True, got
            assert value_schema(properties(JobCreate)[name]) == value_schema(prop)
            continue
        assert got == prop, name


def test_job_request_is_the_options_model_plus_the_input() -> None:
    request = properties(JobRequest)
    assert set(request) == set(FIELDS) | {"text", "chunks", "job_id"}
    for name, prop in option_schemas().items():
        assert request[name] == prop, name
    assert issubclass(JobCreate, JobRequest) and issubclass(JobRequest, JobOptions)


@pytest.mark.parametrize(("name", "value", "ok"), BOUNDS)
def test_every_front_end_takes_the_same_values_at_each_limit(name: str, value: Any, ok: bool) -> None:
    """JobCreate (HTTP), JobRequest (Python API, CLI) and the operator's build_request accept and refuse alike."""
    results = {}
    for front, make in {
        "api": lambda: JobCreate.model_validate({"text": "t", name: value}),
        "python": lambda: JobRequest(text="t", **{name: value}),
        "operator": lambda: build_request(nested(SPEC_PATHS[name], value), "t", "hj-1"),
    }.items():
        try:
            results[front] = getattr(make(), name) == value
        except ValidationError:
            results[front] = False
    assert results == {"api": ok, "python": ok, "operator": ok}, (name, value)


def test_choices_are_the_registries() -> None:
    """Style, provider and error kinds: the enums are the names the code knows, refused alike."""
    expected = {"style": set(STYLES), "provider": set(PROVIDERS), "fallback_also_on": set(OPT_IN_NAMES)}
    assert set(CHOICE_FIELDS) == set(expected)
    for name, values in expected.items():
        choice = choice_of(JobOptions.model_fields[name])
        assert choice is not None and set(choice.values) == values
        bad: Any = ["nope"] if name == "fallback_also_on" else "nope"
        with pytest.raises(ValidationError):
            JobCreate.model_validate({"text": "t", name: bad})
        problems = list(JobRequest(text="t", **{name: bad}).choice_problems())
        assert len(problems) == 1 and "'nope'" in problems[0], problems
        with pytest.raises(SubmissionError, match="'nope'"):
            submit_job(JobRequest(text="t", **{name: bad}), Settings())
        good: Any = [sorted(values)[0]] if name == "fallback_also_on" else sorted(values)[0]
        assert list(JobRequest(text="t", **{name: good}).choice_problems()) == []
        JobCreate.model_validate({"text": "t", name: good})


# ---- the CRD and the operator's mapping ------------------------------------------------------------------
def nested(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {path[-1]: value}
    for key in reversed(path[:-1]):
        spec = {key: spec}
    return spec


def spec_leaves(node: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if node.get("type") == "object" and "properties" in node:
        return [leaf for key, child in node["properties"].items() for leaf in spec_leaves(child, (*path, key))]
    return [path]


def test_every_option_has_its_place_in_the_crd_and_nothing_else_does() -> None:
    assert list(SPEC_PATHS) == FIELDS
    leaves = {leaf for leaf in spec_leaves(crd_spec()) if leaf[0] not in NOT_OPTIONS}
    assert leaves == set(SPEC_PATHS.values())


@pytest.mark.parametrize("name", FIELDS)
def test_the_crd_validates_each_option_as_the_model_does(name: str) -> None:
    prop = option_schemas()[name]
    crd = crd_property(SPEC_PATHS[name])
    assert constraints(crd) == constraints(value_schema(prop)), name
    default = JobOptions.model_fields[name].default
    assert crd.get("default") == default, f"{name}: the CRD's default {crd.get('default')!r}, the model's {default!r}"


@pytest.mark.parametrize("name", FIELDS)
def test_the_operator_maps_each_spec_field(name: str) -> None:
    value = {"style": "casual", "custom_prompt": "Be brief.", "provider": "echo", "model": "m", "temperature": 0.5,
             "max_tokens": 64, "chunk_max_tokens": 100, "passthrough_structures": False, "context_chars": 10,
             "verify": False, "priority": "low", "token_budget": 7, "max_cost_usd": 0.5, "fallback": ["b"],
             "fallback_also_on": ["auth"], "second_pass": True}[name]
    assert value != JobOptions.model_fields[name].default
    request = build_request(nested(SPEC_PATHS[name], value), "text", "hj-1")
    assert getattr(request, name) == value
    assert request.model_dump(exclude={name, "text", "job_id"}) == JobRequest(text="x").model_dump(
        exclude={name, "text", "job_id"}
    ), "one spec field set only that option"


# ---- the CLI ---------------------------------------------------------------------------------------------
def cli_options(command: str) -> dict[str, Any]:
    """The command's options that are job options, by field name."""
    cmd = typer.main.get_command(cli.app).commands[command]  # type: ignore[attr-defined]
    out = {}
    for param in cmd.params:
        name = cli.OPTION_FIELDS.get(str(param.name), str(param.name))
        if isinstance(param, TyperOption) and name in JobOptions.model_fields:
            out[name] = param
    return out


def test_run_offers_every_option() -> None:
    assert set(cli_options("run")) == set(FIELDS)
    assert set(cli_options("eval")) and set(cli_options("submit"))


@pytest.mark.parametrize("command", CLI_COMMANDS)
def test_cli_options_agree_with_the_model(command: str) -> None:
    for name, param in cli_options(command).items():
        schema = value_schema(option_schemas()[name])
        kind = {"integer": int, "number": float, "boolean": bool}.get(schema["type"], str)
        annotation = param.type_descriptor.annotation
        assert annotation in (kind, kind | None), (command, name, annotation)
        assert param.is_bool_flag == (kind is bool), (command, name)
        assert param.default == JobOptions.model_fields[name].default, (command, name, param.default)
        assert limits_text(name) in (param.help or ""), (command, name, param.help)
        assert "--" + str(param.name).replace("_", "-") in param.opts, (command, name, param.opts)


@pytest.fixture
def document(tmp_path: Path) -> Path:
    path = tmp_path / "doc.md"
    path.write_text("A short document.\n")
    return path


def run_cli(document: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[Any, list[JobRequest]]:
    """``humanizer run DOC ARGS``, up to the submission (what it would submit is captured)."""
    built: list[JobRequest] = []

    def captured(req: JobRequest, quiet: bool) -> Any:
        built.append(req)
        raise typer.Exit(0)

    monkeypatch.setattr(cli, "_submit_and_follow", captured)
    return CliRunner().invoke(cli.app, ["run", str(document), *args]), built


@pytest.mark.parametrize(("name", "value", "ok"), BOUNDS)
def test_cli_takes_the_same_values_at_each_limit(
    document: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: Any, ok: bool
) -> None:
    flag = cli_options("run")[name].opts[0]
    result, built = run_cli(document, monkeypatch, flag, str(value))
    if ok:
        assert result.exit_code == 0 and getattr(built[0], name) == value, result.output
    else:
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2 and not built, result.output
        assert len(lines) == 1 and lines[0].startswith(f"error: {flag}:"), result.output


def test_cli_builds_the_whole_request(document: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result, built = run_cli(
        document, monkeypatch, "--style", "casual", "--prompt", "Be brief.", "--provider", "echo", "--model", "m",
        "--temperature", "0.5", "--max-tokens", "64", "--chunk-tokens", "100", "--no-passthrough",
        "--context-chars", "10", "--no-verify", "--priority", "low", "--token-budget", "7", "--max-cost-usd", "0.5",
        "--fallback", "b, c", "--fallback-also-on", "auth,permission", "--second-pass",
    )
    assert result.exit_code == 0, result.output
    assert built[0].model_dump(exclude={"text", "chunks", "job_id"}) == {
        "style": "casual", "custom_prompt": "Be brief.", "provider": "echo", "model": "m", "temperature": 0.5,
        "max_tokens": 64, "chunk_max_tokens": 100, "passthrough_structures": False, "context_chars": 10,
        "verify": False, "priority": "low", "token_budget": 7, "max_cost_usd": 0.5, "fallback": ["b", "c"],
        "fallback_also_on": ["auth", "permission"], "second_pass": True,
    }
    result, built = run_cli(document, monkeypatch)
    assert result.exit_code == 0 and built[0] == JobRequest(text=built[0].text), "no options: the model's defaults"


# ---- errors ----------------------------------------------------------------------------------------------
def test_too_many_chunks_is_its_own_error() -> None:
    with pytest.raises(TooManyChunks, match="3 chunks; the limit is 2"):
        submit_job(JobRequest(chunks=["a", "b", "c"]), Settings(max_chunks=2))
    assert issubclass(TooManyChunks, SubmissionError)
