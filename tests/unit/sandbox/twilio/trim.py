"""How twilio_api_v2010.messages.json was made from Twilio's full description:

    python tests/unit/sandbox/twilio/trim.py path/to/twilio_api_v2010.json

Keeps the two Message resources the dispatcher calls (create/list, fetch) and every schema
they reference, unchanged; drops the rest of API v2010 (1.8 MB -> a few KB).
"""

import json
import sys
from pathlib import Path

PATHS = ("/2010-04-01/Accounts/{AccountSid}/Messages.json",
         "/2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json")
OUT = Path(__file__).with_name("twilio_api_v2010.messages.json")


def refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def trim(spec: dict) -> dict:
    paths = {p: spec["paths"][p] for p in PATHS}
    schemas, todo = {}, list(refs(paths))
    while todo:
        ref = todo.pop()
        name = ref.rsplit("/", 1)[-1]
        if ref.startswith("#/components/schemas/") and name not in schemas:
            schemas[name] = spec["components"]["schemas"][name]
            todo.extend(refs(schemas[name]))
    tags = {tag for p in paths.values() for op in p.values() if isinstance(op, dict)
            for tag in op.get("tags", [])}
    return {"openapi": spec["openapi"], "info": spec["info"], "servers": spec["servers"],
            "security": spec["security"],
            "tags": [t for t in spec.get("tags", []) if t["name"] in tags],
            "paths": paths,
            "components": {"securitySchemes": spec["components"]["securitySchemes"],
                           "schemas": dict(sorted(schemas.items()))}}


if __name__ == "__main__":
    full = json.loads(Path(sys.argv[1]).read_text())
    OUT.write_text(json.dumps(trim(full), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
