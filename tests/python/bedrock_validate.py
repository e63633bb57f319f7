#!/usr/bin/env python3
"""Validates Bedrock request bodies against botocore's bedrock-runtime model.

Usage: bedrock_validate.py MANIFEST

MANIFEST is a JSON list of {"name", "operation", "model", "file", "expect"}:
`file` holds one JSON body as the worker sends it (without `modelId`, which
is in the path), `operation` is `Converse` or `CountTokens`, `model` the
model id of the path, `expect` "valid" or "invalid" (negative controls).
Each body, with its `modelId`, goes through botocore's own parameter
validation against the operation's input shape of the service model that
botocore ships: unknown keys at any depth, wrong types and missing required
members are refused, as boto3 refuses them before sending.

Prints one line per problem and "checked N bodies, P problems"; exits 1 if
P > 0.
"""
import json
import sys

import botocore.session
from botocore.validate import ParamValidator


def main():
    with open(sys.argv[1]) as f:
        manifest = json.load(f)
    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    validator = ParamValidator()
    problems = 0
    for case in manifest:
        with open(case["file"]) as f:
            body = json.load(f)
        # JSON numbers the worker writes as 0.1 stay floats; botocore wants
        # floats for `temperature` and ints for `maxTokens`, as sent.
        params = dict(body, modelId=case["model"])
        shape = model.operation_model(case["operation"]).input_shape
        report = validator.validate(params, shape)
        valid = not report.has_errors()
        if valid != (case["expect"] == "valid"):
            problems += 1
            detail = report.generate_report() if report.has_errors() else "accepted"
            print(f"{case['name']}: expected {case['expect']}, got: {detail}")
    print(f"checked {len(manifest)} bodies, {problems} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
