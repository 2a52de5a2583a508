"""``humanizer`` — the command line: run a document, run a worker, follow or cancel jobs, fake an LLM."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from humanizer.config import Settings, get_settings
from humanizer.jobs.models import JobRequest, JobView
from humanizer.jobs.options import JobOptions, limits_text
from humanizer.jobs.store import JobNotFound
from humanizer.logging import configure_logging
from humanizer.redis_client import RedisUnavailable
from humanizer.terminal import console, follow, print_report, print_summary

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
dlq_app = typer.Typer(no_args_is_help=True, help="List, inspect and replay dead letters.")
app.add_typer(dlq_app, name="dead-letters")
out = Console()

#: The CLI's job options: parameter name → its ``JobOptions`` field (jobs/options.py), where the names differ.
#: ``job_option`` takes each option's help and limits from the model, and the commands build the model
#: (``job_request``), so its limits are the CLI's; tests/unit/test_options_model.py checks they agree.
OPTION_FIELDS = {
    "prompt": "custom_prompt",
    "chunk_tokens": "chunk_max_tokens",
    "passthrough": "passthrough_structures",
}
#: list options given as one comma-separated value
LIST_OPTIONS = ("fallback", "fallback_also_on")


def job_option(name: str, *flags: str, help: str | None = None, **kwargs: Any) -> Any:
    """A typer option for the ``JobOptions`` field ``name``: its description (or ``help``) and its limits."""
    text = help or JobOptions.model_fields[name].description or name
    limits = limits_text(name)
    if name in LIST_OPTIONS:
        text += ", comma-separated"
        limits = f"each {limits}" if limits else ""
    return typer.Option(*flags, help=f"{text} ({limits})" if limits else text, **kwargs)


def job_request(**params: Any) -> JobRequest:
    """The ``JobRequest`` of a command's parameters (CLI names; ``None``: the default), or a one-line error
    naming the option (exit 2)."""
    values: dict[str, Any] = {}
    for param, value in params.items():
        name = OPTION_FIELDS.get(param, param)
        if name in LIST_OPTIONS and isinstance(value, str):
            value = [n.strip() for n in value.split(",") if n.strip()]
        if value is not None:
            values[name] = value
    try:
        return JobRequest(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err.get("loc") else ""
        param = next((p for p, f in OPTION_FIELDS.items() if f == field), field)
        where = "--" + param.replace("_", "-") if param else ""
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        raise fail(f"{where}: {message}" if where and field in JobOptions.model_fields else message, 2) from None


def fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def read_document(path: Path, max_bytes: int) -> str:
    """Read a UTF-8 text file, refusing what is missing, empty, binary, not UTF-8 or too big."""
    if not path.exists():
        raise fail(f"{path}: no such file", 2)
    if not path.is_file():
        raise fail(f"{path}: not a regular file", 2)
    size = path.stat().st_size
    if size > max_bytes:
        raise fail(f"{path}: {size:,} bytes; the limit is {max_bytes:,} (HUMANIZER_MAX_DOCUMENT_BYTES)", 2)
    data = path.read_bytes()
    if b"\x00" in data:
        raise fail(f"{path}: contains NUL bytes; is it a binary file?", 2)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(f"{path}: not valid UTF-8 (first bad byte at offset {exc.start})", 2) from None
    if not text.strip():
        raise fail(f"{path}: the file is empty", 2)
    return text


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="UTF-8 text or markdown file to rewrite")],
    style: Annotated[str | None, job_option("style")] = None,
    prompt: Annotated[str | None, job_option("custom_prompt", "--prompt")] = None,
    provider: Annotated[str | None, job_option("provider", help="the provider (default HUMANIZER_PROVIDER)")] = None,
    model: Annotated[str | None, job_option("model", help="model name for the openai provider")] = None,
    temperature: Annotated[float | None, job_option("temperature")] = None,
    max_tokens: Annotated[int | None, job_option("max_tokens")] = None,
    out_path: Annotated[Path | None, typer.Option("--out", "-o", help="write the result here")] = None,
    verify: Annotated[bool, job_option("verify", help="run the verification step")] = True,
    chunk_tokens: Annotated[int | None, job_option("chunk_max_tokens", "--chunk-tokens")] = None,
    context_chars: Annotated[int, job_option("context_chars")] = 0,
    passthrough: Annotated[bool, job_option("passthrough_structures", "--passthrough/--no-passthrough")] = True,
    priority: Annotated[str, job_option("priority")] = "normal",
    token_budget: Annotated[int | None, job_option("token_budget")] = None,
    max_cost_usd: Annotated[float | None, job_option("max_cost_usd")] = None,
    fallback: Annotated[
        str | None,
        job_option("fallback", help="fallback targets by name, in order ('' for none; default: all of "
                   "HUMANIZER_FALLBACK_TARGETS)"),
    ] = None,
    fallback_also_on: Annotated[str | None, job_option("fallback_also_on")] = None,
    second_pass: Annotated[
        bool | None, job_option("second_pass", "--second-pass/--no-second-pass", show_default=False)
    ] = None,
    local: Annotated[
        int, typer.Option(help="start an embedded Redis and this many local workers for the run (0: use REDIS_*)")
    ] = 0,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Rewrite FILE: submit it, show progress, print (or write) the result and the verification report."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    text = read_document(file, settings.max_document_bytes)
    req = job_request(
        text=text, style=style, prompt=prompt, provider=provider, model=model, temperature=temperature,
        max_tokens=max_tokens, verify=verify, chunk_tokens=chunk_tokens, context_chars=context_chars,
        passthrough=passthrough, priority=priority, token_budget=token_budget,
        max_cost_usd=max_cost_usd, fallback=fallback, fallback_also_on=fallback_also_on, second_pass=second_pass,
    )
    if local:
        from humanizer.local.stack import LocalStack

        with LocalStack(workers=local, concurrency=settings.celery_worker_concurrency):
            view = _submit_and_follow(req, quiet)
    else:
        view = _submit_and_follow(req, quiet)
    _emit_result(view, out_path)
    raise typer.Exit(0 if view.status.value == "SUCCESS" else 1)


def _submit_and_follow(req: JobRequest, quiet: bool) -> JobView:
    from humanizer.jobs.submit import SubmissionError, submit_job

    started = time.monotonic()
    try:
        job = submit_job(req)
    except (SubmissionError, RedisUnavailable) as exc:
        raise fail(str(exc), 2) from None
    console.print(f"job [bold]{job.job_id}[/]: {job.total_chunks} chunks ({job.model_chunks} to rewrite)")
    try:
        view = follow(job.job_id, quiet)
    except KeyboardInterrupt:
        console.print(f"\nstopped following; the job goes on. Cancel it with: humanizer cancel {job.job_id}")
        raise typer.Exit(130) from None
    print_summary(view, time.monotonic() - started)
    return view


def _emit_result(view: JobView, out_path: Path | None) -> None:
    if view.humanized_text is None:
        return
    print_report(view)
    if out_path:
        out_path.write_text(view.humanized_text, encoding="utf-8")
        console.print(f"result written to {out_path}")
    else:
        out.print(view.humanized_text, markup=False, highlight=False, soft_wrap=True)


@app.command()
def demo(
    workers: Annotated[int, typer.Option(help="local worker processes")] = 2,
    concurrency: Annotated[int, typer.Option(help="batch tasks per worker (x HUMANIZER_BATCH_SIZE calls)")] = 8,
    style: Annotated[str, typer.Option()] = "casual",
    out_path: Annotated[Path, typer.Option("--out", "-o")] = Path("out/demo-humanized.md"),
) -> None:
    """The whole pipeline on this machine with no API key: embedded Redis, real workers, offline model."""
    from humanizer.demo import run_demo

    raise typer.Exit(run_demo(workers=workers, concurrency=concurrency, style=style, out_path=out_path))


def _startup_checks() -> Settings:
    """Settings that validate and a Redis that answers with them, or a one-line error (exit 2)."""
    from humanizer.startup import StartupError, load_settings, wait_for_redis

    try:
        settings = load_settings()
        wait_for_redis(settings)
    except StartupError as exc:
        raise fail(str(exc), 2) from None
    return settings


@app.command()
def worker(
    concurrency: Annotated[
        int | None, typer.Option(help="batch tasks held (CELERY_WORKER_CONCURRENCY), x HUMANIZER_BATCH_SIZE calls")
    ] = None,
    pool: Annotated[str | None, typer.Option(help="threads, prefork or solo (CELERY_WORKER_POOL)")] = None,
    queues: Annotated[
        str, typer.Option(help="comma-separated queues, served in this order (control first: merges never wait); "
                          "control and humanize stand for <prefix>.control and <prefix>.humanize with a "
                          "HUMANIZER_KEY_PREFIX other than hz")
    ] = "control,humanize",
    hostname: Annotated[str | None, typer.Option(help="Celery node name")] = None,
    loglevel: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Run a Celery worker that rewrites chunks (and merges/verifies jobs)."""
    settings = _startup_checks()
    try:
        served = ",".join(settings.resolve_queues(queues))  # logical names map to this key prefix's queues
    except ValueError as exc:
        raise fail(f"--queues: {exc}", 2) from None
    configure_logging(loglevel or settings.log_level, settings.log_format)
    from humanizer.broker import configure_app
    from humanizer.worker import heartbeat

    celery = configure_app(settings)
    heartbeat.install(celery)  # HUMANIZER_WORKER_HEARTBEAT_FILE: the file the chart's probes check
    from humanizer.worker import shutdown

    shutdown.install(settings)  # a shutdown with Redis gone does not wait for the kill
    from humanizer.jobs.scheduler import SPARE_THREADS

    pool = pool or settings.celery_worker_pool
    # the threads pool runs spare threads for new jobs' first batches (jobs/scheduler.SPARE_THREADS)
    threads = (concurrency or settings.celery_worker_concurrency) + (SPARE_THREADS if pool == "threads" else 0)
    argv = [
        "worker",
        f"--concurrency={threads}",
        f"--pool={pool}",
        f"--queues={served}",
        f"--loglevel={(loglevel or settings.log_level).upper()}",
        "--without-gossip",
        "--without-mingle",
    ]
    if hostname:
        argv.append(f"--hostname={hostname}")
    celery.worker_main(argv)


