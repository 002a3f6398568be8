"""HTTP routes, one module per resource; each exposes ``setup(app)``."""
