#!/usr/bin/env python3
"""The official OpenAI, Anthropic and Google Python SDKs drive the batch APIs
of `moralsweep sim`.

Usage: sdk_batch_check.py PLAIN_URL SLOW_URL FAILING_URL API_KEY MODEL

PLAIN_URL is a simulator answering batches at once (deal mode), SLOW_URL one
whose batches take an hour (to cancel them), FAILING_URL one that fails a
share of batch lines (errored and expired). MODEL is a model key they answer.
Gemini's batch mode is driven with inline requests and with a file uploaded
through the Files API.
Every check goes through the SDK's own methods and types; the script exits 1
on the first failure and prints "N checks passed" at the end.
"""
import json
import os
import sys
import tempfile
import time

import anthropic
import openai
from google import genai

PLAIN, SLOW, FAILING, KEY, MODEL = sys.argv[1:6]
PROMPT = (
    "Please indicate your level of agreement with the following statement: "
    "'Justice is the most important requirement for a society.'. "
    "Your response should start with an integer from 0 to 5."
)
checks = 0


def check(cond, what):
    global checks
    if not cond:
        print(f"FAILED: {what}")
        sys.exit(1)
    checks += 1


def expect_error(cls, call, what):
    try:
        call()
    except cls as e:
        check(True, what)
        return e
    except Exception as e:  # noqa: BLE001
        check(False, f"{what}: got {type(e).__name__}: {e}")
    check(False, f"{what}: no error raised")


def chat_line(custom_id, seed, n=1, model=MODEL):
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": model,
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": 1,
            "temperature": 0.1,
            "seed": seed,
            "n": n,
            "logprobs": True,
            "top_logprobs": 3,
        },
    }


def jsonl(lines):
    return "".join(json.dumps(l) + "\n" for l in lines).encode()


def oa_client(url):
    return openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=60.0)


def oa_wait(client, batch_id):
    for _ in range(2000):
        b = client.batches.retrieve(batch_id)
        if b.status in ("completed", "failed", "expired", "cancelled"):
            return b
        time.sleep(0.01)
    check(False, f"batch {batch_id} never ended")


def oa_submit(client, lines, name="in.jsonl"):
    f = client.files.create(file=(name, jsonl(lines)), purpose="batch")
    check(f.object == "file" and f.purpose == "batch" and f.bytes == len(jsonl(lines)), f"file object {f}")
    check(client.files.retrieve(f.id).id == f.id, "files.retrieve")
    b = client.batches.create(
        input_file_id=f.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"sweep": "sdk-check"},
    )
    check(b.status == "validating" and b.input_file_id == f.id, f"new batch {b.status}")
    check(b.metadata == {"sweep": "sdk-check"}, "batch metadata")
    return b


def oa_lines(client, file_id):
    if file_id is None:
        return []
    text = client.files.content(file_id).text
    return [json.loads(l) for l in text.splitlines() if l.strip()]


# --- OpenAI -----------------------------------------------------------------
oa = oa_client(PLAIN)
lines = [chat_line(f"r{i}", (i + 1) * 1_000_000) for i in range(4)] + [chat_line("r-six", 90_000_000, n=6)]
b = oa_submit(oa, lines)
done = oa_wait(oa, b.id)
check(done.status == "completed", f"completed, got {done.status}")
check(done.request_counts.total == 5 and done.request_counts.completed == 5, f"counts {done.request_counts}")
check(done.completed_at is not None and done.output_file_id and done.error_file_id is None, "completed batch files")
check(done.usage is not None and done.usage.output_tokens == 10, f"usage {done.usage}")
out = oa_lines(oa, done.output_file_id)
check(sorted(l["custom_id"] for l in out) == sorted(l["custom_id"] for l in lines), "one output line per request")
digits = 0
for line in out:
    body = openai.types.chat.ChatCompletion.model_validate(line["response"]["body"])
    check(line["response"]["status_code"] == 200 and line["error"] is None, "output line shape")
    check(len(body.choices) == (6 if line["custom_id"] == "r-six" else 1), "n choices in a batch line")
    for c in body.choices:
        check(c.message.content in list("012345"), f"digit answer {c.message.content!r}")
        check(len(c.logprobs.content[0].top_logprobs) == 3, "top logprobs in a batch line")
        digits += 1
