"""Layer 6, reports: what the report notebooks call (tables and findings, figures, views of the explain
stage's outputs) and the machinery that executes a notebook and renders it to HTML."""