@app.command()
def status(
    job_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="print the status as JSON")] = False,
) -> None:
    """Show a job's status and progress."""
    from humanizer.orchestration import OrchestrationService

    try:
        data = OrchestrationService().get_job_status(job_id)
    except RedisUnavailable as exc:
        raise fail(str(exc)) from None
    except JobNotFound:
        raise fail(f"no job {job_id}") from None
    if as_json:
        data.get("result", {}).pop("humanized_text", None)
        out.print_json(json.dumps(data))
        return
    p = data["progress"]
    out.print(
        f"{data['status']} ({data['phase']}): {p['completed']}/{p['total']} chunks, {p['failed']} failed, "
        f"{p['percentage']:.1f}%", highlight=False,
    )
    if data.get("ai_tell_score"):
        t = data["ai_tell_score"]
        out.print(f"AI-tell score {t['before']:.1f} before → {t['after']:.1f} after (0-100)", highlight=False)
    if data.get("error"):
        out.print(data["error"], highlight=False)


@app.command()
def result(
    job_id: str,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write the document here, not stdout")] = None,
) -> None:
    """Print a finished job's rewritten document (from Redis, like the HTTP API's /result)."""
    from humanizer.orchestration import OrchestrationService

    try:
        view = OrchestrationService().view(job_id, with_result=True)
    except RedisUnavailable as exc:
        raise fail(str(exc)) from None
    except JobNotFound:
        raise fail(f"no job {job_id}") from None
    if view.humanized_text is None:
        raise fail(f"job {job_id} has no result ({view.status.value}); see `humanizer status {job_id}`")
    if output is not None:
        output.write_text(view.humanized_text, encoding="utf-8")
        out.print(f"wrote {output} ({len(view.humanized_text.encode('utf-8')):,} bytes)", highlight=False)
        return
    sys.stdout.write(view.humanized_text)
    sys.stdout.flush()


