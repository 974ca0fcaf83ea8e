"""The HTTP service: the app, who is calling, what each request is audited as, problem
responses; routes are thin shells over scoring, storage and flows."""
