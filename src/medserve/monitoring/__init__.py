"""After go-live: reference profiles, windows of counts, drift, live performance and shadow comparison; aggregates only, never rows."""  # noqa: E501
