"""node.yaml and hub.yaml: versioned, validated, and every setting honoured."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from genofed import ConfigError
from genofed.config import (
    CONFIG_FORMAT,
    HubConfig,
    load_config,
    load_hub_config,
    save_config,
    save_hub_config,
)
from genofed.node.app import create_app


def test_a_node_yaml_records_its_format(empty_node) -> None:
    written = yaml.safe_load(empty_node.config_path.read_text())
    assert written["format"] == CONFIG_FORMAT


def test_a_file_without_a_format_is_read_as_the_first(empty_node) -> None:
    data = yaml.safe_load(empty_node.config_path.read_text())
    del data["format"]
    empty_node.config_path.write_text(yaml.safe_dump(data))
    assert load_config(empty_node.config_path).format == 1


@pytest.mark.parametrize("kind", ["node", "hub"])
def test_a_newer_format_is_refused_readably(empty_node, tmp_path: Path, kind: str) -> None:
    if kind == "node":
        path = empty_node.config_path
        data = yaml.safe_load(path.read_text())
        load = load_config
    else:
        path = tmp_path / "hub.yaml"
        save_hub_config(HubConfig(), path)
        data = yaml.safe_load(path.read_text())
        load = load_hub_config
    data["format"] = CONFIG_FORMAT + 1
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=f"format {CONFIG_FORMAT + 1}; this genofed reads"):
        load(path)


def test_assigning_a_bad_value_in_code_is_refused(empty_node) -> None:
    config = load_config(empty_node.config_path)
    with pytest.raises(ValueError, match="anonymous"):
        config.tiers["public"].anonymous = "everything"  # type: ignore[assignment]


def test_default_limit_is_the_page_of_a_request_that_sets_none(empty_node, node_client) -> None:
    from genofed.store.vcf_ingest import DatasetSettings, ingest_vcf
    from tests.conftest import SMALL_VCF

    ingest_vcf(
        empty_node,
        "small",
        SMALL_VCF,
        assembly="GRCh38",
        settings=DatasetSettings(granularity="record", tier="public"),
    )
    config = load_config(empty_node.config_path)
    config.default_limit = 3
    save_config(config, empty_node.config_path)
    params = {
        "referenceName": "22",
        "start": 0,
        "end": 100_000_000,
        "requestedGranularity": "record",
    }
    with node_client(empty_node.root) as client:
        page = client.get("/beacon/v2/g_variants", params=params).json()
        assert len(page["response"]["resultSets"][0]["results"]) == 3
        assert page["meta"]["receivedRequestSummary"]["pagination"]["limit"] == 3
        more = client.get("/beacon/v2/g_variants", params={**params, "limit": 5}).json()
        assert len(more["response"]["resultSets"][0]["results"]) == 5


def test_a_node_refuses_to_start_on_a_broken_node_yaml(empty_node) -> None:
    empty_node.config_path.write_text("format: 1\nname: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        create_app(empty_node.root)


def test_the_same_answers_after_a_round_trip(empty_node) -> None:
    config = load_config(empty_node.config_path)
    save_config(config, empty_node.config_path)
    assert load_config(empty_node.config_path) == config
