"""No Django models: the time-series schema is SQL (migrations/ and sql/).

This module exists because Django sends post_migrate only to apps that have one, and that
signal re-applies the SQL definitions.
"""
