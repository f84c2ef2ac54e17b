"""The laptop backend of `ktune run`: trials as local processes, the run directory, results and progress."""
