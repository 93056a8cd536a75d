"""Corpus preparation: one module per corpus, each writing manifests."""