check(digits == 10, "ten answers")

page = oa.batches.list(limit=1)
check(len(page.data) == 1 and page.data[0].id == b.id, "batches.list")

# Per-line validation, and the 50,000-request limit.
bad = chat_line("b", 1)
bad["body"]["bogus"] = 1
b = oa_submit(oa, [chat_line("a", 2), bad, chat_line("a", 3)], "bad.jsonl")
failed = oa_wait(oa, b.id)
check(failed.status == "failed" and failed.failed_at is not None, f"invalid input fails the batch: {failed.status}")
codes = [(e.code, e.line) for e in failed.errors.data]
check(codes == [("invalid_request", 2), ("duplicate_custom_id", 3)], f"errors name the lines: {codes}")
many = [chat_line(f"m{i}", i) for i in range(50_001)]
b = oa_submit(oa, many, "many.jsonl")
failed = oa_wait(oa, b.id)
check(failed.status == "failed" and failed.errors.data[0].code == "too_many_requests", f"50,001 requests: {failed.errors}")
expect_error(openai.BadRequestError, lambda: oa.files.create(file=("in.csv", b"x"), purpose="batch"), "a batch file must be .jsonl")
expect_error(openai.NotFoundError, lambda: oa.batches.retrieve("batch_nope"), "unknown batch is 404")

# Cancelling a batch that takes an hour.
slow = oa_client(SLOW)
b = oa_submit(slow, lines)
check(slow.batches.retrieve(b.id).status == "in_progress", "slow batch in progress")
c = slow.batches.cancel(b.id)
check(c.status == "cancelling" and c.cancelling_at is not None, f"cancelling: {c.status}")
done = oa_wait(slow, b.id)
check(done.status == "cancelled" and done.cancelled_at is not None, f"cancelled: {done.status}")
err = oa_lines(slow, done.error_file_id)
check(len(err) == 5 and all(l["error"]["code"] == "batch_cancelled" for l in err), "cancelled lines in the error file")
expect_error(openai.BadRequestError, lambda: slow.batches.cancel(b.id), "an ended batch cannot be cancelled")

# Partial failure.
failing = oa_client(FAILING)
many_lines = [chat_line(f"p{i}", i * 1_000_003) for i in range(100)]
b = oa_submit(failing, many_lines)
done = oa_wait(failing, b.id)
out = oa_lines(failing, done.output_file_id)
err = oa_lines(failing, done.error_file_id)
check(len(out) + len(err) == 100, "every line in one of the two files")
check(done.request_counts.completed == len(out) and done.request_counts.failed == len(err), "counts match the files")
check(any(l["response"] and l["response"]["status_code"] == 500 for l in err), "errored lines (500)")
check(any(l["error"] and l["error"]["code"] == "batch_expired" for l in err), "expired lines")
check(done.status == "expired", f"a batch with expired lines ends expired, got {done.status}")

# --- Anthropic ----------------------------------------------------------------
def an_client(url):
    return anthropic.Anthropic(base_url=url, api_key=KEY, max_retries=0, timeout=60.0)


def an_request(custom_id, max_tokens=1):
    return {
        "custom_id": custom_id,
        "params": {"model": MODEL, "max_tokens": max_tokens, "messages": [{"role": "user", "content": PROMPT}]},
    }


def an_wait(client, batch_id):
    for _ in range(2000):
        b = client.messages.batches.retrieve(batch_id)
        if b.processing_status == "ended":
            return b
        time.sleep(0.01)
    check(False, f"message batch {batch_id} never ended")


an = an_client(PLAIN)
mb = an.messages.batches.create(requests=[an_request(f"q-{i}") for i in range(5)] + [an_request("bad", max_tokens=0)])
check(mb.type == "message_batch" and mb.processing_status == "in_progress", f"new message batch {mb.processing_status}")
check(mb.request_counts.processing == 6 and mb.results_url is None, "processing counts")
done = an_wait(an, mb.id)
check(done.ended_at is not None and done.results_url, "ended batch has results_url")
rc = done.request_counts
check((rc.succeeded, rc.errored, rc.canceled, rc.expired) == (5, 1, 0, 0), f"request counts {rc}")
results = {r.custom_id: r.result for r in an.messages.batches.results(mb.id)}
check(len(results) == 6, "one result per request")
for i in range(5):
    r = results[f"q-{i}"]
    check(r.type == "succeeded" and r.message.content[0].text in list("012345"), f"succeeded result {r}")
