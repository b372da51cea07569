"""Jinja2 message templates, one folder per language (zh, en), one subfolder per domain."""
