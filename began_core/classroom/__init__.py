"""The 2-D BEGAN the classroom teaches with, and its point-cloud datasets."""
