"""Typed configuration of a node (``node.yaml``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from genofed._exceptions import NodeConfigError

Granularity = Literal["boolean", "count", "record"]
GRANULARITY_ORDER: tuple[Granularity, ...] = ("boolean", "count", "record")


class Organization(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(description="Unique id of the institution running the node")
    name: str = Field(description="Human-readable name of the institution")
    description: str | None = None
    contact_url: str | None = Field(None, description="mailto: or web address of the operator")
    welcome_url: str | None = None


class NodeConfig(BaseModel):
    """Settings of one node; written by ``genofed node init``, edited by the operator."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Short name of the node, used in ids and the portal")
    beacon_id: str = Field(description="Reverse-domain id of the Beacon, e.g. org.example.node")
    description: str = "A genofed node"
    version: str = "v0.1.0"
    environment: Literal["prod", "test", "dev", "staging"] = "dev"
    organization: Organization
    ontology_files: list[str] = Field(
        default_factory=list,
        description="Extra OBO files (paths relative to the node directory) for ontology filters",
    )
    default_limit: int = Field(10, ge=1, description="Records per page when the request sets none")
    max_limit: int = Field(1000, ge=1, description="Largest page a caller may ask for")


def default_config(name: str) -> NodeConfig:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "node"
    return NodeConfig(
        name=name,
        beacon_id=f"org.genofed.{slug}",
        description=f"genofed node {name}",
        organization=Organization(id=slug, name=name),
    )


def load_config(path: Path) -> NodeConfig:
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise NodeConfigError(f"{path} does not exist; run `genofed node init`") from exc
    except yaml.YAMLError as exc:
        raise NodeConfigError(f"{path} is not valid YAML: {exc}") from exc
    try:
        return NodeConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise NodeConfigError(f"{path}: {problems}") from exc


def save_config(config: NodeConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.model_dump(exclude_none=True), sort_keys=False))
