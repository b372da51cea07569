"""Transports: console, Telegram, Matrix. They know nothing of domains."""
