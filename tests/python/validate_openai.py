#!/usr/bin/env python3
"""Validates JSON documents against schemas of OpenAI's OpenAPI description.

Usage: validate_openai.py SPEC.yaml MANIFEST.json

MANIFEST is a JSON list of {"schema": NAME, "file": PATH, "known_keys": BOOL}.
Each file is validated against #/components/schemas/NAME with a Draft 2020-12
validator whose $refs resolve inside the OpenAPI document. With known_keys,
every top-level key of the document must also be a property the schema
declares (the API refuses unknown request fields; the schemas do not say so).
Prints one line per problem and exits 1 if there was any.
"""
import json
import sys

import jsonschema
import yaml

try:
    from yaml import CSafeLoader as Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as Loader


def declared_properties(schemas, schema, seen=None):
    """Top-level property names a schema declares, through $ref and allOf/anyOf/oneOf."""
    seen = seen if seen is not None else set()
    out = set(schema.get("properties", {}))
    ref = schema.get("$ref")
    if ref and ref not in seen:
        seen.add(ref)
        out |= declared_properties(schemas, schemas[ref.rsplit("/", 1)[-1]], seen)
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key, []):
            out |= declared_properties(schemas, sub, seen)
    return out


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        spec = yaml.load(f, Loader=Loader)
    with open(sys.argv[2]) as f:
        manifest = json.load(f)
    schemas = spec["components"]["schemas"]
    problems = 0
    checked = 0
    for entry in manifest:
        name = entry["schema"]
        if name not in schemas:
            print(f"{entry['file']}: no schema {name!r} in {sys.argv[1]}")
            problems += 1
            continue
        with open(entry["file"]) as f:
            doc = json.load(f)
        root = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
        validator = jsonschema.Draft202012Validator(root)
        for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
            where = "/".join(str(p) for p in err.absolute_path) or "(root)"
            print(f"{entry['file']}: {name}: at {where}: {err.message[:300]}")
            problems += 1
        if entry.get("known_keys"):
            known = declared_properties(schemas, schemas[name])
            for key in doc:
                if key not in known:
                    print(f"{entry['file']}: {name}: field {key!r} is not declared by the schema")
                    problems += 1
        checked += 1
    print(f"checked {checked} documents, {problems} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
