"""A fake vast.ai for tests and bench: `FakeVastProcess` starts it (a real HTTP server on loopback)."""
