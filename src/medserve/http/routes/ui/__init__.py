"""The dashboard (/ui): server-rendered pages for people, signed in with an API key that
becomes a session cookie. Each module is one part: the session (sign-in, sign-out),
the models and their reports."""
