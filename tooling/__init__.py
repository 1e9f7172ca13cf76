"""What tests, benchmarks and scripts share: the process launcher, MySQL helpers, Compose.

Imported as `tooling.*` from the repository root (pytest's rootdir; `python -m bench.x`,
`python -m scripts.x`), so nothing needs a path hack. No process of the suite imports it.
"""
