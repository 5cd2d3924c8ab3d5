"""pinclip.data."""
