"""devhost: a local Functions host for function_app.py, faithful to the real host's wire protocol."""
