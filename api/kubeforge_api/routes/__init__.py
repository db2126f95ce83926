"""The API's routes, one module per concern: ``operations`` (portal, health, metrics),
``identity`` (who am I, my namespaces), ``objects`` (CRUD and Events of the four kinds),
``catalog`` (models, lineage, GPU use and GPU-hours)."""
