"""Hugging Face Spaces entry point: the BEGAN explorer on the checkpoints in pretrained/."""

from app.explorer_server import main

if __name__ == "__main__":
    main()
