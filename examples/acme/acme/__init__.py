"""acme: what a user of dikd already has -- a CNN (`acme.model`), a Dataset (`acme.data`) and a
training loop (`acme.train`) -- and the few lines that let dikd search and confirm a schedule
for it (`run(ctx)`) or apply an exported one (`run_pick`, `acme.lightning`)."""
