"""Headless jobs (analyze, inspect, ...): sources -> model -> analysis -> render -> files."""
