"""Tasks shared by every provider; groups.py says which ones an image gets."""
