#!/usr/bin/env python3
"""Google's and Anthropic's official SDKs against the simulator's Vertex AI.

Usage: vertex_sdk_check.py SIM_URL SERVICE_ACCOUNT_FILE PROJECT DENIED_SIM_URL DENIED_SERVICE_ACCOUNT_FILE

- google-genai with vertexai=True, credentials from the service-account
  file (google-auth signs the RS256 assertion and exchanges it at the
  file's token_uri, the simulator's /token), base_url at the simulator:
  generate_content with candidate_count and logprobs, count_tokens; the
  same with an explicit bearer; an unknown bearer gets 401 UNAUTHENTICATED,
  an injected throttle 429 RESOURCE_EXHAUSTED;
- anthropic's AnthropicVertex (anthropic[vertex]) with the same
  credentials: messages.create through rawPredict and count_tokens;
- DENIED_SIM_URL serves only another project (DENIED_SERVICE_ACCOUNT_FILE
  is the same account with its token_uri there): both SDKs get 403
  PERMISSION_DENIED naming aiplatform.endpoints.predict.

Prints "vertex checks passed" at the end; any failure raises.
"""
import sys

from anthropic import AnthropicVertex, PermissionDeniedError
from google import genai
from google.genai import errors, types
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
PROMPT = "Rate from 0 to 5 how much you agree: compassion matters. Answer with one digit."


def genai_client(sim, project, creds, headers=None):
    return genai.Client(
        vertexai=True,
        project=project,
        location="us-central1",
        credentials=creds,
        http_options=types.HttpOptions(base_url=sim, api_version="v1", headers=headers),
    )


def check_genai(sim, sa_file, project):
    creds = service_account.Credentials.from_service_account_file(sa_file, scopes=[SCOPE])
    client = genai_client(sim, project, creds)
    r = client.models.generate_content(
        model="gemini-2.5-flash",
        contents=PROMPT,
        config=types.GenerateContentConfig(
            temperature=0.1,
            max_output_tokens=1,
            seed=5,
            candidate_count=3,
            response_logprobs=True,
            logprobs=5,
        ),
    )
    assert len(r.candidates) == 3, r
    assert all(c.content.parts[0].text for c in r.candidates), r
    top = r.candidates[0].logprobs_result.top_candidates[0].candidates
    assert 1 <= len(top) <= 5 and top[0].log_probability <= 0, top
    assert r.usage_metadata.prompt_token_count > 0, r.usage_metadata
    n = client.models.count_tokens(model="gemini-2.5-flash", contents=PROMPT)
    assert n.total_tokens > 0, n
    assert creds.token and creds.token.startswith("ya29."), "google-auth got no bearer"
    print("google-genai: generate_content (3 candidates, logprobs) and count_tokens through a service account")

    # An explicit bearer (what `gcloud auth print-access-token` gives).
    explicit = genai_client(sim, project, user_credentials.Credentials(token=creds.token))
    r = explicit.models.generate_content(model="gemini-2.5-flash", contents=PROMPT)
    assert r.candidates[0].content.parts[0].text, r
    print("google-genai: an explicit bearer")

    bogus = genai_client(sim, project, user_credentials.Credentials(token="ya29.not-issued-here"))
    try:
        bogus.models.generate_content(model="gemini-2.5-flash", contents=PROMPT)
        raise AssertionError("an unknown bearer was accepted")
    except errors.ClientError as e:
        assert e.code == 401 and e.status == "UNAUTHENTICATED", (e.code, e.status, e.message)
    print("google-genai: an unknown bearer gets 401 UNAUTHENTICATED")

    throttled = genai_client(sim, project, creds, headers={"x-sim-fault": "429"})
    try:
        throttled.models.generate_content(model="gemini-2.5-flash", contents=PROMPT)
        raise AssertionError("the injected 429 was not raised")
    except errors.ClientError as e:
        assert e.code == 429 and e.status == "RESOURCE_EXHAUSTED", (e.code, e.status)
    print("google-genai: a throttle is 429 RESOURCE_EXHAUSTED")
    return creds


def check_anthropic(sim, creds, project):
    client = AnthropicVertex(
        region="us-east5", project_id=project, credentials=creds, base_url=f"{sim}/v1", max_retries=0
    )
    m = client.messages.create(
        model="claude-sonnet-4@20250514",
        max_tokens=1,
        messages=[{"role": "user", "content": PROMPT}],
    )
    assert m.content and m.content[0].text, m
    assert m.usage.input_tokens > 0 and m.usage.output_tokens == 1, m.usage
    n = client.messages.count_tokens(
        model="claude-sonnet-4@20250514", messages=[{"role": "user", "content": PROMPT}]
    )
    assert n.input_tokens > 0, n
    print("anthropic AnthropicVertex: messages.create (rawPredict) and count_tokens")


def check_denied(denied_sim, sa_file, project):
    creds = service_account.Credentials.from_service_account_file(sa_file, scopes=[SCOPE])
    # Held in a name: a Client nobody holds closes its HTTP client.
    gclient = genai_client(denied_sim, project, creds)
    try:
        gclient.models.generate_content(model="gemini-2.5-flash", contents=PROMPT)
        raise AssertionError("a project without the permission was served")
    except errors.ClientError as e:
        assert e.code == 403 and e.status == "PERMISSION_DENIED", (e.code, e.status)
        assert "aiplatform.endpoints.predict" in e.message, e.message
    client = AnthropicVertex(
        region="us-east5", project_id=project, credentials=creds,
        base_url=f"{denied_sim}/v1", max_retries=0,
    )
    try:
        client.messages.create(
            model="claude-sonnet-4@20250514", max_tokens=1,
            messages=[{"role": "user", "content": PROMPT}],
        )
        raise AssertionError("a project without the permission was served")
    except PermissionDeniedError as e:
        assert "aiplatform.endpoints.predict" in str(e), str(e)
    print("both SDKs: 403 PERMISSION_DENIED naming aiplatform.endpoints.predict")


def main():
    sim, sa_file, project, denied_sim, denied_sa_file = sys.argv[1:6]
    creds = check_genai(sim, sa_file, project)
    check_anthropic(sim, creds, project)
    check_denied(denied_sim, denied_sa_file, project)
    print("vertex checks passed")


if __name__ == "__main__":
    main()
