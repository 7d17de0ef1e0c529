"""One module per ``feat3d`` command; ``feat3d.cli`` imports each when it is first used."""
