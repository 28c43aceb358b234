"""Accounts: sign-in and signup (throttled), the settings page, personal API keys."""
