"""Ingestion: feeds, YouTube channels, one-off URLs and uploads become raw items, contents and stories."""
