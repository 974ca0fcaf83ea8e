"""The HTTP service: app, auth, audit, request validation and fast scoring of records."""
