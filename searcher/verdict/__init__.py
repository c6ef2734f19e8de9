"""What the trials are worth: the plain model's budget curve, the front, the confirmation of a
pick over fresh seeds and its statistics, and the answer's payback."""
