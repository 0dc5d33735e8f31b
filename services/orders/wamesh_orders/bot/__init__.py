"""The bot's language: what a customer's text means, and what the bot says back, in each
language it ships (message catalogues, not code)."""
