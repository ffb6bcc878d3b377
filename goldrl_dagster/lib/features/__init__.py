"""Feature sets: specs with fingerprints and the TA-Lib pipeline that computes them."""
