#!/usr/bin/env python3
"""boto3 drives the simulator's Amazon Bedrock and STS routes.

Usage: bedrock_sdk_check.py SIM_URL ACCESS_KEY_ID SECRET_ACCESS_KEY MODEL DENIED_MODEL

- bedrock-runtime `converse` (SigV4 by botocore, model id with `:` in the
  path) completes and its answer parses; `count_tokens` counts;
- the errors parse as botocore's typed errors: a wrong secret
  (InvalidSignatureException), an unknown key (UnrecognizedClientException),
  a model the identity may not use (AccessDeniedException), an unknown model
  (ResourceNotFoundException), an out-of-range temperature
  (ValidationException), throttling (ThrottlingException), an injected 503
  (ServiceUnavailableException);
- STS `assume_role_with_web_identity` at the simulator issues temporary
  credentials that `converse` then signs with;
- the `anthropic` SDK's `AnthropicBedrock` client (InvokeModel with
  Anthropic's body, `anthropic_version: bedrock-2023-05-31`) completes and
  gets Bedrock's typed errors.

Prints "checks passed" at the end; any failure raises.
"""
import sys

import anthropic
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

URL, KEY_ID, SECRET, MODEL, DENIED = sys.argv[1:6]
REGION = "us-east-1"
NO_RETRY = Config(retries={"max_attempts": 1, "mode": "standard"})
PROMPT = "Rate from 0 to 5: it is wrong to lie. Answer with one digit."


def client(key_id=KEY_ID, secret=SECRET, token=None, service="bedrock-runtime"):
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=URL,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=NO_RETRY,
    )


def converse(c, model=MODEL, **config):
    return c.converse(
        modelId=model,
        messages=[{"role": "user", "content": [{"text": PROMPT}]}],
        inferenceConfig=dict({"maxTokens": 1, "temperature": 0.1}, **config),
    )


def expect_error(code, fn):
    try:
        fn()
    except ClientError as e:
        got = e.response["Error"]["Code"]
        assert got == code, f"expected {code}, got {got}: {e}"
        assert e.response["Error"]["Message"], e
        return e
    raise AssertionError(f"expected {code}, the call succeeded")


def with_fault(c, fault):
    def add(request, **_):
        request.headers["x-sim-fault"] = fault

    c.meta.events.register("before-sign.bedrock-runtime.Converse", add)
    return c


def main():
    c = client()
    r = converse(c)
    text = r["output"]["message"]["content"][0]["text"]
    assert text.strip()[:1].isdigit(), r
    assert r["usage"]["inputTokens"] > 0 and r["usage"]["outputTokens"] == 1, r
    assert r["stopReason"] in ("end_turn", "max_tokens"), r
    n = c.count_tokens(
        modelId=MODEL,
        input={"converse": {"messages": [{"role": "user", "content": [{"text": PROMPT}]}]}},
    )
    assert n["inputTokens"] > 0, n

    expect_error("InvalidSignatureException", lambda: converse(client(secret=SECRET + "x")))
    expect_error("UnrecognizedClientException", lambda: converse(client(key_id="AKIANOTKNOWN")))
    e = expect_error("AccessDeniedException", lambda: converse(c, model=DENIED))
    assert "bedrock:InvokeModel" in e.response["Error"]["Message"], e
    expect_error("ResourceNotFoundException", lambda: converse(c, model="no.such-model-v1:0"))
    expect_error("ValidationException", lambda: converse(c, temperature=1.5))
    e = expect_error("ThrottlingException", lambda: converse(with_fault(client(), "429")))
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 429, e
    assert "retry-after" in e.response["ResponseMetadata"]["HTTPHeaders"], e
    expect_error("ServiceUnavailableException", lambda: converse(with_fault(client(), "503")))

    sts = client(service="sts")
    got = sts.assume_role_with_web_identity(
        RoleArn="arn:aws:iam::123456789012:role/moralsweep-worker",
        RoleSessionName="sdk-check",
        WebIdentityToken="eyJhbGciOiJSUzI1NiJ9.sim.token",
    )["Credentials"]
    assert got["AccessKeyId"].startswith("ASIA"), got
    temp = client(got["AccessKeyId"], got["SecretAccessKey"], got["SessionToken"])
    r = converse(temp)
    assert r["output"]["message"]["content"], r
    # The same temporary key without its session token is not recognised.
    expect_error(
        "UnrecognizedClientException",
        lambda: converse(client(got["AccessKeyId"], got["SecretAccessKey"])),
    )
    ab = anthropic.AnthropicBedrock(
        aws_access_key=KEY_ID,
        aws_secret_key=SECRET,
        aws_region=REGION,
        base_url=URL,
        max_retries=0,
    )
    m = ab.messages.create(
        model=MODEL, max_tokens=1, messages=[{"role": "user", "content": PROMPT}]
    )
    assert m.content and m.content[0].text.strip()[:1].isdigit(), m
    assert m.usage.input_tokens > 0 and m.usage.output_tokens == 1, m
    wrong = anthropic.AnthropicBedrock(
        aws_access_key=KEY_ID,
        aws_secret_key=SECRET + "x",
        aws_region=REGION,
        base_url=URL,
        max_retries=0,
    )
    try:
        wrong.messages.create(model=MODEL, max_tokens=1, messages=[{"role": "user", "content": PROMPT}])
        raise AssertionError("a wrong secret was accepted")
    except anthropic.PermissionDeniedError as e:
        assert e.status_code == 403, e
    print("checks passed")


if __name__ == "__main__":
    main()
