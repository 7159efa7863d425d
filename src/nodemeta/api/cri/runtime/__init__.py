"""CRI `runtime` package."""