@app.command()
def cancel(job_id: str) -> None:
    """Cancel a job: chunks not yet rewritten are skipped."""
    from humanizer.orchestration import OrchestrationService

    try:
        changed = OrchestrationService().cancel_job(job_id)
    except RedisUnavailable as exc:
        raise fail(str(exc)) from None
    except JobNotFound:
        raise fail(f"no job {job_id}") from None
    out.print(f"job {job_id} cancelled" if changed else f"job {job_id} had already ended")


@app.command()
def tells(
    files: Annotated[list[Path] | None, typer.Argument(help="text or markdown files to score")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the scores as JSON")] = False,
    catalogue: Annotated[bool, typer.Option(help="print the catalogue of tells (markdown) and exit")] = False,
) -> None:
    """Score files for AI tells (0-100; docs/ai-tells.md), offline: no Redis, no model."""
    from humanizer.verification.tells import FLAG_SCORE, catalogue_markdown, score_text

    if catalogue:
        out.print(catalogue_markdown(), markup=False, highlight=False, soft_wrap=True)
        return
    if not files:
        raise fail("give one or more files (or --catalogue)", 2)
    settings = get_settings()
    scores = {str(f): score_text(read_document(f, settings.max_document_bytes)) for f in files}
    if as_json:
        out.print_json(json.dumps({name: s.model_dump() for name, s in scores.items()}))
        return
    for name, s in scores.items():
        verdict = "reads machine-written" if s.flagged else "below the flag"
        tops = ", ".join(f"{h.id} ×{h.count:g}" for h in s.hits[:5]) or "none"
        out.print(f"{name}: {s.score:.1f} ({verdict}, flag at {FLAG_SCORE:g}); {s.words:,} words; tells: {tops}",
                  highlight=False, markup=False, soft_wrap=True)


@app.command("eval")
def eval_(
    directory: Annotated[Path, typer.Argument(help="a folder of documents (*.md, *.markdown, *.txt)")],
    style: Annotated[str | None, job_option("style")] = None,
    prompt: Annotated[str | None, job_option("custom_prompt", "--prompt")] = None,
    provider: Annotated[str | None, job_option("provider", help="the provider (default HUMANIZER_PROVIDER)")] = None,
    model: Annotated[str | None, job_option("model", help="model name for the openai provider")] = None,
    chunk_tokens: Annotated[int | None, job_option("chunk_max_tokens", "--chunk-tokens")] = None,
    second_pass: Annotated[
        bool | None, job_option("second_pass", "--second-pass/--no-second-pass", show_default=False)
    ] = None,
    glob: Annotated[list[str] | None, typer.Option(help="only files matching this glob (repeatable)")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="also write each rewritten document here")] = None,
    local: Annotated[
        int, typer.Option(help="start an embedded Redis and this many local workers for the run (0: use REDIS_*)")
    ] = 0,
    timeout: Annotated[float | None, typer.Option(help="give up after this many seconds")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the results as JSON")] = False,
) -> None:
    """Run every document of DIRECTORY through the configured provider (the same path as `run`) and print,
    per document and in total, the AI-tell score before and after, verification, length ratio, tokens,
    cost, second passes and time."""
    from humanizer.evaluate import find_documents, public, render_table, run_eval

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    if not directory.is_dir():
        raise fail(f"{directory}: not a directory", 2)
    paths = find_documents(directory, glob or ())
    if not paths:
        raise fail(f"{directory}: no documents (*.md, *.markdown, *.txt" + (f" or {', '.join(glob)}" if glob else "")
                   + ")", 2)
    documents = [(p.name, read_document(p, settings.max_document_bytes)) for p in paths]
    checked = job_request(text="x", style=style, prompt=prompt, provider=provider, model=model,
                          chunk_tokens=chunk_tokens, second_pass=second_pass)
    options = checked.model_dump(include=set(JobOptions.model_fields), exclude_unset=True)

    def submitted(name: str, job_id: str, chunks: int) -> None:
        console.print(f"{name}: job [bold]{job_id}[/], {chunks} chunks", highlight=False)

    def done(result: Any) -> None:
        console.print(f"{result.document}: {result.status} in {result.seconds or 0:.1f} s", highlight=False)

    def evaluate() -> tuple[Any, dict[str, str]]:
        from humanizer.jobs.submit import SubmissionError

        try:
            return run_eval(documents, options, timeout, submitted, done)
        except (SubmissionError, RedisUnavailable) as exc:
            raise fail(str(exc), 2) from None
        except TimeoutError as exc:
            raise fail(str(exc), 1) from None

    if local:
        from humanizer.local.stack import LocalStack

        with LocalStack(workers=local, concurrency=settings.celery_worker_concurrency):
            report, texts = evaluate()
    else:
        report, texts = evaluate()
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, text in texts.items():
            target = out_dir / name
            target.write_text(text, encoding="utf-8")
        console.print(f"{len(texts)} rewritten document(s) written to {out_dir}")
    if as_json:
        out.print_json(json.dumps(public(report)))
    else:
        out.print(render_table(report))
    raise typer.Exit(0 if report.total.succeeded == report.total.documents else 1)


@app.command("fake-llm")
def fake_llm(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8089,
    latency: Annotated[float, typer.Option(help="mean seconds per reply")] = 0.2,
    jitter: Annotated[float, typer.Option(help="± seconds")] = 0.05,
    api_key: Annotated[str | None, typer.Option(help="require this bearer key (401 otherwise)")] = None,
    rpm: Annotated[int | None, typer.Option(help="enforce this many requests per minute (429 beyond)")] = None,
    fault: Annotated[list[str] | None, typer.Option(help="fault rule, e.g. 429:probability=0.5:retry_after=2")] = None,
) -> None:
    """Serve a fake OpenAI-compatible chat-completions API on loopback (for tests and offline demos)."""
    from humanizer.fake_llm.__main__ import main as fake_main

    argv = ["--host", host, "--port", str(port), "--latency", str(latency), "--jitter", str(jitter)]
    if api_key:
        argv += ["--api-key", api_key]
    if rpm:
        argv += ["--rpm", str(rpm)]
    for f in fault or []:
        argv += ["--fault", f]
    raise typer.Exit(fake_main(argv) or 0)


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="bind address (HUMANIZER_API_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (HUMANIZER_API_PORT)")] = None,
) -> None:
    """Serve the HTTP API (FastAPI on uvicorn): jobs, events, dead letters, health, metrics."""
    from humanizer.api.settings import ApiConfigError, ApiSettings, get_api_settings
    from humanizer.startup import StartupError, load

    try:
        load(get_api_settings, ApiSettings).check()
    except (StartupError, ApiConfigError) as exc:
        raise fail(str(exc), 2) from None
    settings = _startup_checks()
    configure_logging(settings.log_level, settings.log_format)
    from humanizer.api.server import serve

    try:
        serve(host, port)
    except ApiConfigError as exc:
        raise fail(str(exc), 2) from None


