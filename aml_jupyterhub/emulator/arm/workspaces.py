"""An Azure ML workspace as ARM returns it (GET .../workspaces/{name}).

MLClient reads only ``location`` (before creating a compute); the rest follows
a recorded live answer so other clients find the fields they expect.
"""

from __future__ import annotations

from typing import Any

from ..core.config import Workspace, stable_id
from ..core.state import EmulatorState


def workspace_body(state: EmulatorState, ws: Workspace) -> dict[str, Any]:
    """The workspace resource, with stable ids derived from its ARM id."""
    group = f"/subscriptions/{ws.subscription_id}/resourceGroups/{ws.resource_group}/providers"
    short = "".join(c for c in ws.name.lower() if c.isalnum())[:16]
    workspace_id = stable_id("workspace", ws.arm_id.lower())
    tenant = state.config.tenants[0] if state.config.tenants else None
    tenant_id, admin = (tenant.id, f"admin@{tenant.domain}") if tenant else ("", "admin@example.com")
    return {
        "id": ws.arm_id,
        "name": ws.name,
        "type": "Microsoft.MachineLearningServices/workspaces",
        "location": ws.location,
        "kind": "Default",
        "tags": {},
        "etag": None,
        "sku": {"name": "Basic", "tier": "Basic"},
        "identity": {"type": "SystemAssigned", "principalId": stable_id("ws-identity", ws.arm_id.lower()), "tenantId": tenant_id},
        "systemData": {
            "createdAt": "2024-01-01T00:00:00Z",
            "createdBy": admin,
            "createdByType": "User",
            "lastModifiedAt": "2024-01-01T00:00:00Z",
            "lastModifiedBy": admin,
            "lastModifiedByType": "User",
        },
        "properties": {
            "friendlyName": ws.name,
            "description": "",
            "tenantId": tenant_id,
            "provisioningState": "Succeeded",
            "workspaceId": workspace_id,
            "hbiWorkspace": False,
            "storageHnsEnabled": False,
            "publicNetworkAccess": "Enabled",
            "privateLinkCount": 0,
            "v1LegacyMode": False,
            "discoveryUrl": f"https://{ws.location}.api.azureml.ms/discovery",
            "mlFlowTrackingUri": f"azureml://{ws.location}.api.azureml.ms/mlflow/v1.0{ws.arm_id}",
            "storageAccount": f"{group}/Microsoft.Storage/storageAccounts/st{short}",
            "keyVault": f"{group}/Microsoft.KeyVault/vaults/kv-{short}",
            "applicationInsights": f"{group}/Microsoft.Insights/components/ai-{short}",
            "containerRegistry": None,
            "notebookInfo": {
                "resourceId": workspace_id.replace("-", ""),
                "fqdn": f"ml-{short}-{ws.location}-{workspace_id}.notebooks.azure.net",
                "isPrivateLinkEnabled": False,
                "notebookPreparationError": None,
            },
        },
    }
