"""pinclip.data.builders."""
