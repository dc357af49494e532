"""Validate documents against the official Beacon v2 JSON Schemas in ../shared/specs, offline.

The schemas ``$ref`` absolute GitHub and w3id URLs and one missing relative file
(``../common/info.json`` in the model tree); a ``referencing.Registry`` maps all of them to
the local copies so validation never touches the network.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource

from tests.shared_data import SHARED

SPECS = SHARED / "specs" / "beacon-v2"
_RAW = "https://raw.githubusercontent.com/ga4gh-beacon/beacon-v2/main/"
_VRS = "https://w3id.org/ga4gh/schema/vrs/1.3/vrs.json"


def _local_path(uri: str) -> Path:
    uri = uri.split("#", 1)[0]
    if uri.startswith(_RAW):
        path = SPECS / uri[len(_RAW) :]
    elif uri == _VRS:
        path = SPECS / "vrs-1.3" / "vrs.json"
    elif uri.startswith("file://"):
        path = Path(uri[len("file://") :])
    else:
        raise NoSuchResource(ref=uri)
    if not path.exists() and path.name == "info.json":
        path = SPECS / "framework" / "json" / "common" / "info.json"
    return path.resolve()


def _retrieve(uri: str) -> Resource:
    path = _local_path(uri)
    if not path.exists():
        raise NoSuchResource(ref=uri)
    return Resource.from_contents(json.loads(path.read_text()))


@cache
def _registry() -> Registry:
    return Registry(retrieve=_retrieve)  # type: ignore[call-arg]


@cache
def validator(relative: str) -> Draft202012Validator:
    """A validator for a schema file under specs/beacon-v2 (e.g. framework/json/...)."""
    uri = (SPECS / relative).resolve().as_uri()
    return Draft202012Validator({"$ref": uri}, registry=_registry())


def errors(document: Any, relative: str) -> list[str]:
    found = validator(relative).iter_errors(document)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in found]


def assert_valid(document: Any, relative: str) -> None:
    problems = errors(document, relative)
    assert not problems, f"{relative}:\n" + "\n".join(problems[:10])


RESPONSES = "framework/json/responses"
REQUEST_BODY = "framework/json/requests/beaconRequestBody.json"
ENTITY_SCHEMAS = {
    "individual": "models/json/beacon-v2-default-model/individuals/defaultSchema.json",
    "biosample": "models/json/beacon-v2-default-model/biosamples/defaultSchema.json",
    "run": "models/json/beacon-v2-default-model/runs/defaultSchema.json",
    "analysis": "models/json/beacon-v2-default-model/analyses/defaultSchema.json",
    "cohort": "models/json/beacon-v2-default-model/cohorts/defaultSchema.json",
    "dataset": "models/json/beacon-v2-default-model/datasets/defaultSchema.json",
    "genomicVariant": "models/json/beacon-v2-default-model/genomicVariations/defaultSchema.json",
}


def assert_valid_beacon_response(document: dict[str, Any]) -> None:
    """Pick the response schema the document claims (granularity) and validate records."""
    if "error" in document:
        assert_valid(document, f"{RESPONSES}/beaconErrorResponse.json")
        return
    granularity = document["meta"]["returnedGranularity"]
    response = document.get("response", {})
    if "collections" in response:
        assert_valid(document, f"{RESPONSES}/beaconCollectionsResponse.json")
        records = response["collections"]
    elif granularity == "record":
        assert_valid(document, f"{RESPONSES}/beaconResultsetsResponse.json")
        records = [r for rs in response["resultSets"] for r in rs["results"]]
    elif granularity == "count":
        assert_valid(document, f"{RESPONSES}/beaconCountResponse.json")
        records = []
    else:
        assert_valid(document, f"{RESPONSES}/beaconBooleanResponse.json")
        records = []
    entity = document["meta"]["returnedSchemas"][0]["entityType"]
    for record in records:
        assert_valid(record, ENTITY_SCHEMAS[entity])