@app.command()
def submit(
    file: Annotated[Path, typer.Argument(help="UTF-8 text or markdown file to rewrite")],
    api_url: Annotated[str, typer.Option("--api", help="base URL of the Humanizer API", envvar="HUMANIZER_API_URL")],
    token: Annotated[str | None, typer.Option(help="bearer token", envvar="HUMANIZER_API_TOKEN")] = None,
    style: Annotated[str | None, job_option("style")] = None,
    prompt: Annotated[str | None, job_option("custom_prompt", "--prompt")] = None,
    priority: Annotated[str, job_option("priority")] = "normal",
    verify: Annotated[bool, job_option("verify")] = True,
    out_path: Annotated[Path | None, typer.Option("--out", "-o")] = None,
) -> None:
    """Submit FILE through the HTTP API and follow its progress over server-sent events."""
    import httpx2

    from humanizer.api.client import ApiError, submit_via_api

    settings = get_settings()
    text = read_document(file, settings.max_document_bytes)  # same one-line errors as `run`
    job_request(text=text, style=style, prompt=prompt, priority=priority, verify=verify)
    try:
        updates = submit_via_api(file, api_url, token, style=style, custom_prompt=prompt, verify=verify,
                                 priority=priority)
        first = next(updates)
    except ApiError as exc:
        raise fail(str(exc), 2) from None
    except (OSError, httpx2.TransportError) as exc:
        raise fail(f"cannot reach the API at {api_url} ({type(exc).__name__})", 2) from None
    console.print(f"job [bold]{first['job_id']}[/]: {first['total_chunks']} chunks")
    last: dict[str, Any] = {}
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TaskProgressColumn(), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("queued", total=first["total_chunks"] or None)
        for update in updates:
            job = update["job"]
            p = job["progress"]
            progress.update(task, completed=p["done"] + p["failed"], total=p["total"] or None,
                            description=job.get("phase") or job["status"].lower())
            last = update
    job = last.get("job") or {}
    console.print(f"[bold]{job.get('status')}[/] job {first['job_id']}", highlight=False)
    result = last.get("result")
    if not isinstance(result, dict):
        problem = last.get("problem") or {}
        raise fail(str(problem.get("detail", job.get("error", "the job did not succeed"))), 1)
    if out_path:
        out_path.write_text(result["humanized_text"], encoding="utf-8")
        console.print(f"result written to {out_path}")
    else:
        out.print(result["humanized_text"], markup=False, highlight=False, soft_wrap=True)


