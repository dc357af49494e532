"""genofed: genomic data federation over GA4GH standards.

The public Python API is what ``__all__`` lists; everything else is internal and may
change. Names are imported on first use, so ``import genofed`` stays cheap for the CLI.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# name -> the module it lives in
_EXPORTS = {
    "AccessDeniedError": "genofed._exceptions",
    "BudgetExhaustedError": "genofed._exceptions",
    "ConfigError": "genofed._exceptions",
    "CredentialError": "genofed._exceptions",
    "DacError": "genofed._exceptions",
    "DatasetSettings": "genofed.store.vcf_ingest",
    "Disclosure": "genofed.config",
    "GenofedError": "genofed._exceptions",
    "Granularity": "genofed.config",
    "HubConfig": "genofed.config",
    "HubNode": "genofed.config",
    "HubRequestError": "genofed._exceptions",
    "IngestError": "genofed._exceptions",
    "JobRuntime": "genofed.jobs.runtime",
    "NodeConfig": "genofed.config",
    "NodeCredentialsError": "genofed._exceptions",
    "NodeDir": "genofed.store.node_dir",
    "NodeRefusedError": "genofed._exceptions",
    "NotFoundError": "genofed._exceptions",
    "QueryError": "genofed._exceptions",
    "QueryFailedError": "genofed._exceptions",
    "ReleasePolicy": "genofed.governance.release",
    "SecureSumError": "genofed._exceptions",
    "UntrustedKeyError": "genofed._exceptions",
    "VisaConditionError": "genofed._exceptions",
    "create_app": "genofed.node.app",
    "create_hub_app": "genofed.hub.app",
    "import_bff": "genofed.store.bff_import",
    "ingest_vcf": "genofed.store.vcf_ingest",
    "load_config": "genofed.config",
    "load_hub_config": "genofed.config",
    "register_table": "genofed.store.registered_tables",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'genofed' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
