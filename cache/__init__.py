"""Model loading (the only place weights are read) and the attribution store."""
