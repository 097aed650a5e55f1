"""The Service App the integration tests add, and the organization that authorized it."""

from devstack.webex_simulator import DEFAULT_PEOPLE, webex_id

APP_ID = webex_id("APPLICATION", "3f9a0c2e-7b41-4d6e-9c85-a1b2c3d4e5f6")
APP_CLIENT, APP_SECRET = "Capp0client0id", "app-secret-value-never-shown"
ORG = DEFAULT_PEOPLE[0].org_id
SCOPES = "spark:kms spark:people_read spark:applications_token"
