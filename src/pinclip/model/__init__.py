"""pinclip.model."""
