#!/usr/bin/env python3
"""Checks KServe resources against the KServe SDK's model classes (PyPI `kserve`).

KServe's CRD YAMLs (with their OpenAPI v3 schemas) are not shipped in any package registry this
project can reach, so this is the faithful substitute: the SDK's classes are generated from the
same Go API types as the CRDs. Each resource is deserialised field by field through the classes'
`openapi_types` / `attribute_map` (the Kubernetes client's classes for the core types inside,
e.g. V1Container), and
- a field that the type does not have is an error (the CRD's structural schema prunes it, so a
  misspelt field would be silently dropped on apply),
- a value of the wrong shape (list, map, string, integer, boolean) is an error,
- each object is built with its class's constructor, which rejects a missing required field.

Usage: check-schema.py FILE.yaml...   Prints one line per resource; exits 1 on any error.
"""

import datetime
import importlib.util
import re
import sys
import types
from pathlib import Path

import kubernetes.client.models as k8s_models
import yaml

# `import kserve` starts the whole model server (FastAPI, Ray, ...): load only its generated
# models, under a bare package whose __init__ is not run.
_spec = importlib.util.find_spec("kserve")
_pkg = types.ModuleType("kserve")
_pkg.__path__ = list(_spec.submodule_search_locations)
sys.modules["kserve"] = _pkg
import kserve.models as kserve_models  # noqa: E402

KINDS = {
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "V1alpha1ServingRuntime",
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "V1alpha1ClusterServingRuntime",
    ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService",
}
PRIMITIVES = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "object": (object,),
    "datetime": (str, datetime.datetime),
    "date": (str, datetime.date),
}


class SchemaError(Exception):
    pass


def model_class(name):
    for module in (kserve_models, k8s_models):
        cls = getattr(module, name, None)
        if cls is not None:
            return cls
    raise SchemaError(f"no model class {name}")


def build(value, typ, where):
    """The value as an instance of `typ` (an SDK type string), or SchemaError naming `where`."""
    if value is None:
        return None
    m = re.fullmatch(r"[lL]ist\[(.+)\]", typ)
    if m:
        if not isinstance(value, list):
            raise SchemaError(f"{where}: expected a list, got {type(value).__name__}")
        return [build(v, m.group(1), f"{where}[{i}]") for i, v in enumerate(value)]
    m = re.fullmatch(r"dict\(([^,]+), (.+)\)", typ) or re.fullmatch(r"Dict\[([^,]+), (.+)\]", typ)
    if m:
        if not isinstance(value, dict):
            raise SchemaError(f"{where}: expected a map, got {type(value).__name__}")
        return {k: build(v, m.group(2), f"{where}.{k}") for k, v in value.items()}
    if typ in PRIMITIVES:
        ok = isinstance(value, PRIMITIVES[typ]) and not (typ in ("int", "float") and isinstance(value, bool))
        if not ok:
            raise SchemaError(f"{where}: expected {typ}, got {type(value).__name__} {value!r}")
        return value
    cls = model_class(typ)
    if not isinstance(value, dict):
        raise SchemaError(f"{where}: expected an object ({typ}), got {type(value).__name__}")
    by_json = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    kwargs = {}
    for key, v in value.items():
        if key not in by_json:
            known = ", ".join(sorted(by_json))
            raise SchemaError(f"{where}.{key}: unknown field of {typ} (known: {known})")
        attr = by_json[key]
        kwargs[attr] = build(v, cls.openapi_types[attr], f"{where}.{key}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise SchemaError(f"{where}: {typ}: {e}") from None


def check(doc):
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key not in KINDS:
        raise SchemaError(f"not a KServe kind this checks: {key}")
    if not (doc.get("metadata") or {}).get("name"):
        raise SchemaError("metadata.name is required")
    if "spec" not in doc:
        raise SchemaError("spec is required")
    build(doc, KINDS[key], doc["kind"])


def main(paths):
    failed = False
    for path in paths:
        for doc in yaml.safe_load_all(Path(path).read_text()):
            if doc is None:
                continue
            name = f"{path}: {doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
            try:
                check(doc)
                print(f"PASS {name}")
            except SchemaError as e:
                print(f"FAIL {name}: {e}")
                failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
