"""Images and plots for people: sample grids, reverse-process GIF/strip, matplotlib PNGs."""
