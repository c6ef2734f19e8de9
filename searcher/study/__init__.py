"""The study in SQL: a spec becomes an Optuna study whose search trials workers train and
record, and where its confirmation runs' trials are kept (the verdict decides what they train)."""
