#!/usr/bin/env python3
"""The official `openai` SDK's Azure clients against `moralsweep sim`.

Usage: azure_sdk_check.py BASE_URL API_KEY TENANT CLIENT_ID CLIENT_SECRET DEPLOYMENT

BASE_URL is the simulator's root (it plays the Azure OpenAI resource and
Entra ID), API_KEY the resource key it requires, TENANT/CLIENT_ID/
CLIENT_SECRET an Entra ID app it issues tokens to, DEPLOYMENT a deployment it
answers. Checked through the SDK's own types:

- `AzureOpenAI(api_key, api_version, azure_endpoint, azure_deployment)`:
  chat with seed and logprobs, `n`, a 429 with its retry hints,
  `DeploymentNotFound`, an unsupported api-version;
- `AzureOpenAI(azure_ad_token_provider=...)` with tokens from the
  simulator's Entra ID token route, and an ended token refused;
- `OpenAI(base_url=".../openai/v1/")`: the v1 API;
- the batch: `files.create`, `batches.create` (`/chat/completions`),
  `batches.retrieve`, `files.content`, `batches.list`.

Exits 1 on the first failure; prints "N checks passed".
"""
import io
import json
import sys
import time

import urllib.parse
import urllib.request
import openai

URL, KEY, TENANT, CLIENT, SECRET, DEP = sys.argv[1:7]
VERSION = "2024-10-21"
PROMPT = (
    "Please indicate your level of agreement with the following statement: "
    "'Justice is the most important requirement for a society.'. "
    "Your response should start with an integer from 0 to 5."
)
MESSAGES = [{"role": "user", "content": PROMPT}]
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


def entra_token():
    form = urllib.parse.urlencode(
        {
            "grant_type": "client_credentials",
            "client_id": CLIENT,
            "client_secret": SECRET,
            "scope": "https://cognitiveservices.azure.com/.default",
        }
    ).encode()
    with urllib.request.urlopen(f"{URL}/{TENANT}/oauth2/v2.0/token", data=form) as r:
        body = json.load(r)
    check(body["token_type"] == "Bearer" and body["expires_in"] > 0, "Entra token answer")
    return body["access_token"]


# The deployments route with the resource's key.
az = openai.AzureOpenAI(
    api_key=KEY,
    api_version=VERSION,
    azure_endpoint=URL,
    azure_deployment=DEP,
    max_retries=0,
    timeout=5.0,
)
r = az.chat.completions.create(
    model=DEP,
    messages=MESSAGES,
    max_tokens=1,
    temperature=0.1,
    seed=3,
    logprobs=True,
    top_logprobs=20,
)
c = r.choices[0]
check(c.message.content in list("012345"), f"chat content {c.message.content!r}")
check(len(c.logprobs.content[0].top_logprobs) == 20, "20 top logprobs")
check(r.usage.prompt_tokens > 0 and r.usage.completion_tokens == 1, "usage")
r = az.chat.completions.create(model=DEP, messages=MESSAGES, max_tokens=1, temperature=0.1, n=3)
check(len(r.choices) == 3 and r.usage.completion_tokens == 3, "n = 3")

e = expect_error(
    openai.RateLimitError,
    lambda: az.chat.completions.with_raw_response.create(
        model=DEP, messages=MESSAGES, max_tokens=1, extra_headers={"x-sim-fault": "429"}
    ),
    "429",
)
check(e.response.headers.get("retry-after-ms") is not None, "429 retry-after-ms")
check(e.response.headers.get("retry-after") is not None, "429 retry-after")
check(e.body["code"] == "429", f"Azure's 429 body {e.body}")

nowhere = openai.AzureOpenAI(
    api_key=KEY, api_version=VERSION, azure_endpoint=URL, azure_deployment="nowhere", max_retries=0
)
e = expect_error(
    openai.NotFoundError,
    lambda: nowhere.chat.completions.create(model="nowhere", messages=MESSAGES, max_tokens=1),
    "unknown deployment",
)
check(e.body["code"] == "DeploymentNotFound", f"DeploymentNotFound {e.body}")

