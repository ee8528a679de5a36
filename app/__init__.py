"""imgdedup: image de-duplication review service."""
