"""The outbound side of Garmin: planned sessions to the Training API, the OAuth 2.0 PKCE
connection, user endpoints and backfill requests (pure modules, no Dagster)."""
