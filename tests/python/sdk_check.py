#!/usr/bin/env python3
"""The official OpenAI and Anthropic Python SDKs against `moralsweep sim`.

Usage: sdk_check.py BASE_URL API_KEY MODEL

BASE_URL is the simulator's root (http://127.0.0.1:PORT), API_KEY the key it
requires, MODEL a model key it answers. Every check parses a real answer or
error through the SDK's own types; the script exits 1 on the first failure.
"""
import sys

import anthropic
import openai

URL, KEY, MODEL = sys.argv[1], sys.argv[2], sys.argv[3]
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


oa = openai.OpenAI(base_url=f"{URL}/v1", api_key=KEY, max_retries=0, timeout=5.0)

# Chat Completions with seed and logprobs.
r = oa.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": PROMPT}],
    max_tokens=1,
    temperature=0.1,
    seed=3,
    logprobs=True,
    top_logprobs=20,
)
c = r.choices[0]
check(c.message.content in list("012345"), f"chat content {c.message.content!r}")
check(c.finish_reason in ("stop", "length"), "finish_reason")
top = c.logprobs.content[0].top_logprobs
check(len(top) == 20, f"20 top logprobs, got {len(top)}")
check(all(t.logprob <= 0 for t in top), "logprobs are <= 0")
check(r.usage.prompt_tokens > 0 and r.usage.completion_tokens == 1, "chat usage")
again = oa.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": PROMPT}],
    max_tokens=1,
    temperature=0.1,
    seed=3,
)
check(again.choices[0].message.content == c.message.content, "same seed, same answer")
longer = oa.chat.completions.create(
    model=MODEL, messages=[{"role": "user", "content": PROMPT}], max_completion_tokens=64
)
check(longer.choices[0].message.content[0] in "012345", "longer answer starts with a digit")

# The Responses API with a reasoning effort and logprobs.
rr = oa.responses.create(
    model=MODEL,
    input=PROMPT,
    max_output_tokens=16,
    reasoning={"effort": "low"},
    top_logprobs=5,
    include=["message.output_text.logprobs"],
)
check(rr.status == "completed", f"response status {rr.status}")
check(rr.output_text[:1] in list("012345"), f"output_text {rr.output_text!r}")
check(rr.usage.output_tokens_details.reasoning_tokens >= 0, "reasoning tokens")
msg = [o for o in rr.output if o.type == "message"][0]
check(len(msg.content[0].logprobs[0].top_logprobs) == 5, "responses top logprobs")

# Errors, each as the SDK's own exception type.
bad_key = openai.OpenAI(base_url=f"{URL}/v1", api_key="sk-wrong", max_retries=0)
expect_error(
    openai.AuthenticationError,
    lambda: bad_key.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}]),
    "openai 401",
)
e = expect_error(
    openai.NotFoundError,
    lambda: oa.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}]),
    "openai 404",
)
check(e.code == "model_not_found", f"404 code {e.code}")
e = expect_error(
    openai.BadRequestError,
    lambda: oa.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}], extra_body={"bogus_field": 1}
    ),
    "openai 400 on an unknown field",
)
check("bogus_field" in str(e), "400 names the field")
expect_error(
    openai.BadRequestError,
    lambda: oa.responses.create(model=MODEL, input="x", max_output_tokens=1),
    "responses refuses max_output_tokens < 16",
)
e = expect_error(
    openai.RateLimitError,
    lambda: oa.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}], extra_headers={"x-sim-fault": "429"}
    ),
    "openai 429",
)
check(e.response.headers.get("retry-after") == "1", "429 carries retry-after")
expect_error(
    openai.InternalServerError,
    lambda: oa.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}], extra_headers={"x-sim-fault": "500"}
    ),
    "openai 500",
)
expect_error(
    openai.InternalServerError,
    lambda: oa.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}], extra_headers={"x-sim-fault": "503"}
    ),
    "openai 503",
)
expect_error(
    openai.APIConnectionError,
    lambda: oa.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}], extra_headers={"x-sim-fault": "drop"}
    ),
    "openai dropped connection",
)
expect_error(
    openai.APITimeoutError,
    lambda: oa.with_options(timeout=0.5).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}], extra_headers={"x-sim-fault": "timeout"}
    ),
    "openai timeout",
)
empty = oa.chat.completions.create(
    model=MODEL, messages=[{"role": "user", "content": "x"}], extra_headers={"x-sim-fault": "empty"}
)
check(empty.choices[0].message.content == "", "empty content")
nd = oa.chat.completions.create(
    model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=1,
    extra_headers={"x-sim-fault": "nondigit"},
)
check(nd.choices[0].message.content == "As", "non-digit first token")

# Anthropic Messages.
an = anthropic.Anthropic(base_url=URL, api_key=KEY, max_retries=0, timeout=5.0)
# (The current SDK and API take no `temperature`; moralsweep sends none and
# the simulator refuses one, as checked below.)
m = an.messages.create(
    model=MODEL, max_tokens=1, messages=[{"role": "user", "content": PROMPT}],
)
check(m.content[0].type == "text" and m.content[0].text in list("012345"), f"anthropic text {m.content}")
check(m.usage.input_tokens > 0 and m.usage.output_tokens == 1, "anthropic usage")
check(m.stop_reason in ("end_turn", "max_tokens"), "anthropic stop_reason")
m = an.messages.create(
    model=MODEL, max_tokens=1, messages=[{"role": "user", "content": "x"}],
    extra_headers={"x-sim-fault": "empty"},
)
check(m.content == [], "anthropic empty content")
bad = anthropic.Anthropic(base_url=URL, api_key="wrong", max_retries=0)
expect_error(
    anthropic.AuthenticationError,
    lambda: bad.messages.create(model=MODEL, max_tokens=1, messages=[{"role": "user", "content": "x"}]),
    "anthropic 401",
)
expect_error(
    anthropic.NotFoundError,
    lambda: an.messages.create(model="no-such-model", max_tokens=1, messages=[{"role": "user", "content": "x"}]),
    "anthropic 404",
)
expect_error(
    anthropic.BadRequestError,
    lambda: an.messages.create(
        model=MODEL, max_tokens=1, messages=[{"role": "user", "content": "x"}],
        extra_body={"temperature": 1.5},
    ),
    "anthropic 400 on a temperature (the current API has none)",
)
e = expect_error(
    anthropic.RateLimitError,
    lambda: an.messages.create(
        model=MODEL, max_tokens=1, messages=[{"role": "user", "content": "x"}],
        extra_headers={"x-sim-fault": "429"},
    ),
    "anthropic 429",
)
check(e.response.headers.get("retry-after") == "1", "anthropic 429 retry-after")
e = expect_error(
    anthropic.APIStatusError,
    lambda: an.messages.create(
        model=MODEL, max_tokens=1, messages=[{"role": "user", "content": "x"}],
        extra_headers={"x-sim-fault": "503"},
    ),
    "anthropic overloaded",
)
check(e.status_code == 529, f"anthropic overload is 529, got {e.status_code}")
check(e.body["error"]["type"] == "overloaded_error", "overloaded_error body")
expect_error(
    anthropic.InternalServerError,
    lambda: an.messages.create(
        model=MODEL, max_tokens=1, messages=[{"role": "user", "content": "x"}],
        extra_headers={"x-sim-fault": "500"},
    ),
    "anthropic 500",
)

print(f"ok: {checks} checks passed")