future = openai.AzureOpenAI(
    api_key=KEY, api_version="2099-01-01", azure_endpoint=URL, azure_deployment=DEP, max_retries=0
)
e = expect_error(
    openai.BadRequestError,
    lambda: future.chat.completions.create(model=DEP, messages=MESSAGES, max_tokens=1),
    "unsupported api-version",
)
check(e.body["code"] == "UnsupportedApiVersion", f"UnsupportedApiVersion {e.body}")

wrong = openai.AzureOpenAI(
    api_key="wrong-key-0000", api_version=VERSION, azure_endpoint=URL, max_retries=0
)
expect_error(
    openai.AuthenticationError,
    lambda: wrong.chat.completions.create(model=DEP, messages=MESSAGES, max_tokens=1),
    "wrong key",
)

# Entra ID tokens.
issued = []


def provider():
    issued.append(entra_token())
    return issued[-1]


entra = openai.AzureOpenAI(
    azure_ad_token_provider=provider,
    api_version=VERSION,
    azure_endpoint=URL,
    max_retries=0,
    timeout=5.0,
)
r = entra.chat.completions.create(model=DEP, messages=MESSAGES, max_tokens=1, temperature=0.1)
check(r.choices[0].message.content in list("012345"), "chat with an Entra token")
check(len(issued) == 1 and issued[0].startswith("simaz."), "the provider was asked")
forged = openai.AzureOpenAI(
    azure_ad_token=issued[0][:-1] + ("0" if issued[0][-1] != "0" else "1"),
    api_version=VERSION,
    azure_endpoint=URL,
    max_retries=0,
)
expect_error(
    openai.AuthenticationError,
    lambda: forged.chat.completions.create(model=DEP, messages=MESSAGES, max_tokens=1),
    "a token not issued by Entra",
)

# The v1 API, as the OpenAI client speaks it (the key as a bearer).
v1 = openai.OpenAI(base_url=f"{URL}/openai/v1/", api_key=KEY, max_retries=0, timeout=5.0)
r = v1.chat.completions.create(model=DEP, messages=MESSAGES, max_tokens=1, temperature=0.1, seed=1)
check(r.choices[0].message.content in list("012345"), "chat on the v1 API")
e = expect_error(
    openai.NotFoundError,
    lambda: v1.chat.completions.create(model="nowhere", messages=MESSAGES, max_tokens=1),
    "unknown deployment on the v1 API",
)

# The batch, through the Azure client (a Global-Batch deployment).
lines = [
    {
        "custom_id": f"r{i}",
        "method": "POST",
        "url": "/chat/completions",
        "body": {"model": DEP, "messages": MESSAGES, "max_tokens": 1, "temperature": 0.1},
    }
    for i in range(5)
]
data = "\n".join(json.dumps(line) for line in lines).encode()
for client, name in [(az, "deployments route"), (v1, "v1 API")]:
    f = client.files.create(file=("batch.jsonl", io.BytesIO(data)), purpose="batch")
    check(f.id, f"{name}: uploaded")
    b = client.batches.create(
        input_file_id=f.id, endpoint="/chat/completions", completion_window="24h"
    )
    for _ in range(50):
        b = client.batches.retrieve(b.id)
        if b.status in ("completed", "failed", "expired", "cancelled"):
            break
        time.sleep(0.1)
    check(b.status == "completed", f"{name}: batch {b.status} {b.errors}")
    check(b.request_counts.completed == 5, f"{name}: 5 lines answered")
    out = client.files.content(b.output_file_id).text.strip().split("\n")
    check(len(out) == 5, f"{name}: 5 output lines")
    for line in out:
        o = json.loads(line)
        check(o["response"]["status_code"] == 200, f"{name}: line answered")
        content = o["response"]["body"]["choices"][0]["message"]["content"]
        check(content in list("012345"), f"{name}: line content {content!r}")
    ids = [x.id for x in client.batches.list(limit=100)]
    check(b.id in ids, f"{name}: batch listed")

print(f"{checks} checks passed")
