"""Plumbing every stage uses: errors, the params loader and schema, atomic files, the CLI wrapper, devices."""
