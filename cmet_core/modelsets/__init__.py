"""Model-set tooling: sets and their manifests, pulling, converting, building tiny and filled
sets, the connector registry."""
