"""Images in and out: digit CSVs, image folders, preparation, pixel scaling and per-channel normalisation."""
