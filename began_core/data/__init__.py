"""Images in: folders, archives, the built-in offline datasets, the decode cache, image files out."""
