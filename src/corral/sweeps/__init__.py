"""Parameter sweeps: a table of parameters split into chunks, one job per chunk, results checked and
merged into one dataset, resumable after any failure; and job-folder mode (`corral sweep watch`)."""
