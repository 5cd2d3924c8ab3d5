"""pinclip.train."""
