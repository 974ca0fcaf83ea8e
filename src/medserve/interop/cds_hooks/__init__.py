"""CDS Hooks 2.0: discovery, the hook request and its prefetch, and the cards."""
