"""What a finished run is made of, read back (Section 6.1): the activity of every layer (dead
ReLU units, what LRN divides by), whether it learned or collapsed, and the pictures of conv1's
kernels (Figure 3)."""
