"""Framework documents: /info, /service-info, /configuration, /map, /entry_types."""

from __future__ import annotations

from typing import Any

from genofed import __version__
from genofed.beacon.model import API_VERSION, ENTRY_TYPES, SCHEMA_BASE, entry_type_definition
from genofed.config import NodeConfig

_INFO_SCHEMA = {"entityType": "info", "schema": "beacon-info-v2.0.0"}


def informational_meta(config: NodeConfig, schema: dict[str, str] = _INFO_SCHEMA) -> dict:
    return {"beaconId": config.beacon_id, "apiVersion": API_VERSION, "returnedSchemas": [schema]}


def info(config: NodeConfig, base_url: str) -> dict[str, Any]:
    org = config.organization
    organization: dict[str, Any] = {"id": org.id, "name": org.name}
    if org.description:
        organization["description"] = org.description
    if org.contact_url:
        organization["contactUrl"] = org.contact_url
    if org.welcome_url:
        organization["welcomeUrl"] = org.welcome_url
    return {
        "meta": informational_meta(config),
        "response": {
            "id": config.beacon_id,
            "name": config.name,
            "apiVersion": API_VERSION,
            "environment": config.environment,
            "organization": organization,
            "description": config.description,
            "version": config.version,
            "welcomeUrl": base_url,
            "info": {"software": f"genofed {__version__}"},
        },
    }


def service_info(
    config: NodeConfig,
    base_url: str,
    *,
    artifact: str = "beacon",
    version: str = API_VERSION,
    documentation: str = "https://docs.genomebeacons.org",
) -> dict[str, Any]:
    """GA4GH service-info 1.0 for one of the node's services (by default the Beacon,
    type org.ga4gh:beacon:2.0.0); each service gets its own id under the Beacon's."""
    org = config.organization
    return {
        "id": config.beacon_id if artifact == "beacon" else f"{config.beacon_id}.{artifact}",
        "name": config.name if artifact == "beacon" else f"{config.name} {artifact}",
        "type": {"group": "org.ga4gh", "artifact": artifact, "version": version},
        "description": config.description,
        "organization": {"name": org.name, "url": org.welcome_url or base_url},
        "contactUrl": org.contact_url or "mailto:admin@example.org",
        "documentationUrl": documentation,
        "environment": config.environment,
        "version": config.version,
    }


def configuration(config: NodeConfig) -> dict[str, Any]:
    return {
        "meta": informational_meta(
            config, {"entityType": "configuration", "schema": "beacon-configuration-v2.0.0"}
        ),
        "response": {
            "$schema": f"{SCHEMA_BASE}/../../../framework/json/configuration/"
            "beaconConfigurationSchema.json",
            "maturityAttributes": {
                "productionStatus": config.environment.upper()
                if config.environment in ("dev", "test", "prod")
                else "DEV"
            },
            "securityAttributes": {"defaultGranularity": "boolean", "securityLevels": ["PUBLIC"]},
            "entryTypes": {e.id: entry_type_definition(e) for e in ENTRY_TYPES},
        },
    }


def entry_types(config: NodeConfig) -> dict[str, Any]:
    return {
        "meta": informational_meta(
            config, {"entityType": "entryType", "schema": "beacon-entry-types-v2.0.0"}
        ),
        "response": {"entryTypes": {e.id: entry_type_definition(e) for e in ENTRY_TYPES}},
    }


def beacon_map(config: NodeConfig, base_url: str) -> dict[str, Any]:
    sets: dict[str, Any] = {}
    for entry in ENTRY_TYPES:
        root = f"{base_url}/{entry.path}"
        endpoint: dict[str, Any] = {
            "entryType": entry.id,
            "rootUrl": root,
            "singleEntryUrl": f"{root}/{{id}}",
            "openAPIEndpointsDefinition": f"{SCHEMA_BASE}/{entry.schema_folder}/endpoints.json",
            "endpoints": {
                f"{link}Lookup": {
                    "returnedEntryType": _entry_id_of(link),
                    "url": f"{root}/{{id}}/{link}",
                }
                for link in entry.links
            },
        }
        if entry.has_id_filtering_terms:
            endpoint["filteringTermsUrl"] = f"{root}/{{id}}/filtering_terms"
        sets[f"{entry.id}Endpoints"] = endpoint
    return {
        "meta": informational_meta(config, {"entityType": "map", "schema": "beacon-map-v2.0.0"}),
        "response": {
            "$schema": f"{SCHEMA_BASE}/../../../framework/json/configuration/beaconMapSchema.json",
            "endpointSets": sets,
        },
    }


def _entry_id_of(path: str) -> str:
    return next(e.id for e in ENTRY_TYPES if e.path == path)
