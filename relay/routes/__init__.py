"""Thin HTTP adapters: each turns a request into a pipeline Operation, nothing more."""
