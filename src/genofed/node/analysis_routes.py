"""``/analysis/v1``: the node's part in federated analysis.

So far: the node's aggregation key (``GET /analysis/v1/aggregation-key``), which the
federation's other operators pin after checking its fingerprint with this node's
operator, and the names of the peers this node has pinned (a hub can see whom a node
will sum with before it asks). The tasks of vetted analyses come next (issue #13).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from genofed.api.responses import JSONResponse
from genofed.governance.keys import fingerprint, load_or_create_aggregation_key, public_key_text
from genofed.node.deps import Runtime


def build_analysis_router() -> APIRouter:
    router = APIRouter(
        prefix="/analysis/v1", tags=["analysis"], default_response_class=JSONResponse
    )

    @router.get("/aggregation-key", summary="This node's public key for secure sums")
    def aggregation_key(runtime: Runtime) -> dict[str, Any]:
        key = public_key_text(load_or_create_aggregation_key(runtime.node.aggregation_key_path))
        analysis = runtime.config.analysis
        return {
            "node": runtime.config.name,
            "algorithm": "X25519",
            "publicKey": key,
            "fingerprint": fingerprint(key),
            "pinnedPeers": sorted(analysis.peers),
            "minParticipants": analysis.min_participants,
        }

    return router
