"""Helpers shared by the task modules: HTTP fetching behind an SSRF guard, URL canonicalisation, text
extraction, feed parsing, storage of contents and stories, and the AI providers."""