check(results["bad"].type == "errored" and results["bad"].error.error.type == "invalid_request_error", f"errored result {results['bad']}")
listed = an.messages.batches.list(limit=5)
check(any(x.id == mb.id for x in listed.data), "messages.batches.list")
expect_error(
    anthropic.BadRequestError,
    lambda: an.messages.batches.create(requests=[an_request("x"), an_request("x")]),
    "a repeated custom_id is refused",
)
an_slow = an_client(SLOW)
mb = an_slow.messages.batches.create(requests=[an_request("c-1"), an_request("c-2")])
c = an_slow.messages.batches.cancel(mb.id)
check(c.processing_status == "canceling" and c.cancel_initiated_at is not None, f"canceling: {c.processing_status}")
done = an_wait(an_slow, mb.id)
check(done.request_counts.canceled == 2, f"canceled counts {done.request_counts}")
check(all(r.result.type == "canceled" for r in an_slow.messages.batches.results(mb.id)), "canceled results")
an_failing = an_client(FAILING)
mb = an_failing.messages.batches.create(requests=[an_request(f"f-{i}") for i in range(100)])
done = an_wait(an_failing, mb.id)
kinds = {r.result.type for r in an_failing.messages.batches.results(mb.id)}
check(kinds == {"succeeded", "errored", "expired"}, f"partial failure result types {kinds}")

# --- Gemini -------------------------------------------------------------------
gm = genai.Client(api_key=KEY, http_options={"base_url": PLAIN, "api_version": "v1beta", "timeout": 60_000})
job = gm.batches.create(
    model=MODEL,
    src=[
        {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}],
         "config": {"max_output_tokens": 1, "temperature": 0.1, "candidate_count": 3},
         "metadata": {"key": f"g-{i}"}}
        for i in range(3)
    ],
    config={"display_name": "sdk-check"},
)
check(job.name.startswith("batches/") and job.state.name == "JOB_STATE_PENDING", f"new gemini batch {job.state}")
for _ in range(2000):
    job = gm.batches.get(name=job.name)
    if job.done:
        break
check(job.state.name == "JOB_STATE_SUCCEEDED", f"gemini batch state {job.state}")
responses = job.dest.inlined_responses
check([r.metadata["key"] for r in responses] == ["g-0", "g-1", "g-2"], "inline responses in order with their metadata")
check(all(len(r.response.candidates) == 3 for r in responses), "candidateCount inside a batch")
check(all(c.content.parts[0].text in list("012345") for r in responses for c in r.response.candidates), "gemini answers are digits")
check(any(j.name == job.name for j in gm.batches.list()), "batches.list")

# File input: a JSONL file uploaded through the Files API, the responses
# read back from the file the batch wrote.
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "requests.jsonl")
    with open(path, "w") as f:
        for i in range(4):
            line = {"key": f"file-{i}",
                    "request": {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}],
                                "generationConfig": {"maxOutputTokens": 1, "candidateCount": 2}}}
            f.write(json.dumps(line) + "\n")
    uploaded = gm.files.upload(file=path, config={"mime_type": "jsonl", "display_name": "requests"})
check(uploaded.name.startswith("files/") and uploaded.size_bytes > 0, f"uploaded file {uploaded}")
job = gm.batches.create(model=MODEL, src=uploaded.name, config={"display_name": "file-input"})
for _ in range(2000):
    job = gm.batches.get(name=job.name)
    if job.done:
        break
check(job.state.name == "JOB_STATE_SUCCEEDED" and job.dest.file_name, f"file batch {job.state} {job.dest}")
out = [json.loads(l) for l in gm.files.download(file=job.dest.file_name).decode().splitlines() if l.strip()]
check([o["key"] for o in out] == [f"file-{i}" for i in range(4)], "responses file in request order with keys")
check(all(len(o["response"]["candidates"]) == 2 for o in out), "candidateCount inside a file batch")

print(f"{checks} checks passed")
