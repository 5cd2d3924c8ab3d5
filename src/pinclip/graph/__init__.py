"""pinclip.graph."""