@app.command()
def health(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Check Redis, Celery workers, the provider and this machine; exit 1 unless healthy or degraded."""
    from humanizer.monitoring import get_monitoring_service
    from humanizer.monitoring.render import render_health

    report = get_monitoring_service().health_check()
    if as_json:
        out.print_json(json.dumps(report, default=str))
    else:
        out.print(render_health(report))
    raise typer.Exit(0 if report["overall_status"] in ("healthy", "degraded") else 1)


@app.command()
def monitor(interval: Annotated[float, typer.Option(help="seconds between refreshes")] = 2.0) -> None:
    """A live terminal view of workers, queues, throughput and errors (Ctrl-C to quit)."""
    from rich.live import Live

    from humanizer.monitoring import get_monitoring_service
    from humanizer.monitoring.render import render_metrics

    svc = get_monitoring_service()
    try:
        with Live(render_metrics(svc.get_metrics()), console=out, refresh_per_second=4) as live:
            while True:
                time.sleep(interval)
                live.update(render_metrics(svc.get_metrics()))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@dlq_app.command("list")
def dlq_list(job: Annotated[str | None, typer.Option(help="only this job")] = None, limit: int = 50) -> None:
    """List dead letters, newest first."""
    from humanizer.jobs.deadletters import DeadLetters
    from humanizer.jobs.submit import open_store

    try:
        entries = DeadLetters(open_store()).list(limit=limit, job_id=job)
    except RedisUnavailable as exc:
        raise fail(str(exc)) from None
    if not entries:
        out.print("no dead letters")
    for e in entries:
        out.print(f"{e.id}  {e.error_kind}  attempts={e.attempts}  {e.message}", highlight=False)


@dlq_app.command("show")
def dlq_show(dead_letter_id: str) -> None:
    """Show one dead letter as JSON."""
    from humanizer.jobs.deadletters import DeadLetters
    from humanizer.jobs.submit import open_store

    entry = DeadLetters(open_store()).get(dead_letter_id)
    if entry is None:
        raise fail(f"no dead letter {dead_letter_id}")
    out.print_json(entry.model_dump_json())


@dlq_app.command("replay")
def dlq_replay(dead_letter_id: str) -> None:
    """Send a dead-lettered chunk again; its job reopens and completes when the chunk succeeds."""
    from humanizer.jobs.replay import replay_dead_letter
    from humanizer.jobs.submit import open_store

    try:
        job_id = replay_dead_letter(open_store(), dead_letter_id)
    except KeyError as exc:
        raise fail(str(exc).strip("'")) from None
    out.print(f"replayed {dead_letter_id}; follow with: humanizer status {job_id}")


def main() -> None:
    from pydantic import ValidationError

    from humanizer.startup import describe_validation_error, exit_with

    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except ValidationError as exc:  # settings read by any command: one line, not a traceback
        exit_with(describe_validation_error(exc, Settings if exc.title == "Settings" else None))


if __name__ == "__main__":
    main()
