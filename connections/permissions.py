"""The Salesforce permissions backup and restore need, in one table.

From the original product's requirements (reference/original-product.md §3):
backup reads everything, restore writes it back with its original audit
fields. ``field`` is the ``UserPermissionAccess`` field Salesforce reports.
"""

from __future__ import annotations

from dataclasses import dataclass

BACKUP = "backup"
RESTORE = "restore"

_GRANT_HINT = (
    "In Salesforce Setup, open Permission Sets, create or edit the permission "
    "set assigned to the connected user, and under System Permissions enable "
    "“{label}”."
)


@dataclass(frozen=True)
class RequiredPermission:
    key: str
    field: str
    label: str
    purpose: str  # BACKUP or RESTORE
    why: str

    @property
    def how_to_grant(self) -> str:
        return _GRANT_HINT.format(label=self.label)


REQUIRED_PERMISSIONS: tuple[RequiredPermission, ...] = (
    RequiredPermission(
        "api_enabled",
        "PermissionsApiEnabled",
        "API Enabled",
        BACKUP,
        "Every backup and restore call goes through the Salesforce API.",
    ),
    RequiredPermission(
        "view_all_data",
        "PermissionsViewAllData",
        "View All Data",
        BACKUP,
        "Backups must read every record, whoever owns it and whatever sharing "
        "rules say.",
    ),
    RequiredPermission(
        "query_all_files",
        "PermissionsQueryAllFiles",
        "Query All Files",
        BACKUP,
        "Without it files and attachments are not backed up.",
    ),
    RequiredPermission(
        "view_setup",
        "PermissionsViewSetup",
        "View Setup and Configuration",
        BACKUP,
        "Reading metadata, record types and permission assignments needs it.",
    ),
    RequiredPermission(
        "view_encrypted_data",
        "PermissionsViewEncryptedData",
        "View Encrypted Data",
        BACKUP,
        "Classic encrypted fields are backed up masked without it.",
    ),
    RequiredPermission(
        "modify_all_data",
        "PermissionsModifyAllData",
        "Modify All Data",
        RESTORE,
        "Restores write records of every object and owner.",
    ),
    RequiredPermission(
        "converted_leads",
        "PermissionsAllowViewEditConvertedLeads",
        "View and Edit Converted Leads",
        RESTORE,
        "Converted leads can only be restored with it.",
    ),
    RequiredPermission(
        "set_audit_fields",
        "PermissionsCreateAuditFields",
        "Set Audit Fields upon Record Creation",
        RESTORE,
        "Restores keep the original Created By and Created Date only with it "
        "(the org-wide setting must be on as well).",
    ),
    RequiredPermission(
        "inactive_owners",
        "PermissionsUpdateWithInactiveOwner",
        "Update Records with Inactive Owners",
        RESTORE,
        "Records owned by users who have since left can only be restored with it.",
    ),
    RequiredPermission(
        "hard_delete",
        "PermissionsBulkApiHardDelete",
        "Bulk API Hard Delete",
        RESTORE,
        "Archiving and rollback restores delete records without the recycle bin.",
    ),
)

PERMISSION_FIELDS = [p.field for p in REQUIRED_PERMISSIONS]
BY_KEY = {p.key: p for p in REQUIRED_PERMISSIONS}

# A free Salesforce Integration User license cannot back up or restore.
INTEGRATION_LICENSE = "Salesforce Integration"
LICENSE_HINT = (
    "The connected user has a Salesforce Integration license, which cannot run "
    "backups or restores. Re-authorize as a user with a full Salesforce license."
)
