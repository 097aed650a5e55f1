"""Who may read a connection's secrets. Token secrets: this account's workloads, plus the stack's
ReaderAccountIds and ReaderOrganizationId through the token key (an AWS managed key cannot be
shared), with copies in ReplicaRegions. Refresh secrets: only the broker's functions, through the
broker key whose policy names them; never shared, never replicated.

A connection's row records the fingerprint of what its secrets were last brought to, so a refresh
knows without asking AWS whether they still have to converge after the stack changed.
"""

import hashlib
import json
import re
from dataclasses import dataclass

from webex_broker.core.errors import ConfigurationError

ACCOUNT_ID = re.compile(r"\d{12}")
ORGANIZATION_ID = re.compile(r"o-[a-z0-9]{10,32}")
REGION = re.compile(r"([a-z]+-)+\d+")  # Secrets Manager's own pattern for a replica region
READ_ACTIONS = ("secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret")
ACCOUNTS_SID, ORGANIZATION_SID = "ReaderAccounts", "ReaderOrganization"


@dataclass(frozen=True)
class TokenSharing:
    kms_key_id: str = ""  # the token key; empty: Secrets Manager's AWS managed key
    reader_account_ids: tuple[str, ...] = ()
    reader_organization_id: str = ""
    replica_regions: tuple[str, ...] = ()
    broker_key_id: str = ""  # seals refresh material; empty: Secrets Manager's AWS managed key
    own_account: str = ""  # the broker's account, which the organization's statement must not open to
    rotation_function_arn: str = ""  # every secret rotates with it (Secrets Manager's rotation); empty: not set

    def validate(self) -> None:
        bad = [a for a in self.reader_account_ids if not ACCOUNT_ID.fullmatch(a)]
        if bad:
            raise ConfigurationError(f"ReaderAccountIds must be 12-digit account ids, not {', '.join(bad)}")
        if self.reader_organization_id and not ORGANIZATION_ID.fullmatch(self.reader_organization_id):
            raise ConfigurationError(
                f"ReaderOrganizationId must look like o-abc123defg, not {self.reader_organization_id}"
            )
        bad = [r for r in self.replica_regions if not REGION.fullmatch(r)]
        if bad:
            raise ConfigurationError(f"ReplicaRegions must be region names such as eu-west-1, not {', '.join(bad)}")
        if (self.reader_account_ids or self.reader_organization_id) and not self.kms_key_id:
            raise ConfigurationError("Readers in other accounts need the stack's token key (TOKEN_KMS_KEY_ID)")
        if self.reader_organization_id and not ACCOUNT_ID.fullmatch(self.own_account):
            raise ConfigurationError("ReaderOrganizationId needs the broker's own account id (from CLIENT_SECRET_ARN)")

    def resource_policy(self, *, organization: bool = True) -> dict | None:
        """The token secrets' resource policy: the reader accounts and the organization may read them
        (their roles still need their own IAM policy); None when nobody outside the account may.
        `organization=False`: without the organization's statement, which AWS may judge public."""
        statements = []
        if self.reader_account_ids:
            statements.append(
                {
                    "Sid": ACCOUNTS_SID,
                    "Effect": "Allow",
                    "Principal": {"AWS": list(self.reader_account_ids)},
                    "Action": list(READ_ACTIONS),
                    "Resource": "*",
                }
            )
        if self.reader_organization_id and organization:
            statements.append(
                {
                    "Sid": ORGANIZATION_SID,
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": list(READ_ACTIONS),
                    "Resource": "*",
                    # For a request from the broker's own account a resource policy's Allow is enough on
                    # its own: without this, every role of the account would read every token.
                    "Condition": {
                        "StringEquals": {"aws:PrincipalOrgID": self.reader_organization_id},
                        "StringNotEquals": {"aws:PrincipalAccount": self.own_account},
                    },
                }
            )
        return {"Version": "2012-10-17", "Statement": statements} if statements else None

    def fingerprint(self) -> str:
        """Changes exactly when what a connection's secrets should look like changes; '' for Secrets
        Manager's defaults (no keys, readers or replicas), which every secret made before sharing has."""
        if self == TokenSharing():
            return ""
        canonical = json.dumps(
            [
                self.kms_key_id,
                self.resource_policy(),
                sorted(self.replica_regions),
                self.broker_key_id,
                self.rotation_function_arn,
            ],
            sort_keys=True,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]
