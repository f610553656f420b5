"""REST endpoints under /api/v1, one blueprint per area."""
