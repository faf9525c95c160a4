"""One run: claim, export, erase, verify, complete."""
